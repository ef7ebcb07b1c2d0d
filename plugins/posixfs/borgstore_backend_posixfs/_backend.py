"""A store in a directory tree on a local file system.

Every backend name maps to the path ``<root>/<name>``.  The hot operations (store, load, info,
delete, move) are kept to the system calls they need and little else, because on a RAM-backed
file system the Python code around the calls is most of their cost.
"""

import dataclasses
import errno
import hashlib
import itertools
import os
import shutil
from typing import Iterator, Optional

from borgstore.backends._base import BackendBase, Capabilities, ItemInfo
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)
from borgstore.constants import TMP_SUFFIX

from . import _sync

DURABILITY_MODES = ("none", "close", "always")
#: a careful user's choice: a finished backup survives a power loss, at the cost of one syncfs per
#: flush/close rather than two fsyncs per item (see README.md for the measured costs)
DEFAULT_DURABILITY = "close"
#: files are private to their owner, as the PyPI borgstore makes them (through mkstemp)
FILE_MODE = 0o600
#: hashing happens next to the data, streamed, so every fixed-length hashlib algorithm qualifies
HASH_ALGORITHMS = frozenset(name for name in hashlib.algorithms_guaranteed if not name.startswith("shake_"))

CAPABILITIES = Capabilities(
    read=True,
    write=True,
    list=True,
    hash_algorithms=HASH_ALGORITHMS,
    needs_mkdir=True,
    atomic_store=True,
    thread_safe=True,
)

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_S_IFMT = 0o170000
_S_IFDIR = 0o040000
# A ranged read up to this size trusts the caller's size instead of asking for the file's size
# first: one system call less, and a wrong size costs at most this much memory for a moment.
_TRUSTED_READ_SIZE = 1 << 20
# What a whole-item load reads before it knows the item's size (see load).
_FIRST_CHUNK = 16 * 1024
_HASH_CHUNK = 1 << 20


class _TempNames:
    """Unique temporary names without a system call: a per-process prefix and a counter.

    The temporary file is still created with O_EXCL, so even a collision (another process that
    somehow got the same prefix) cannot make two writers share a file.
    """

    def __init__(self):
        self.renew()

    def renew(self):
        self.prefix = f".{os.getpid():x}-{os.urandom(3).hex()}-"
        self.counter = itertools.count()


_temp = _TempNames()
if hasattr(os, "register_at_fork"):
    # a child process must not reuse its parent's names
    os.register_at_fork(after_in_child=_temp.renew)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _os_error(exc: OSError, what: str) -> BackendError:
    """The borgstore error for an OSError that *what* (e.g. ``store 'data/00/00ab'``) ran into."""
    where = f" ({exc.filename})" if exc.filename else ""
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"{what}: the file system denied access{where}: {exc.strerror}")
    code = errno.errorcode.get(exc.errno, exc.errno)
    return BackendError(f"{what}: {exc.strerror or exc} [{code}]{where}")


# ItemInfo's generated __new__ costs twice the bare tuple construction; info() and list() are hot
_tuple_new = tuple.__new__


def _base_name(name: str) -> str:
    return name.rpartition("/")[2]


class PosixFSBackend(BackendBase):
    """A store rooted at the absolute directory *path*.

    :param durability: what survives a power loss or an OS crash.

        * ``"none"``: whatever the kernel wrote back by then.
        * ``"close"`` (default): everything stored, moved or deleted before a successful
          :meth:`flush` or :meth:`close` (one ``syncfs`` of the store's file system, only if
          something changed since the last one).
        * ``"always"``: each store/move/delete, once it returns (fsync of the file before the
          rename, fsync of the directory after it).

        Every mode writes atomically: a crash never leaves a partial item under its final name.
    :param precreate_dirs: let ``Store.create()`` create all nesting directories up front.
    """

    def __init__(self, path: str, *, durability: str = DEFAULT_DURABILITY, precreate_dirs: bool = False):
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"the posixfs store path must be an absolute path, got {path!r}")
        if "\0" in path:
            raise ValueError(f"the posixfs store path must not contain NUL characters: {path!r}")
        if durability not in DURABILITY_MODES:
            raise ValueError(f"invalid durability {durability!r}: one of {', '.join(DURABILITY_MODES)}")
        if type(precreate_dirs) is not bool:
            raise ValueError(f"invalid precreate_dirs {precreate_dirs!r}: True or False")
        self.path = path.rstrip("/") or "/"
        # every name is appended to this; computed once because it is on every hot path
        self._prefix = self.path if self.path == "/" else self.path + "/"
        self.durability = durability
        self._always = durability == "always"
        self.precreate_dirs = precreate_dirs
        self.capabilities = CAPABILITIES
        self.opened = False
        self._root_fd: Optional[int] = None
        # set by every change, cleared by the sync that makes the changes durable
        self._dirty = False

    def __repr__(self):
        return f"<PosixFSBackend {self.path!r} durability={self.durability!r}>"

    def _not_open(self) -> BackendMustBeOpen:
        return BackendMustBeOpen(f"the posixfs store {self.path} is not open")

    # --- lifecycle ---
    def create(self):
        if self.opened:
            raise BackendMustNotBeOpen(f"the posixfs store {self.path} is open; close it before create()")
        try:
            os.makedirs(self.path, exist_ok=True)
            if os.listdir(self.path):
                raise BackendAlreadyExists(f"the posixfs store location {self.path} exists and is not empty")
        except FileExistsError:
            raise BackendAlreadyExists(
                f"the posixfs store location {self.path} exists and is not a directory"
            ) from None
        except NotADirectoryError:
            raise BackendError(f"cannot create the posixfs store {self.path}: a parent is not a directory") from None
        except OSError as exc:
            raise _os_error(exc, f"create the posixfs store {self.path}") from None
        if self.durability != "none":
            self._sync_path(self.path)

    def destroy(self):
        if self.opened:
            raise BackendMustNotBeOpen(f"the posixfs store {self.path} is open; close it before destroy()")
        if not os.path.isdir(self.path):
            raise BackendDoesNotExist(f"the posixfs store location {self.path} does not exist")
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
        except OSError as exc:
            raise _os_error(exc, f"destroy the posixfs store {self.path}") from None
        try:
            os.rmdir(self.path)
        except OSError as exc:
            # A mount point or a directory in a read-only parent stays, empty, as the PyPI
            # borgstore leaves it: create() accepts an empty directory again.
            if exc.errno not in (errno.EBUSY, errno.EACCES, errno.EPERM, errno.EROFS):
                raise _os_error(exc, f"destroy the posixfs store {self.path}") from None
        if self.durability != "none":
            self._sync_path(os.path.dirname(self.path))

    def open(self):
        if self.opened:
            raise BackendMustNotBeOpen(f"the posixfs store {self.path} is already open")
        try:
            self._root_fd = os.open(self.path, _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise BackendDoesNotExist(
                f"the posixfs store location {self.path} does not exist or is not a directory"
            ) from None
        except OSError as exc:
            raise _os_error(exc, f"open the posixfs store {self.path}") from None
        self._dirty = False
        self.opened = True

    def close(self):
        if not self.opened:
            raise self._not_open()
        try:
            self.flush()
        finally:
            self.opened = False
            fd, self._root_fd = self._root_fd, None
            os.close(fd)

    def flush(self):
        if not self.opened:
            raise self._not_open()
        if self._dirty and self.durability == "close":
            # cleared first: a change finishing during the sync marks the store dirty again
            self._dirty = False
            try:
                _sync.syncfs(self._root_fd)
            except OSError as exc:
                self._dirty = True
                code = errno.errorcode.get(exc.errno, exc.errno)
                problem = f"{exc.strerror} [{code}]"
                raise BackendError(f"making the posixfs store {self.path} durable failed: {problem}") from exc

    def _sync_path(self, path: str) -> None:
        try:
            fd = os.open(path, _DIR_FLAGS)
            try:
                _sync.syncfs(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _os_error(exc, f"sync {path}") from None

    # --- directories ---
    def _makedirs(self, directory: str) -> list:
        """Create *directory* and its missing parents below the store root; return the created
        ones, outermost first.  A missing store root is an error, never recreated."""
        if len(directory) < len(self._prefix):  # the root itself
            if os.path.isdir(directory):
                return []
            raise BackendDoesNotExist(f"the posixfs store location {self.path} does not exist any more")
        try:
            os.mkdir(directory)
        except FileExistsError:
            return []
        except FileNotFoundError:
            created = self._makedirs(directory.rpartition("/")[0])
            try:
                os.mkdir(directory)
            except FileExistsError:
                return created
            created.append(directory)
            return created
        return [directory]

    def _created_directories(self, directories: list) -> None:
        """Make new directories durable as configured (their names live in their parents)."""
        if directories:
            self._dirty = True
            if self._always:
                for directory in directories:
                    _sync.fsync_directory(directory.rpartition("/")[0] or "/")

    def _make_parent(self, path: str, name: str) -> None:
        try:
            self._created_directories(self._makedirs(path.rpartition("/")[0]))
        except NotADirectoryError:
            raise BackendError(f"cannot create the directories for {name!r}: a parent is an item") from None
        except OSError as exc:
            raise _os_error(exc, f"create the directories for {name!r}") from None

    def mkdir(self, name):
        if not self.opened:
            raise self._not_open()
        path = self._prefix + name
        try:
            self._created_directories(self._makedirs(path.rstrip("/") or "/"))
        except NotADirectoryError:
            raise BackendError(f"cannot create directory {name!r}: a parent is an item") from None
        except OSError as exc:
            raise _os_error(exc, f"mkdir {name!r}") from None
        if not os.path.isdir(path):
            raise BackendError(f"cannot create directory {name!r}: an item of that name exists")

    def rmdir(self, name):
        if not self.opened:
            raise self._not_open()
        if not name.strip("/"):
            raise BackendError("rmdir cannot remove the store root; use destroy()")
        path = self._prefix + name
        try:
            os.rmdir(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"directory {name!r} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise BackendError(f"cannot remove directory {name!r}: it is not empty") from None
            raise _os_error(exc, f"rmdir {name!r}") from None
        self._changed(path)

    def _changed(self, path: str) -> None:
        """Record a change of the entry *path*; with durability "always", make it durable now."""
        self._dirty = True
        if self._always:
            try:
                _sync.fsync_directory(path.rpartition("/")[0] or "/")
            except OSError as exc:
                raise _os_error(exc, f"sync the directory of {path}") from None

    # --- items ---
    def info(self, name):
        if not self.opened:
            raise self._not_open()
        try:
            st = os.stat(self._prefix + name)
        except (FileNotFoundError, NotADirectoryError):
            return _tuple_new(ItemInfo, (_base_name(name), False, 0, False, 0, 0))
        except OSError as exc:
            raise _os_error(exc, f"info {name!r}") from None
        if st.st_mode & _S_IFMT == _S_IFDIR:
            return _tuple_new(ItemInfo, (_base_name(name), True, 0, True, st.st_atime, st.st_mtime))
        return _tuple_new(ItemInfo, (_base_name(name), True, st.st_size, False, st.st_atime, st.st_mtime))

    def load(self, name, *, size=None, offset=0):
        if not self.opened:
            raise self._not_open()
        try:
            fd = os.open(self._prefix + name, _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise _os_error(exc, f"load {name!r}") from None
        try:
            if size is None and offset >= 0:
                # Most items are small: read a first chunk without asking for the size (fstat
                # costs as much as the read).  A regular file reads short only at its end, and an
                # item never changes once renamed into place.
                data = os.pread(fd, _FIRST_CHUNK, offset)
                if len(data) < _FIRST_CHUNK:
                    return data
                # a big item: read it whole in one piece; re-reading the first chunk is cheaper
                # than joining the pieces
                wanted = os.fstat(fd).st_size - offset
            elif offset < 0 or size > _TRUSTED_READ_SIZE:
                length = os.fstat(fd).st_size
                if offset < 0:
                    offset = max(length + offset, 0)
                wanted = length - offset
                if size is not None and size < wanted:
                    wanted = size
                if wanted <= 0:
                    return b""
            else:
                wanted = size
            data = os.pread(fd, wanted, offset)
            if len(data) < wanted:
                # a short read is the end of the file, unless the kernel split a huge read
                parts = [data]
                got = len(data)
                while got < wanted:
                    more = os.pread(fd, wanted - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data
        except IsADirectoryError:
            raise ObjectNotFound(f"{name!r} is a directory, not an item") from None
        except OSError as exc:
            raise _os_error(exc, f"load {name!r}") from None
        finally:
            os.close(fd)

    def store(self, name, value):
        if not self.opened:
            raise self._not_open()
        path = self._prefix + name
        temp = f"{path}{_temp.prefix}{next(_temp.counter)}{TMP_SUFFIX}"
        try:
            fd = os.open(temp, _WRITE_FLAGS, FILE_MODE)
        except FileNotFoundError:
            self._make_parent(path, name)
            try:
                fd = os.open(temp, _WRITE_FLAGS, FILE_MODE)
            except OSError as exc:
                raise _os_error(exc, f"store {name!r}") from None
        except NotADirectoryError:
            raise BackendError(f"cannot store {name!r}: a parent is an item, not a directory") from None
        except OSError as exc:
            raise _os_error(exc, f"store {name!r}") from None
        try:
            try:
                written = os.write(fd, value)
                if written != len(value):
                    # a partial write, or a multi-byte memoryview format: continue byte-wise
                    view = memoryview(value).cast("B")
                    while written < view.nbytes:
                        written += os.write(fd, view[written:])
                if self._always:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
        except BaseException as exc:
            _unlink_quietly(temp)
            if isinstance(exc, IsADirectoryError):
                raise BackendError(f"cannot store {name!r}: a directory of that name exists") from None
            if isinstance(exc, OSError):
                raise _os_error(exc, f"store {name!r}") from None
            raise
        self._dirty = True
        if self._always:
            self._changed(path)

    def delete(self, name):
        if not self.opened:
            raise self._not_open()
        path = self._prefix + name
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except IsADirectoryError:
            raise BackendError(f"cannot delete {name!r}: it is a directory (use rmdir)") from None
        except OSError as exc:
            raise _os_error(exc, f"delete {name!r}") from None
        self._dirty = True
        if self._always:
            self._changed(path)

    def move(self, curr_name, new_name):
        if not self.opened:
            raise self._not_open()
        source = self._prefix + curr_name
        target = self._prefix + new_name
        try:
            try:
                os.rename(source, target)
            except (FileNotFoundError, NotADirectoryError):
                if not os.path.lexists(source):
                    raise ObjectNotFound(curr_name) from None
                self._make_parent(target, new_name)
                os.rename(source, target)
        except FileNotFoundError:
            raise ObjectNotFound(curr_name) from None  # removed by someone else meanwhile
        except IsADirectoryError:
            raise BackendError(f"cannot move {curr_name!r} to {new_name!r}: the target is a directory") from None
        except NotADirectoryError:
            raise BackendError(
                f"cannot move {curr_name!r} to {new_name!r}: a parent of the target is an item"
            ) from None
        except OSError as exc:
            raise _os_error(exc, f"move {curr_name!r} to {new_name!r}") from None
        self._dirty = True
        if self._always:
            self._changed(target)
            if source.rpartition("/")[0] != target.rpartition("/")[0]:
                self._changed(source)

    def list(self, name) -> Iterator[ItemInfo]:
        if not self.opened:
            raise self._not_open()
        try:
            with os.scandir(self._prefix + name) as scan:
                entries = sorted((entry for entry in scan if not entry.name.endswith(TMP_SUFFIX)), key=_entry_name)
        except FileNotFoundError:
            raise ObjectNotFound(f"directory {name!r} does not exist") from None
        except NotADirectoryError:
            raise BackendError(f"cannot list {name!r}: it is an item, not a directory") from None
        except OSError as exc:
            raise _os_error(exc, f"list {name!r}") from None
        return self._items(entries)

    @staticmethod
    def _items(entries) -> Iterator[ItemInfo]:
        # stat lazily: a caller that stops early pays only for what it saw
        for entry in entries:
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # removed since the directory was read
            if st.st_mode & _S_IFMT == _S_IFDIR:
                yield _tuple_new(ItemInfo, (entry.name, True, 0, True, st.st_atime, st.st_mtime))
            else:
                yield _tuple_new(ItemInfo, (entry.name, True, st.st_size, False, st.st_atime, st.st_mtime))

    def hash(self, name, algorithm="sha256"):
        if not self.opened:
            raise self._not_open()
        hasher = hashlib.new(algorithm)  # an unknown algorithm fails before the file is opened
        fd = self._open_item(name, "hash")
        buffer = bytearray(_HASH_CHUNK)
        view = memoryview(buffer)
        try:
            with open(fd, "rb", buffering=0, closefd=False) as file:
                while True:
                    n = file.readinto(buffer)
                    if not n:
                        break
                    hasher.update(view[:n])
        except IsADirectoryError:
            raise ObjectNotFound(f"{name!r} is a directory, not an item") from None
        except OSError as exc:
            raise _os_error(exc, f"hash {name!r}") from None
        finally:
            os.close(fd)
        return hasher.hexdigest()

    def gather(self, sources):
        """The ranges ``(name, offset, size)`` of *sources*, concatenated; consecutive ranges of
        one item share one open file.  A range that cannot be read in full raises ReadRangeError."""
        if not self.opened:
            raise self._not_open()
        parts = []
        current = None
        fd = -1
        try:
            for name, offset, size in sources:
                if size == 0:
                    continue
                if name != current:
                    if fd >= 0:
                        os.close(fd)
                        fd = -1
                    fd = self._open_item(name, "gather")
                    current = name
                start = offset
                if offset < 0 or size > _TRUSTED_READ_SIZE:
                    length = os.fstat(fd).st_size
                    if offset < 0:
                        start = max(length + offset, 0)
                    if start + size > length:  # known short: no need to allocate *size* bytes
                        raise ReadRangeError(
                            f"{name}: wanted {size} bytes at offset {offset}, the item has {length} bytes"
                        )
                data = os.pread(fd, size, start)
                while len(data) < size:
                    more = os.pread(fd, size - len(data), start + len(data))
                    if not more:
                        raise ReadRangeError(f"{name}: wanted {size} bytes at offset {offset}, got {len(data)}")
                    data += more
                parts.append(data)
        except IsADirectoryError:
            raise ObjectNotFound(f"{current!r} is a directory, not an item") from None
        except OSError as exc:
            raise _os_error(exc, f"gather from {current!r}") from None
        finally:
            if fd >= 0:
                os.close(fd)
        return b"".join(parts)

    def _open_item(self, name: str, what: str) -> int:
        try:
            return os.open(self._prefix + name, _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise _os_error(exc, f"{what} {name!r}") from None


def _entry_name(entry) -> str:
    return entry.name
