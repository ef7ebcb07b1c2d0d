"""The same failure, the same error class, on every backend: errno values and HTTP statuses
mapped onto :mod:`borgstore.backends.errors` (docs/errors.md is the table).  Exported through
:mod:`borgstore.backends.toolkit`."""

import errno
from typing import Optional

from .errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ObjectAlreadyExists,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)

#: errno values that say "no such item" (a missing parent directory included)
MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})
#: errno values the storage may not report again later: a lost or refused connection, a busy or
#: stale resource, an interrupted call.  EIO is among them: network file systems (NFS, FUSE
#: mounts such as sshfs) report a lost connection as EIO, and a few tries cost a failing disk little.
TEMPORARY_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "EWOULDBLOCK",
        "EINTR",
        "EBUSY",
        "EIO",
        "ESTALE",
        "ENOLCK",
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ENOTCONN",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
    )
    if hasattr(errno, name)
)
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def error_for_errno(code: Optional[int], message: str, *, maybe_applied: bool = False) -> BackendError:
    """The borgstore error for the errno *code* that an operation ran into; *message* says what
    was done and where (the errno's name is appended)."""
    text = f"{message} [{errno.errorcode.get(code, code)}]" if code else message
    if code in MISSING_ERRNOS:
        return ObjectNotFound(text)
    if code in DENIED_ERRNOS:
        return PermissionDenied(text)
    if code == errno.ETIMEDOUT:
        return BackendTimeout(text, maybe_applied=maybe_applied)
    if code in TEMPORARY_ERRNOS:
        cls = BackendConnectionError if code not in (errno.EBUSY, errno.EAGAIN, errno.EINTR) else BackendUnavailable
        return cls(text, maybe_applied=maybe_applied)
    return BackendError(text)


#: HTTP statuses a later try may not see again (408 is a timeout, the rest a busy server)
TEMPORARY_STATUSES = frozenset({429, 500, 502, 503, 504})


def error_for_http_status(status: int, message: str, *, maybe_applied: bool = False) -> BackendError:
    """The borgstore error for an HTTP response *status*; *message* says what was asked."""
    text = f"{message} [HTTP {status}]"
    if status == 404:
        return ObjectNotFound(text)
    if status in (401, 403):
        return PermissionDenied(text)
    if status == 408:
        return BackendTimeout(text, maybe_applied=maybe_applied)
    if status in (409, 412):
        return ObjectAlreadyExists(text)
    if status == 416:
        return ReadRangeError(text)
    if status in TEMPORARY_STATUSES:
        return BackendUnavailable(text, maybe_applied=maybe_applied)
    return BackendError(text)


def lost_reply(message: str, *, mutation: bool, cause: Optional[BaseException] = None) -> BackendConnectionError:
    """The error for a connection lost after a request was sent: *mutation* True means the
    storage may have done it (``maybe_applied``)."""
    text = f"{message}: {cause}" if cause is not None else message
    return BackendConnectionError(text, maybe_applied=mutation)
