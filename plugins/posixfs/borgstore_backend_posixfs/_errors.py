"""The borgstore errors for what the file system reports."""

import errno

from borgstore.backends.errors import BackendError, PermissionDenied


def os_error(exc: OSError, what: str, path=None) -> BackendError:
    """The borgstore error for an OSError that *what* (e.g. ``store 'data/00/00ab'``) ran into,
    naming *path* (else the path the OSError names)."""
    path = path or exc.filename
    where = f" ({path})" if path else ""
    if exc.errno == errno.ELOOP:
        return BackendError(
            f"{what}: a symbolic link is in the way{where}; posixfs never follows symbolic links "
            "inside a store (one could lead out of it)"
        )
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"{what}: the file system denied access{where}: {exc.strerror}")
    code = errno.errorcode.get(exc.errno, exc.errno)
    return BackendError(f"{what}: {exc.strerror or exc} [{code}]{where}")
