"""The backend contract: a few plain operations on nested names, and the capabilities they have.

A backend stores opaque values under slash-separated names relative to its root, e.g.
``data/01/23/0123abcd``.  It knows nothing of namespaces, nesting levels, soft deletion,
permissions, quotas or statistics: the Store and the middleware chain do all that, once, for every
backend.

A backend written for the PyPI ``borgstore`` package subclasses this same ``BackendBase`` with the
same method signatures, so it works here unchanged.
"""

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, Literal, NamedTuple, Optional, Protocol, TypeVar, Union

from ..constants import TMP_SUFFIX
from .errors import BackendMustBeOpen, BackendMustNotBeOpen, ObjectNotFound, ReadRangeError

#: what gather() reads: ``(name, offset, size)`` byte ranges, in order
#: what store() takes: a value as bytes, a bytearray or a 1-D memoryview of bytes
Value = Union[bytes, bytearray, memoryview]
Ranges = Iterable[tuple[str, int, int]]


class HashObject(Protocol):
    """What :func:`new_hash` returns: a hashlib object, or a blake3 one."""

    def update(self, data: bytes, /) -> object: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


class ItemInfo(NamedTuple):
    """What info() and list() tell about an item.  Times are POSIX timestamps in seconds, 0 if unknown."""

    name: str
    exists: bool
    size: int
    directory: bool
    atime: float = 0
    mtime: float = 0


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.  Every flag is read by code and checked by a kit rule.

    The truth is the ``capabilities`` attribute of an *opened* backend (a backend may learn
    what its storage can do only when it connects); a :class:`~borgstore.BackendSpec` may carry
    a copy for display before anything is opened.

    :ivar read: load/info/hash/gather work (the kit reads back what it wrote only if True).
    :ivar write: store/delete/move/mkdir/rmdir work; False: a read-only backend, whose writes
        raise PermissionDenied (kit rule ``read-only-refuses-writes``).
    :ivar list: list works (False: the kit does not list).
    :ivar hash_algorithms: algorithms hash() computes where the data is, without downloading it
        (kit rule ``hash-matches-hashlib`` checks each against hashlib).
    :ivar needs_mkdir: directories are real (posix-like): mkdir() makes an empty one that is
        listed until rmdir() removes it.  False for object stores where directories are implied
        by the names below them and vanish with their last item.  Either way store() and move()
        create missing parents.  The kit's model follows this flag.
    :ivar atomic_store: a reader never sees a partially stored value (kit rule
        ``store-atomic``).
    :ivar thread_safe: one backend object may be used from several threads at once; if False,
        the Store serializes the calls (as the PyPI borgstore does for every backend).
    :ivar list_tree: the backend has ``list_tree(name)``: every item below a directory as one
        stream (one paginated request per page on an object store).  ``Store.list()`` uses it
        instead of one ``list`` call per nesting directory (kit rule ``list-tree-agrees``).
    :ivar store_new: the backend has ``store_new(name, value)``, which writes only where no item
        of that name exists, atomically: of writers racing on one new name exactly one succeeds
        (an exclusive create, a rename that refuses an existing target, a conditional PUT).  The
        ``permissions`` middleware enforces "write new, never overwrite" (``w`` without ``W``)
        with it; without it, that check is a look followed by a store (kit rule
        ``store-new-races``).
    :ivar reserved_suffixes: name suffixes (``.hid``, ``.tmp``) the storage keeps for items of its
        own and refuses from callers with ValueError before anything is touched, as the PyPI
        borgstore's REST server does (its posixfs backend refuses them).  The kit draws no such
        names and checks they are refused (kit rule ``reserved-suffixes-refused``); the ``quota``
        middleware, which keeps ``quota.hid`` in the store, refuses to open on a backend that
        reserves ``.hid`` (a REST server runs the quota itself).
    :ivar transient_errors: the backend's failures may be temporary (a network, a server between
        it and its storage), so its default chain includes the ``retry`` middleware.  Read from
        the backend *before* open(), when the chain is built: declare it on the class.
    """

    read: bool = True
    write: bool = True
    list: bool = True
    hash_algorithms: frozenset[str] = field(default_factory=frozenset)
    needs_mkdir: bool = True
    atomic_store: bool = True
    thread_safe: bool = False
    list_tree: bool = False
    store_new: bool = False
    reserved_suffixes: frozenset[str] = field(default_factory=frozenset)
    transient_errors: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The flags as a plain dict (algorithm sets as sorted lists), for display and JSON."""
        return {name: sorted(value) if isinstance(value, frozenset) else value for name, value in self.__dict__.items()}


_Backend = TypeVar("_Backend", bound="BackendBase")


class BackendBase(ABC):
    """Base class of all backends.

    Subclasses implement the abstract methods.  ``hash``, ``gather``, ``defrag``, ``quota`` and
    ``flush`` have generic implementations that a backend overrides when it can do better.
    Names given to a backend are already validated and nested by the Store: the backend only has
    to map them onto its storage.  Errors are the ones from :mod:`borgstore.backends.errors`.
    """

    #: create the nesting directories at create() time (see Store.create_levels)
    precreate_dirs: bool = False
    #: what this backend can do; override in subclasses (or set in open() once it is known)
    capabilities: Capabilities = Capabilities()
    #: True between open() and close(); check_open()/check_closed() read it
    opened: bool = False

    def check_open(self) -> None:
        """Raise BackendMustBeOpen unless the backend is open: call it first in each operation."""
        if not self.opened:
            raise BackendMustBeOpen(f"{self!r} is not open")

    def check_closed(self) -> None:
        """Raise BackendMustNotBeOpen if the backend is open: create(), destroy() and open() call it."""
        if self.opened:
            raise BackendMustNotBeOpen(f"{self!r} is open")

    def __enter__(self: _Backend) -> _Backend:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> Literal[False]:
        self.close()
        return False

    # --- lifecycle ---
    @abstractmethod
    def create(self) -> None:
        """Create a new, empty store.  An existing empty location is fine; a non-empty one
        raises BackendAlreadyExists.  Raises BackendMustNotBeOpen while open."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the store and everything in it.  Missing: BackendDoesNotExist."""

    @abstractmethod
    def open(self) -> None:
        """Open an existing store.  Missing: BackendDoesNotExist."""

    @abstractmethod
    def close(self) -> None:
        """Close the store and release every resource (connections, processes, threads).

        Not open (also: closed twice): BackendMustBeOpen."""

    def flush(self) -> None:
        """Make everything stored so far as durable as the backend is configured to make it."""

    # --- directories ---
    @abstractmethod
    def mkdir(self, name: str) -> None:
        """Create directory *name* and any missing parents; an existing one is fine."""

    @abstractmethod
    def rmdir(self, name: str) -> None:
        """Remove the empty directory *name*."""

    # --- items ---
    @abstractmethod
    def info(self, name: str) -> ItemInfo:
        """Return an ItemInfo; a missing item gives exists=False, never an exception."""

    @abstractmethod
    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        """Return *size* bytes (None: up to the end) from *offset* (negative: from the end).

        A range past the end gives fewer bytes (possibly none).  Missing: ObjectNotFound."""

    @abstractmethod
    def store(self, name: str, value: Value) -> None:
        """Store *value* under *name* atomically, replacing an existing item."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove item *name* for good.  Missing: ObjectNotFound."""

    @abstractmethod
    def move(self, curr_name: str, new_name: str) -> None:
        """Rename an item, replacing *new_name* if it exists.  Missing source: ObjectNotFound."""

    @abstractmethod
    def list(self, name: str) -> Iterator[ItemInfo]:
        """Yield the items and directories directly inside directory *name*, sorted by name,
        never items ending in ``.tmp``.  Missing directory: ObjectNotFound."""

    # A backend declaring ``Capabilities(list_tree=True)`` also has:
    #
    # def list_tree(self, name: str) -> Iterator[ItemInfo]:
    #     """Yield every item (no directories) below directory *name*, at any depth, named by
    #     its path relative to *name* (``01/23/0123abcd``), sorted by that path, never items
    #     ending in ``.tmp``.  Missing directory: ObjectNotFound, or nothing at all where
    #     directories are implied by names (needs_mkdir=False)."""

    # A backend declaring ``Capabilities(store_new=True)`` also has:
    #
    # def store_new(self, name: str, value: Value) -> None:
    #     """Store *value* under *name* only if no item of that name exists, atomically against
    #     every other writer; an existing item: ObjectAlreadyExists, and nothing is written."""
    #
    # A backend may also have (the Store's remove_stale_temps() uses it; no capability flag):
    #
    # def list_temp(self, name: str) -> Iterator[ItemInfo]:
    #     """Yield every ``.tmp`` item below directory *name* (at any depth), named by its path
    #     relative to *name*, with its mtime: the items writers are writing, or writers that died
    #     left behind.  Missing directory: nothing."""

    # --- generic operations with default implementations ---
    def hash(self, name: str, algorithm: str = "sha256") -> str:
        """Return the hex digest of item *name*."""
        h = new_hash(algorithm)
        h.update(self.load(name))
        return h.hexdigest()

    def gather(self, sources: Ranges) -> bytes:
        """Return the concatenated byte ranges ``(name, offset, size)`` of *sources*.

        A range that cannot be read in full raises ReadRangeError."""
        return gather_by_loads(self.load, sources)

    def defrag(
        self,
        sources: Ranges,
        *,
        target: Optional[str] = None,
        algorithm: Optional[str] = None,
        namespace: Optional[str] = None,
        levels: int = 0,
    ) -> str:
        """Store the concatenated ranges of *sources* as one item and return its name.

        Kept for backends written for the PyPI package; the Store composes defrag from gather and
        store so that every middleware sees both halves."""
        data = self.gather(sources)
        if target is None:
            if algorithm is None:
                raise ValueError("defrag needs a target or an algorithm")
            target = new_hash(algorithm, data).hexdigest()
            if namespace:
                target = namespace.rstrip("/") + "/" + target
            if levels:
                from ..nesting import HexNesting

                target = HexNesting().nest(target, levels)
        self.store(target, data)
        return target

    def quota(self) -> dict[str, int]:
        """Return ``{"limit": bytes, "usage": bytes}``; -1 where not known."""
        return {"limit": -1, "usage": -1}


def gather_by_loads(load: Callable[..., bytes], sources: Ranges) -> bytes:
    """Concatenate the ranges ``(name, offset, size)`` of *sources*, one ``load`` call each.

    A range that cannot be read in full raises ReadRangeError."""
    parts = []
    for name, offset, size in sources:
        if size == 0:
            continue
        data = load(name, size=size, offset=offset)
        if len(data) != size:
            raise read_range_error(name, offset, size, len(data))
        parts.append(data)
    return b"".join(parts)


def read_range_error(name: str, offset: int, wanted: int, got: int) -> ReadRangeError:
    """The error for a short read, worded as applications of the PyPI borgstore match it."""
    return ReadRangeError(f"Read range error from {name}: wanted {wanted} bytes at offset {offset}, got {got}")


def new_hash(algorithm: str, data: bytes = b"") -> HashObject:
    """A hash object for *algorithm*: any hashlib algorithm, and ``blake3`` when the optional
    ``blake3`` package is installed (``pip install borgstore[blake3]``).

    An unknown algorithm raises ``ValueError("Unsupported hash algorithm: <name>")``."""
    if algorithm == "blake3":
        try:
            from blake3 import blake3
        except ImportError:
            raise ValueError("Unsupported hash algorithm: blake3 (install borgstore[blake3] for it)") from None
        return blake3(data)
    try:
        return hashlib.new(algorithm, data)
    except (ValueError, TypeError):
        raise ValueError(f"Unsupported hash algorithm: {algorithm}") from None


def is_hidden_from_list(name: str) -> bool:
    """True for the names a backend's list() must never yield."""
    return name.endswith(TMP_SUFFIX)


__all__ = [
    "BackendBase",
    "Capabilities",
    "ItemInfo",
    "ObjectNotFound",
    "gather_by_loads",
    "is_hidden_from_list",
    "new_hash",
    "read_range_error",
]
