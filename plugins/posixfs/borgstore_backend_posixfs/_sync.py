"""Getting data onto stable storage: syncfs of a whole file system (files and directories are
fsynced through the descriptors the backend holds)."""

import ctypes
import ctypes.util
import os


def _load_syncfs():
    # syncfs(2) is Linux-only and Python has no wrapper for it; where it is missing, os.sync()
    # does the same job for every file system at once (and cannot report errors).
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = (ctypes.c_int,)
    function.restype = ctypes.c_int
    return function


_libc_syncfs = _load_syncfs()


def syncfs(fd: int) -> None:
    """Write back everything cached for the file system that *fd* is on; raise OSError if the
    kernel reports a write-back error."""
    if _libc_syncfs is None:
        os.sync()
        return
    if _libc_syncfs(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
