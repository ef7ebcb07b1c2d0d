"""The directories below a posixfs store's root: reaching them, making them, removing them.

The half of :class:`~._backend.PosixFSBackend` that deals with directories (a mixin: it uses the
backend's root descriptor, its :class:`~._dircache.DirectoryCache` and its durability setting).
"""

import errno
import os
import stat
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from borgstore.backends.errors import BackendDoesNotExist, BackendError, ObjectNotFound
from borgstore.backends.toolkit import check_backend_name

from . import _beneath
from ._dircache import DirectoryCache
from ._errors import os_error as _os_error
from ._io import kind

_T = TypeVar("_T")


class _NoDirectory(Exception):
    """The directory of a name is missing (or an item), where it is not to be created."""


class DirectoryPlumbing:
    """Directory descriptors, mkdir and rmdir for PosixFSBackend."""

    # PosixFSBackend's state that these methods use (set in its __init__ and open(); declared here
    # for the type checker only: annotations without a value make no class attribute)
    path: str
    _prefix: str
    _always: bool
    _dirty: bool
    _root_fd: int
    _dirs: Optional[DirectoryCache]  # None until the first open()
    _kept: dict[str, int]  # _dirs.kept while open
    if TYPE_CHECKING:

        def check_open(self) -> None: ...

    def _changed(self, dir_fd: int, op: str, name: str) -> None:
        """Record a change of an entry in the directory *dir_fd*; with durability "always",
        make it durable now (the entry's name lives in its directory)."""
        self._dirty = True
        if self._always:
            try:
                os.fsync(dir_fd)
            except OSError as exc:
                raise _os_error(exc, f"{op} {name!r}: sync its directory", mutation=True) from None

    def _makedirs(self, directory: str, op: str, name: str) -> int:
        """Create *directory* and its missing parents; return a descriptor of it (DIR_READ).
        A missing store root is an error, never recreated."""
        created = lambda fd: self._changed(fd, op, name)  # noqa: E731
        parent, _, last = directory.rpartition("/")
        held = self._held_parent(parent) if parent else None
        if held is not None:
            # the common case (a nesting directory made on demand): one mkdir in its held parent
            try:
                return _beneath.makedirs(held, self._prefix, last, created, below=parent)
            except FileNotFoundError:
                assert self._dirs is not None  # held: the store is open, so its cache exists
                self._dirs.is_dead(parent, held)  # removed since: set aside, made anew from the root
            except OSError:
                pass  # the path from the root says what is in the way
        try:
            return _beneath.makedirs(self._root_fd, self._prefix, directory, created)
        except FileNotFoundError:
            if _beneath.root_is_gone(self._root_fd):
                raise BackendDoesNotExist(f"the posixfs store location {self.path} does not exist any more") from None
            raise BackendError(f"{op} {name!r}: a directory was removed while it was being created") from None
        except NotADirectoryError:
            raise BackendError(f"{op} {name!r}: an item is in the way of directory {directory!r}") from None
        except OSError as exc:
            raise _os_error(exc, f"{op} {name!r}") from None

    def _held_parent(self, parent: str) -> Optional[int]:
        """A kept descriptor of *parent* (opened and kept now if need be), or None: a namespace
        directory is the parent of every nesting directory made on demand below it."""
        held = self._kept.get(parent)
        if held is None:
            assert self._dirs is not None  # open (every caller checked it): its cache exists
            try:
                held, kept = self._dirs.acquire(parent)
            except OSError:
                return None  # missing too, or in the way: the path from the root finds out
            if not kept:
                os.close(held)
                return None
        return held

    def _dir_fd(self, directory: str, op: str, name: str, create: bool = True) -> tuple[int, bool]:
        """``(fd, kept)``: a descriptor of *directory*; close it with :meth:`_close_dir`.  A missing
        directory is created with its parents, or with *create* False raises _NoDirectory, as
        does one below an item."""
        if not directory:
            return self._root_fd, True
        assert self._dirs is not None  # open (every caller checked it): its cache exists
        try:
            return self._dirs.acquire(directory)
        except FileNotFoundError:
            if not create:
                raise _NoDirectory() from None
            return self._dirs.adopt(directory, self._makedirs(directory, op, name))
        except NotADirectoryError:
            if not create:
                raise _NoDirectory() from None
            raise BackendError(f"{op} {name!r}: a parent is an item, not a directory") from None
        except OSError as exc:
            raise _os_error(exc, f"{op} {name!r}") from None

    @staticmethod
    def _close_dir(fd: int, kept: bool) -> None:
        if not kept:
            os.close(fd)

    def _in_directory(self, directory: str, op: str, name: str, action: Callable[[int], _T], create: bool = True) -> _T:
        """``action(dir_fd)`` in *directory*'s descriptor.  A FileNotFoundError from a kept
        descriptor of a directory removed since (by another Store) repeats it once with a fresh
        one; any other goes to the caller."""
        held = self._kept.get(directory) if directory else self._root_fd
        if held is None:
            held, kept = self._dir_fd(directory, op, name, create)
            if not kept:
                try:
                    return action(held)
                finally:
                    os.close(held)
        try:
            return action(held)
        except FileNotFoundError:
            assert self._dirs is not None  # open (every caller checked it): its cache exists
            if not self._dirs.is_dead(directory, held):
                raise
        parent, kept = self._dir_fd(directory, op, name, create)
        try:
            return action(parent)
        finally:
            self._close_dir(parent, kept)

    def _gone(self, exc: OSError, op: str, name: str) -> BackendError:
        """The error for ENOENT from a change in a directory we hold open, also after one more
        try with a fresh descriptor: the directory was removed meanwhile (not "missing": the
        operation makes its directories, so trying again may succeed)."""
        if _beneath.root_is_gone(self._root_fd):
            return BackendDoesNotExist(f"the posixfs store location {self.path} does not exist any more")
        where = f"{exc.strerror} [ENOENT] ({self._prefix + name})"
        return BackendError(f"{op} {name!r}: its directory was removed while it ran: {where}", temporary=True)

    def _kind(self, base: str, dir_fd: int, op: str, name: str) -> Optional[int]:
        """The file type bits of *base* in *dir_fd* (None: missing); a failure raises BackendError."""
        try:
            return kind(base, dir_fd)
        except OSError as exc:
            raise _os_error(exc, f"{op} {name!r}", self._prefix + name) from None

    def _link_error(self, op: str, name: str) -> BackendError:
        return _os_error(OSError(errno.ELOOP, "a symbolic link"), f"{op} {name!r}", self._prefix + name)

    def mkdir(self, name):
        self.check_open()
        check_backend_name(name)
        directory, _, base = name.rpartition("/")
        parent, kept = self._dir_fd(directory, "mkdir", name)
        try:
            os.mkdir(base, dir_fd=parent)
            self._changed(parent, "mkdir", name)
        except FileExistsError:
            found = self._kind(base, parent, "mkdir", name)
            if found == stat.S_IFLNK:
                raise self._link_error("mkdir", name) from None
            if found != stat.S_IFDIR:
                raise BackendError(f"cannot create directory {name!r}: an item of that name exists") from None
        except FileNotFoundError as exc:
            if kept and self._dirs.is_dead(directory, parent):
                return self.mkdir(name)  # its parent was removed and is made anew
            raise self._gone(exc, "mkdir", name) from None
        except OSError as exc:
            raise _os_error(exc, f"mkdir {name!r}", self._prefix + name, mutation=True) from None
        finally:
            self._close_dir(parent, kept)

    def rmdir(self, name):
        self.check_open()
        check_backend_name(name)
        directory, _, base = name.rpartition("/")
        try:
            self._in_directory(
                directory, "rmdir", name, lambda parent: self._rmdir_in(parent, base, name), create=False
            )
        except (_NoDirectory, FileNotFoundError):
            raise ObjectNotFound(f"directory {name!r} does not exist") from None
        finally:
            self._dirs.forget(name)

    def _rmdir_in(self, parent: int, base: str, name: str) -> None:
        try:
            os.rmdir(base, dir_fd=parent)
            self._changed(parent, "rmdir", name)
        except NotADirectoryError:
            found = self._kind(base, parent, "rmdir", name)
            if found == stat.S_IFLNK:
                raise self._link_error("rmdir", name) from None
            if found is None:
                raise ObjectNotFound(f"directory {name!r} does not exist") from None
            raise BackendError(f"cannot remove directory {name!r}: it is an item") from None
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise BackendError(f"cannot remove directory {name!r}: it is not empty") from None
            raise _os_error(exc, f"rmdir {name!r}", self._prefix + name, mutation=True) from None
