"""The built-in ``memory:`` backend: a store in this process's memory.

``memory:`` gives a new, private store each time; ``memory:NAME`` gives the store called NAME,
shared by every backend opened on that URL in this process (so two Store instances can work on
one location).  It is the reference the conformance kit compares other backends with, and a quick
store for tests and demos.  It behaves like a posix directory tree: directories exist or not, and
storing an item creates its missing parent directories.
"""

import itertools
import threading
import time
from typing import Any, Iterator, List, Optional, Union

from .._plugins import BackendSpec, hookimpl
from ..constants import TMP_SUFFIX
from ._base import BackendBase, Capabilities, ItemInfo, Value, is_hidden_from_list
from .errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendURLInvalid,
    ObjectAlreadyExists,
    ObjectNotFound,
)
from .toolkit import check_backend_name, check_load_range, check_options, missing_or_directory

#: items per page of a list_tree stream (an object store's page size)
PAGE_SIZE = 1000


class _Item:
    __slots__ = ("data", "mtime")

    def __init__(self, data: bytes):
        self.data = data
        self.mtime = time.time()


#: a directory: name -> subdirectory or item
_Directory = dict[str, Union["_Directory", _Item]]


class _Location:
    """One named store: its root directory (None while it does not exist) and a lock."""

    def __init__(self) -> None:
        self.root: Optional[_Directory] = None
        self.lock = threading.RLock()


_named_locations: dict[str, _Location] = {}
_named_lock = threading.Lock()
_anonymous = itertools.count()


def _location(name: str) -> _Location:
    with _named_lock:
        location = _named_locations.get(name)
        if location is None:
            location = _named_locations[name] = _Location()
        return location


#: optional operations that an option can take away, each with its capability flag of the same name
_OPTIONAL = ("list_tree", "store_new")


class MemoryBackend(BackendBase):
    """The ``memory:`` backend.  *list_tree* False makes it list one directory at a time only,
    as a posix backend does (the kit checks that both ways agree); *store_new* False makes it a
    backend that cannot create an item exclusively (as rclone)."""

    def __init__(self, name: str = "", *, list_tree: bool = True, store_new: bool = True):
        self.name = name
        # an anonymous store is private to this backend object
        self._location = _location(name) if name else _Location()
        self.capabilities = Capabilities(thread_safe=True, list_tree=bool(list_tree), store_new=bool(store_new))
        self.pages_listed = 0  # list_tree pages served: what an object store would bill

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.name!r}>"

    def __getattribute__(self, name: str) -> Any:
        # without the capability, the operation is not there at all (as on a posix backend)
        if name in _OPTIONAL and not getattr(object.__getattribute__(self, "capabilities"), name):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # --- helpers ---
    def _check_open(self) -> None:
        self.check_open()

    def _root(self) -> _Directory:
        root = self._location.root
        if root is None:
            raise BackendDoesNotExist(f"memory:{self.name} does not exist")
        return root

    def _dir(self, name: str, create: bool = False) -> _Directory:
        node = self._root()
        if not name:
            return node
        for part in name.split("/"):
            child = node.get(part)
            if child is None and create:
                child = node[part] = {}
            if not isinstance(child, dict):
                if child is None:
                    raise ObjectNotFound(f"directory {name!r} does not exist")
                raise BackendError(f"{name!r}: {part!r} is an item, not a directory")
            node = child
        return node

    def _parent(self, name: str, create: bool = False) -> tuple[_Directory, str]:
        parent, _, base = name.rpartition("/")
        return self._dir(parent, create=create), base

    def _item(self, name: str) -> _Item:
        try:
            node, base = self._parent(name)
        except (ObjectNotFound, BackendError):  # a parent missing or an item: nothing is there
            raise ObjectNotFound(name) from None
        item = node.get(base)
        if not isinstance(item, _Item):
            raise missing_or_directory(name, isinstance(item, dict))
        return item

    # --- lifecycle ---
    def create(self) -> None:
        self.check_closed()
        with self._location.lock:
            if self._location.root:
                raise BackendAlreadyExists(f"memory:{self.name} already exists and is not empty")
            self._location.root = {}

    def destroy(self) -> None:
        self.check_closed()
        with self._location.lock:
            self._root()
            self._location.root = None

    def open(self) -> None:
        self.check_closed()
        with self._location.lock:
            self._root()
        self.opened = True

    def close(self) -> None:
        self.check_open()
        self.opened = False

    # --- directories ---
    def mkdir(self, name: str) -> None:
        self._check_open()
        check_backend_name(name)
        with self._location.lock:
            self._dir(name, create=True)

    def rmdir(self, name: str) -> None:
        self._check_open()
        check_backend_name(name)
        with self._location.lock:
            node, base = self._parent(name)
            child = node.get(base)
            if isinstance(child, _Item):
                raise BackendError(f"cannot rmdir {name!r}: it is an item, not a directory")
            if child is None:
                raise ObjectNotFound(f"directory {name!r} does not exist")
            if child:
                raise BackendError(f"directory {name!r} is not empty")
            del node[base]

    # --- items ---
    def info(self, name: str) -> ItemInfo:
        self._check_open()
        check_backend_name(name, root_ok=True)
        with self._location.lock:
            try:
                node, base = self._parent(name)
            except (ObjectNotFound, BackendError):
                return ItemInfo(name=name, exists=False, size=0, directory=False)
            child = node.get(base) if base else node
            if isinstance(child, dict):
                return ItemInfo(name=name, exists=True, size=0, directory=True)
            if child is None:
                return ItemInfo(name=name, exists=False, size=0, directory=False)
            return ItemInfo(name=name, exists=True, size=len(child.data), directory=False, mtime=child.mtime)

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        self._check_open()
        check_backend_name(name)
        check_load_range(size, offset)
        with self._location.lock:
            data = self._item(name).data
        if offset < 0:
            offset = max(len(data) + offset, 0)
        end = None if size is None else offset + size
        return data[offset:end]

    def store(self, name: str, value: Value) -> None:
        self._check_open()
        check_backend_name(name)
        data = bytes(value)
        with self._location.lock:
            node, base = self._parent(name, create=True)
            if isinstance(node.get(base), dict):
                raise BackendError(f"cannot store {name!r}: it is a directory")
            node[base] = _Item(data)

    def store_new(self, name: str, value: Value) -> None:
        """Store *value* under *name* only if no item of that name exists (atomic: under the
        location's lock); else ObjectAlreadyExists, and nothing is written."""
        self._check_open()
        check_backend_name(name)
        data = bytes(value)
        with self._location.lock:
            node, base = self._parent(name, create=True)
            existing = node.get(base)
            if isinstance(existing, dict):
                raise BackendError(f"cannot store_new {name!r}: it is a directory")
            if existing is not None:
                raise ObjectAlreadyExists(f"store_new {name!r}: an item of that name exists")
            node[base] = _Item(data)

    def delete(self, name: str) -> None:
        self._check_open()
        check_backend_name(name)
        with self._location.lock:
            self._item(name)
            node, base = self._parent(name)
            del node[base]

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        check_backend_name(curr_name)
        check_backend_name(new_name)
        with self._location.lock:
            item = self._item(curr_name)
            node, base = self._parent(new_name, create=True)
            if isinstance(node.get(base), dict):
                raise BackendError(f"cannot move to {new_name!r}: it is a directory")
            old_node, old_base = self._parent(curr_name)
            del old_node[old_base]
            node[base] = item

    def _ordered(self, directory: _Directory) -> List[tuple[str, Union[_Directory, _Item]]]:
        """A directory's (name, child) pairs in listing order."""
        return sorted(directory.items())

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        check_backend_name(name, root_ok=True)
        with self._location.lock:
            entries = self._ordered(self._dir(name))
        for key, child in entries:
            if is_hidden_from_list(key):
                continue
            if isinstance(child, dict):
                yield ItemInfo(name=key, exists=True, size=0, directory=True)
            else:
                yield ItemInfo(name=key, exists=True, size=len(child.data), directory=False, mtime=child.mtime)

    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        """Every item below directory *name*, by path, one page of PAGE_SIZE at a time."""
        self._check_open()
        check_backend_name(name, root_ok=True)
        with self._location.lock:
            self._dir(name)  # a missing directory fails at the first next(), before any item
        after: Optional[str] = None
        while True:
            with self._location.lock:
                page = self._tree_page(name, after)
            self.pages_listed += 1
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = page[-1].name

    def _tree_page(self, name: str, after: Optional[str]) -> List[ItemInfo]:
        """Up to PAGE_SIZE items below *name* whose paths sort after *after*."""
        try:
            top = self._dir(name)
        except (ObjectNotFound, BackendError):
            return []  # removed since the stream started: nothing more below it
        page: List[ItemInfo] = []
        self._collect(top, "", after, page)
        return page

    def _collect(self, directory: _Directory, prefix: str, after: Optional[str], page: List[ItemInfo]) -> None:
        # a directory sorts as its name plus "/", as the paths below it do ("a-b" < "a/x")
        entries = sorted(
            directory.items(), key=lambda entry: entry[0] + "/" if isinstance(entry[1], dict) else entry[0]
        )
        for key, child in entries:
            if len(page) >= PAGE_SIZE:
                return
            path = prefix + key
            if isinstance(child, dict):
                below = path + "/"
                # a subtree sorting wholly before *after* was served on an earlier page
                if after is None or after.startswith(below) or below > after:
                    self._collect(child, below, after, page)
            elif not is_hidden_from_list(key) and (after is None or path > after):
                page.append(ItemInfo(name=path, exists=True, size=len(child.data), directory=False, mtime=child.mtime))

    def list_temp(self, name: str) -> Iterator[ItemInfo]:
        """Every ``.tmp`` item below directory *name* (at any depth), by its path relative to
        *name*, with its mtime; a missing directory yields nothing."""
        self._check_open()
        check_backend_name(name, root_ok=True)
        found: List[ItemInfo] = []
        with self._location.lock:
            node = self._root()
            parts = name.split("/") if name else []
            for depth, part in enumerate(parts, 1):
                child = node.get(part)
                if not isinstance(child, dict):
                    if child is not None and depth == len(parts):
                        raise BackendError(f"cannot list_temp {name!r}: it is an item, not a directory")
                    return iter(found)  # missing, or below an item: nothing there
                node = child
            self._collect_temps(node, "", found)
        return iter(found)

    def _collect_temps(self, directory: _Directory, prefix: str, found: List[ItemInfo]) -> None:
        for key, child in sorted(directory.items()):
            if isinstance(child, dict):
                self._collect_temps(child, f"{prefix}{key}/", found)
            elif key.endswith(TMP_SUFFIX):
                found.append(
                    ItemInfo(name=prefix + key, exists=True, size=len(child.data), directory=False, mtime=child.mtime)
                )


def memory_backend_from_url(url: str, **options: bool) -> MemoryBackend:
    check_options(options, _OPTIONAL, "memory")
    scheme, _, name = url.partition(":")
    if scheme.lower() != "memory" or "/" in name.strip("/") and name.startswith("//"):
        raise BackendURLInvalid(f"invalid memory URL {url!r}: use memory: or memory:NAME")
    return MemoryBackend(name.strip("/"), **options)


@hookimpl
def borgstore_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("memory",),
            factory=memory_backend_from_url,
            capabilities=Capabilities(thread_safe=True, list_tree=True, store_new=True),
            options=_OPTIONAL,
            description="in this process's memory; memory:NAME is shared within the process",
        )
    ]
