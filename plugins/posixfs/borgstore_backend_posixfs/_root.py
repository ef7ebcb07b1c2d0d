"""Making and removing the store's root directory (create() and destroy())."""

import errno
import os
import shutil

from borgstore.backends.errors import BackendAlreadyExists, BackendDoesNotExist, BackendError

from . import _sync
from ._beneath import DIR_READ
from ._errors import os_error


def create(path: str, sync: bool) -> None:
    """Make the empty directory *path* with its missing parents; an existing empty one is fine."""
    try:
        os.makedirs(path, exist_ok=True)
        if os.listdir(path):
            raise BackendAlreadyExists(f"the posixfs store location {path} exists and is not empty")
    except FileExistsError:
        raise BackendAlreadyExists(f"the posixfs store location {path} exists and is not a directory") from None
    except NotADirectoryError:
        raise BackendError(f"cannot create the posixfs store {path}: a parent is not a directory") from None
    except OSError as exc:
        raise os_error(exc, f"create the posixfs store {path}") from None
    if sync:
        sync_file_system(path)


def destroy(path: str, sync: bool) -> None:
    """Remove the directory *path* and everything in it."""
    if not os.path.isdir(path):
        raise BackendDoesNotExist(f"the posixfs store location {path} does not exist")
    try:
        # rmtree removes symbolic links inside, never what they point to
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
    except OSError as exc:
        raise os_error(exc, f"destroy the posixfs store {path}") from None
    try:
        os.rmdir(path)
    except OSError as exc:
        # A mount point or a directory in a read-only parent stays, empty, as the PyPI borgstore
        # leaves it: create() accepts an empty directory again.
        if exc.errno not in (errno.EBUSY, errno.EACCES, errno.EPERM, errno.EROFS):
            raise os_error(exc, f"destroy the posixfs store {path}") from None
    if sync:
        sync_file_system(os.path.dirname(path))


def sync_file_system(path: str) -> None:
    """syncfs(2) of the file system the directory *path* is on."""
    try:
        fd = os.open(path, DIR_READ)
        try:
            _sync.syncfs(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise os_error(exc, f"sync {path}") from None
