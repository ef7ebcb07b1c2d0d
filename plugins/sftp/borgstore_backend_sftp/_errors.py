"""What a failure means, in one place: SFTP status codes and lost connections mapped onto the
core's error classes (docs/sftp.md has the table; docs/errors.md the classes).

Only ``SSH_FX_NO_SUCH_FILE`` means that something is missing.  ``SSH_FX_FAILURE`` is the
server's generic "it did not work" (an I/O error, a full disk, no file descriptors left, a
directory where a file was expected, a plain RENAME onto an existing name): permanent, and never
taken for a missing item.  Statuses carry no errno, so they are mapped by this table; socket
failures that carry one go through the toolkit's ``error_for_errno``.
"""

from borgstore.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.backends.toolkit import error_for_errno, lost_reply

from . import _protocol as p

#: SFTP v3 status -> error class; a code not listed is a permanent BackendError
STATUS_ERRORS = {
    p.NO_SUCH_FILE: ObjectNotFound,
    p.PERMISSION_DENIED: PermissionDenied,
    p.FAILURE: BackendError,
    p.BAD_MESSAGE: BackendError,
    p.OP_UNSUPPORTED: BackendError,
    p.NO_CONNECTION: BackendConnectionError,
    p.CONNECTION_LOST: BackendConnectionError,
}


def status_error(exc: p.StatusError, message: str, *, maybe_applied: bool = False) -> BackendError:
    """The error for a request the server answered with the error status *exc*; *message* says
    what was asked and where.  *maybe_applied* matters only for the connection statuses (a server
    that relays to other storage may have done it before it lost that)."""
    cls = STATUS_ERRORS.get(exc.code, BackendError)
    text = f"{message}: {exc}"
    if cls is BackendConnectionError:
        return cls(text, maybe_applied=maybe_applied)
    return cls(text)


def connection_error(message: str, cause: BaseException, *, maybe_applied: bool = False) -> BackendError:
    """The error for a connection that failed or was lost (*cause*: what was seen); always
    temporary except where an errno says access was denied.

    A timeout is BackendTimeout; an OSError with an errno goes through ``error_for_errno`` as long
    as that names a temporary or denied condition (an unlisted errno of a broken socket, EBADF say,
    is still a lost connection, not a permanent failure)."""
    text = f"{message}: {cause}" if str(cause) else f"{message}: {type(cause).__name__}"
    if isinstance(cause, (p.Timeout, TimeoutError)):
        return BackendTimeout(text, maybe_applied=maybe_applied)
    errno_cause = cause if isinstance(cause, OSError) else cause.__cause__
    code = getattr(errno_cause, "errno", None)
    if isinstance(code, int) and code > 0:
        error = error_for_errno(code, text, maybe_applied=maybe_applied)
        if error.temporary or isinstance(error, PermissionDenied):
            return error
    return lost_reply(message, mutation=maybe_applied, cause=cause)
