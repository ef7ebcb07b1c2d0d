"""The borgstore errors for what the file system reports: classes and ``temporary`` as every
backend maps an errno (``toolkit.error_for_errno``, docs/errors.md), messages that name the
operation, the item, the path and the errno."""

import errno

from borgstore.backends.errors import BackendError
from borgstore.backends.toolkit import error_for_errno

_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def os_error(exc: OSError, what: str, path=None, *, mutation: bool = False) -> BackendError:
    """The borgstore error for an OSError that *what* (e.g. ``store 'data/00/00ab'``) ran into,
    naming *path* (else the path the OSError names).  *mutation*: *what* changes the store, so a
    temporary failure (EIO of a network file system whose server stopped answering) may have
    been applied."""
    path = path or exc.filename
    where = f" ({path})" if path else ""
    code = exc.errno
    if code == errno.ELOOP:
        message = (
            f"{what}: a symbolic link is in the way{where}; posixfs never follows symbolic links "
            "inside a store (one could lead out of it)"
        )
    elif code in _DENIED:
        message = f"{what}: the file system denied access{where}: {exc.strerror}"
    else:
        message = f"{what}: {exc.strerror or exc}{where}"
    # the toolkit sets maybe_applied only on the temporary classes: a permanent failure did nothing
    return error_for_errno(code, message, maybe_applied=mutation)
