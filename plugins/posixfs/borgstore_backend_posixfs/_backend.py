"""A store in a directory tree on a local file system.

Every backend name maps to the path ``<root>/<name>``, reached relative to a descriptor of the
root that is opened once, never through a symbolic link (see ``_beneath``).  The hot operations
(store, load, info, delete, move) are kept to the system calls they need and little else,
because on a RAM-backed file system the Python code around the calls is most of their cost.
"""

import errno
import os
import stat
from typing import Iterator

from borgstore.backends._base import BackendBase, ItemInfo, new_hash
from borgstore.backends.errors import BackendDoesNotExist, BackendError, ObjectNotFound
from borgstore.backends.toolkit import check_backend_name, check_load_range, missing_or_directory
from borgstore.backends.toolkit import PLAIN_NAME

from . import CAPABILITIES, DEFAULT_DURABILITY, DURABILITY_MODES, _beneath, _root, _sync, parse_url
from ._beneath import DIR, DIR_READ, READ
from ._dircache import DirectoryCache
from ._directories import DirectoryPlumbing, _NoDirectory
from ._errors import os_error as _os_error
from ._io import FIRST_CHUNK, hash_file, read_item, read_range, unlink_quietly
from ._listing import list_directory, list_tree
from ._writing import ItemWriting

# an item is opened as one name inside its directory's descriptor: never through a link
_READ_ITEM = READ | os.O_NOFOLLOW
_MISSING = (errno.ENOENT, errno.ENOTDIR)
_S_IFMT, _S_IFREG, _S_IFDIR = 0o170000, stat.S_IFREG, stat.S_IFDIR

# ItemInfo's generated __new__ costs twice the bare tuple construction; info() and list() are hot
_tuple_new = tuple.__new__
_plain = PLAIN_NAME.fullmatch


def _safe_leaf(base: str) -> bool:
    """True for a last name component of ASCII letters, digits and dots, not only dots (so never
    "", "." or ".."): inside a held directory, such a name needs no further check.  bytes
    methods: str.isalnum() is unicode-aware and several times slower."""
    return base.isascii() and base.encode().replace(b".", b"").isalnum()


def backend_from_url(url: str, **options) -> "PosixFSBackend":
    """The factory of the ``file`` scheme: an unopened :class:`PosixFSBackend` for *url*.

    The core has already refused option names outside ``OPTIONS``; the backend checks values."""
    return PosixFSBackend(parse_url(url), **options)


class PosixFSBackend(ItemWriting, DirectoryPlumbing, BackendBase):
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

    #: resolve names by the portable component walk even where openat2 works (for tests)
    walk_names = False

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
        # error messages name the full path; computed once
        self._prefix = self.path if self.path == "/" else self.path + "/"
        self.durability = durability
        self._always = durability == "always"
        # an O_PATH descriptor cannot be fsynced: "always" opens directories for reading
        self._dir_flags = DIR_READ if self._always else DIR
        self.precreate_dirs = precreate_dirs
        self.capabilities = CAPABILITIES
        self._root_fd = -1
        self._open_beneath = None
        self._dirs = None  # the DirectoryCache while open
        self._kept: dict[str, int] = {}  # its held descriptors, by directory name
        # set by every change, cleared by the sync that makes the changes durable
        self._dirty = False

    def __repr__(self):
        return f"<PosixFSBackend {self.path!r} durability={self.durability!r}>"

    # --- lifecycle ---
    def create(self):
        self.check_closed()
        _root.create(self.path, sync=self.durability != "none")

    def destroy(self):
        self.check_closed()
        _root.destroy(self.path, sync=self.durability != "none")

    def open(self):
        self.check_closed()
        try:
            self._root_fd = os.open(self.path, DIR_READ)
        except (FileNotFoundError, NotADirectoryError):
            raise BackendDoesNotExist(
                f"the posixfs store location {self.path} does not exist or is not a directory"
            ) from None
        except OSError as exc:
            raise _os_error(exc, f"open the posixfs store {self.path}") from None
        self._open_beneath = _beneath.opener(self._root_fd, self._prefix, walk=self.walk_names)
        flags = self._dir_flags
        self._dirs = DirectoryCache(
            lambda directory: self._open_beneath(directory, flags), _beneath.child_opener(flags, self._prefix)
        )
        # Only names that passed check_backend_name() ever become keys here, so a name made of a
        # held directory and a last component _safe_leaf() accepts is safe as it is: the hot
        # paths skip the full check for it, which costs a third of an info's system call.
        self._kept = self._dirs.kept
        self._dirty = False
        self.opened = True

    def close(self):
        self.check_open()
        try:
            self.flush()
        finally:
            self.opened = False
            self._open_beneath = None
            self._dirs.close()
            fd, self._root_fd = self._root_fd, -1
            os.close(fd)

    def flush(self):
        self.check_open()
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

    # --- directories ---
    # --- items ---
    def info(self, name):
        if not self.opened:
            self.check_open()
        if type(name) is not str:
            check_backend_name(name)  # raises
        directory, _, base = name.rpartition("/")
        held = self._kept.get(directory) if directory else None
        if held is None or not _safe_leaf(base):
            check_backend_name(name, root_ok=True)
            held = None
        try:
            try:
                if held is None:
                    raise FileNotFoundError  # not held: the generic path
                st = os.stat(base, dir_fd=held, follow_symlinks=False)  # the common case, directly
            except FileNotFoundError:
                st = self._stat(directory, base, name)
        except (_NoDirectory, FileNotFoundError, NotADirectoryError):
            return _tuple_new(ItemInfo, (base, False, 0, False, 0, 0))
        except OSError as exc:
            raise _os_error(exc, f"info {name!r}", self._prefix + name) from None
        found = st.st_mode & _S_IFMT
        if found == _S_IFREG:
            return _tuple_new(ItemInfo, (base, True, st.st_size, False, st.st_atime, st.st_mtime))
        if found == _S_IFDIR:
            return _tuple_new(ItemInfo, (base, True, 0, True, st.st_atime, st.st_mtime))
        if found == stat.S_IFLNK:
            raise self._link_error("info", name)
        raise BackendError(f"info {name!r}: {self._prefix + name} is neither an item nor a directory")

    def _stat(self, directory: str, base: str, name: str) -> os.stat_result:
        """The entry *base* in *directory*, not following a link (the root for ``""``)."""
        if not base:
            return os.stat(self._root_fd)
        return self._in_directory(
            directory, "info", name, lambda parent: os.stat(base, dir_fd=parent, follow_symlinks=False), create=False
        )

    def _open_item(self, name: str, op: str) -> int:
        """A descriptor of the item *name* (checked here), opened without following a link."""
        if type(name) is not str:
            check_backend_name(name)  # raises
        directory, _, base = name.rpartition("/")
        held = self._kept.get(directory) if directory else self._root_fd
        if held is None or not _safe_leaf(base):
            check_backend_name(name)
        else:  # the common case, without the generic path's calls
            try:
                return os.open(base, _READ_ITEM, dir_fd=held)
            except FileNotFoundError:
                pass  # missing, or a directory removed since: the generic path tells which
            except OSError as exc:
                raise self._item_error(exc, op, name) from None
        try:
            return self._in_directory(
                directory, op, name, lambda parent: os.open(base, _READ_ITEM, dir_fd=parent), create=False
            )
        except _NoDirectory:
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise self._item_error(exc, op, name) from None

    def _item_error(self, exc: OSError, op: str, name: str) -> BackendError:
        if exc.errno in _MISSING:
            return ObjectNotFound(name)
        return _os_error(exc, f"{op} {name!r}", self._prefix + name)

    def load(self, name, *, size=None, offset=0):
        if not self.opened:
            self.check_open()
        if size is not None or type(offset) is not int:
            check_load_range(size, offset)
        fd = self._open_item(name, "load")
        try:
            if size is None and offset == 0:  # the common case, without read_item's call
                data = os.pread(fd, FIRST_CHUNK, 0)
                if len(data) < FIRST_CHUNK:
                    return data
            return read_item(fd, size, offset)
        except IsADirectoryError:
            raise missing_or_directory(name, True) from None
        except OSError as exc:
            raise _os_error(exc, f"load {name!r}", self._prefix + name) from None
        finally:
            os.close(fd)

    def store(self, name, value):
        return self._write("store", name, value, self._store_in)

    def _write(self, op: str, name, value, write_in) -> None:
        """``write_in(parent_fd, base, name, value)`` in the directory of *name*, made if missing
        (store and store_new)."""
        if not self.opened:
            self.check_open()
        if type(name) is not str:
            check_backend_name(name)  # raises
        directory, _, base = name.rpartition("/")
        held = self._kept.get(directory) if directory else self._root_fd
        if held is None or not _safe_leaf(base):
            check_backend_name(name)
        else:
            try:
                return write_in(held, base, name, value)  # the common case, directly
            except FileNotFoundError:
                pass  # a directory removed since: the generic path finds out
        try:
            self._in_directory(directory, op, name, lambda parent: write_in(parent, base, name, value))
        except FileNotFoundError as exc:
            raise self._gone(exc, op, name) from None

    def _store_in(self, parent: int, base: str, name: str, value) -> None:
        """Write *value* to a temp item in *parent* and rename it to *base*.  FileNotFoundError
        (the directory is gone) goes to the caller untranslated."""
        temp = self._write_temp(parent, base, name, value, "store")
        try:
            # the rename replaces a symbolic link of that name itself, never its target
            os.rename(temp, base, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException as exc:
            unlink_quietly(temp, parent)
            if isinstance(exc, IsADirectoryError):
                raise BackendError(f"cannot store {name!r}: a directory of that name exists") from None
            if isinstance(exc, OSError):
                raise self._placing_error(exc, "store", name) from None
            raise
        if self._always:
            self._changed(parent, "store", name)
        else:
            self._dirty = True  # the common case, without a call

    def delete(self, name):
        if not self.opened:
            self.check_open()
        if type(name) is not str:
            check_backend_name(name)  # raises
        directory, _, base = name.rpartition("/")
        held = self._kept.get(directory) if directory else self._root_fd
        if held is None or not _safe_leaf(base):
            check_backend_name(name)
        else:
            try:  # the common case, directly: a link of that name is removed itself, never its target
                os.unlink(base, dir_fd=held)
            except OSError:
                pass  # nothing removed: the generic path finds out why and says so
            else:
                if self._always:
                    self._changed(held, "delete", name)
                else:
                    self._dirty = True
                return
        try:
            self._in_directory(
                directory, "delete", name, lambda parent: self._delete_in(parent, base, name), create=False
            )
        except (_NoDirectory, FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None

    def _delete_in(self, parent: int, base: str, name: str) -> None:
        try:
            # a symbolic link of that name is removed itself, never what it points to
            os.unlink(base, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as exc:
            # unlink(2) of a directory: EISDIR on Linux, EPERM elsewhere
            if isinstance(exc, IsADirectoryError) or self._kind(base, parent, "delete", name) == stat.S_IFDIR:
                raise missing_or_directory(name, True) from None
            raise _os_error(exc, f"delete {name!r}", self._prefix + name, mutation=True) from None
        if self._always:
            self._changed(parent, "delete", name)
        else:
            self._dirty = True  # the common case, without a call

    def move(self, curr_name, new_name):
        if not self.opened:
            self.check_open()
        if type(curr_name) is not str or type(new_name) is not str:
            check_backend_name(curr_name)
            check_backend_name(new_name)  # one of them raises
        source_dir, _, source = curr_name.rpartition("/")
        target_dir, _, target = new_name.rpartition("/")
        held = self._kept.get(source_dir) if source_dir else self._root_fd
        if (
            held is not None
            and target_dir == source_dir
            and _safe_leaf(source)
            and _safe_leaf(target)
        ):
            # the common case (a soft deletion): a rename in a directory we hold, without the
            # generic path's calls; a failure is left to the generic path, which looks at what is
            # there and reports it (a failed rename changed nothing)
            try:
                os.rename(source, target, src_dir_fd=held, dst_dir_fd=held)
            except OSError:
                pass
            else:
                if self._always:
                    self._changed(held, "move", curr_name)
                else:
                    self._dirty = True
                return
        else:
            check_backend_name(curr_name)
            check_backend_name(new_name)
        try:
            self._in_directory(
                source_dir,
                "move",
                curr_name,
                lambda source_fd: self._move_from(source_fd, source, curr_name, new_name),
                create=False,
            )
        except (_NoDirectory, FileNotFoundError):
            raise ObjectNotFound(curr_name) from None

    def _move_from(self, source_fd: int, source: str, curr_name: str, new_name: str) -> None:
        # nothing is made for a missing source (its FileNotFoundError goes to the caller); a
        # directory given as the source is renamed, as rename(2) does (outside the contract)
        if self._kind(source, source_fd, "move", curr_name) is None:
            raise FileNotFoundError(errno.ENOENT, "no such item", curr_name)
        target_dir, _, target = new_name.rpartition("/")
        if target_dir == curr_name.rpartition("/")[0]:
            self._rename(source_fd, source, source_fd, target, curr_name, new_name)
            return
        # a FileNotFoundError left after a dead target directory was retried: the source is gone
        self._in_directory(
            target_dir,
            "move",
            new_name,
            lambda target_fd: self._rename(source_fd, source, target_fd, target, curr_name, new_name),
        )

    def _rename(self, source_fd, source, target_fd, target, curr_name, new_name) -> None:
        try:
            os.rename(source, target, src_dir_fd=source_fd, dst_dir_fd=target_fd)
        except FileNotFoundError:
            raise
        except IsADirectoryError:
            raise BackendError(f"cannot move {curr_name!r} to {new_name!r}: the target is a directory") from None
        except NotADirectoryError:
            raise BackendError(f"cannot move {curr_name!r} to {new_name!r}: the source is a directory") from None
        except OSError as exc:
            raise _os_error(exc, f"move {curr_name!r} to {new_name!r}", mutation=True) from None
        self._changed(target_fd, "move", curr_name)
        if target_fd != source_fd:
            self._changed(source_fd, "move", curr_name)

    def list(self, name) -> Iterator[ItemInfo]:
        if not self.opened:
            self.check_open()
        if type(name) is not str or not _plain(name):  # the common names: no call
            check_backend_name(name, root_ok=True)
        what = f"list {name!r}"
        return list_directory(self._open_directory(name, what), what, self._prefix + name)

    def list_tree(self, name) -> Iterator[ItemInfo]:
        """Every item below directory *name* (no directories), by its path relative to *name*,
        sorted by that path where a directory sorts as its name plus "/", never ``.tmp`` items;
        one directory read per directory, and no stat for a directory."""
        if not self.opened:
            self.check_open()
        if type(name) is not str or not _plain(name):  # the common names: no call
            check_backend_name(name, root_ok=True)
        what = f"list_tree {name!r}"
        return list_tree(self._open_directory(name, what), what, self._prefix + name)

    def _open_directory(self, name: str, what: str) -> int:
        assert self._open_beneath is not None  # open: list() and list_tree() checked it
        try:
            return self._open_beneath(name, DIR_READ)
        except FileNotFoundError:
            raise ObjectNotFound(f"directory {name!r} does not exist") from None
        except NotADirectoryError:
            if self._is_item(name):
                raise BackendError(f"cannot {what}: it is an item, not a directory") from None
            raise ObjectNotFound(f"directory {name!r} does not exist") from None  # a parent is an item
        except OSError as exc:
            raise _os_error(exc, what) from None

    def _is_item(self, name: str) -> bool:
        directory, _, base = name.rpartition("/")
        try:
            return stat.S_ISREG(self._stat(directory, base, name).st_mode)
        except (OSError, _NoDirectory):
            return False

    def hash(self, name, algorithm="sha256"):
        if not self.opened:
            self.check_open()
        hasher = new_hash(algorithm)  # an unknown algorithm fails before the file is opened
        fd = self._open_item(name, "hash")
        try:
            hash_file(fd, hasher)
        except IsADirectoryError:
            raise missing_or_directory(name, True) from None
        except OSError as exc:
            raise _os_error(exc, f"hash {name!r}", self._prefix + name) from None
        finally:
            os.close(fd)
        return hasher.hexdigest()

    def gather(self, sources):
        """The ranges ``(name, offset, size)`` of *sources*, concatenated; consecutive ranges of
        one item share one open file.  A range that cannot be read in full raises ReadRangeError."""
        self.check_open()
        parts = []
        current = None
        fd = -1
        try:
            for name, offset, size in sources:
                check_load_range(size, offset)
                if size is None:
                    raise ValueError(f"invalid size None for {name!r}: gather needs an int >= 0")
                if not size:
                    continue
                if name != current:
                    check_backend_name(name)
                    if fd >= 0:
                        os.close(fd)
                        fd = -1
                    fd = self._open_item(name, "gather")
                    current = name
                parts.append(read_range(fd, name, offset, size))
        except IsADirectoryError:
            raise missing_or_directory(current, True) from None
        except OSError as exc:
            raise _os_error(exc, f"gather from {current!r}", self._prefix + current) from None
        finally:
            if fd >= 0:
                os.close(fd)
        return b"".join(parts)
