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
from typing import Iterator, NamedTuple, Optional

from ..constants import TMP_SUFFIX
from .errors import ObjectNotFound, ReadRangeError


class ItemInfo(NamedTuple):
    """What info() and list() tell about an item.  Times are POSIX timestamps in seconds, 0 if unknown."""

    name: str
    exists: bool
    size: int
    directory: bool
    atime: int = 0
    mtime: int = 0


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do natively.  The conformance kit checks what is declared.

    :ivar read: load/info work.
    :ivar write: store/delete/move/mkdir/rmdir work (False: a read-only backend).
    :ivar list: list works.
    :ivar range_reads: a partial load moves only the requested bytes.
    :ivar hash_algorithms: algorithms hash() computes where the data is, without downloading it.
    :ivar needs_mkdir: items can only be stored in directories that exist (posix-like);
        False for object stores where directories are implied by names.
    :ivar atomic_store: a reader never sees a partially stored value.
    :ivar atomic_move: move() replaces its target in one step.
    :ivar durable_flush: flush()/close() make stored items survive a power loss.
    :ivar thread_safe: one backend object may be used from several threads at once; if False,
        the Store serializes the calls (as the PyPI borgstore does for every backend).
    """

    read: bool = True
    write: bool = True
    list: bool = True
    range_reads: bool = True
    hash_algorithms: frozenset = field(default_factory=frozenset)
    needs_mkdir: bool = True
    atomic_store: bool = True
    atomic_move: bool = True
    durable_flush: bool = False
    thread_safe: bool = False

    def as_dict(self) -> dict:
        return {
            name: sorted(value) if isinstance(value, frozenset) else value
            for name, value in self.__dict__.items()
        }


class BackendBase(ABC):
    """Base class of all backends.

    Subclasses implement the abstract methods.  ``hash``, ``gather``, ``defrag``, ``quota`` and
    ``flush`` have generic implementations that a backend overrides when it can do better.
    Names given to a backend are already validated and nested by the Store: the backend only has
    to map them onto its storage.  Errors are the ones from :mod:`borgstore.backends.errors`.
    """

    #: create the nesting directories at create() time (see Store.create_levels)
    precreate_dirs: bool = False
    #: what this backend can do natively; override in subclasses
    capabilities: Capabilities = Capabilities()

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
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
        """Close the store and release every resource (connections, processes, threads)."""

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
    def store(self, name: str, value: bytes) -> None:
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

    # --- generic operations with default implementations ---
    def hash(self, name: str, algorithm: str = "sha256") -> str:
        """Return the hex digest of item *name*."""
        h = hashlib.new(algorithm)
        h.update(self.load(name))
        return h.hexdigest()

    def gather(self, sources) -> bytes:
        """Return the concatenated byte ranges ``(name, offset, size)`` of *sources*.

        A range that cannot be read in full raises ReadRangeError."""
        return gather_by_loads(self.load, sources)

    def defrag(self, sources, *, target=None, algorithm=None, namespace=None, levels=0) -> str:
        """Store the concatenated ranges of *sources* as one item and return its name.

        Kept for backends written for the PyPI package; the Store composes defrag from gather and
        store so that every middleware sees both halves."""
        data = self.gather(sources)
        if target is None:
            if algorithm is None:
                raise ValueError("defrag needs a target or an algorithm")
            target = hashlib.new(algorithm, data).hexdigest()
            if namespace:
                target = namespace.rstrip("/") + "/" + target
            if levels:
                from ..nesting import HexNesting

                target = HexNesting().nest(target, levels)
        self.store(target, data)
        return target

    def quota(self) -> dict:
        """Return ``{"limit": bytes, "usage": bytes}``; -1 where not known."""
        return {"limit": -1, "usage": -1}


def gather_by_loads(load, sources) -> bytes:
    """Concatenate the ranges ``(name, offset, size)`` of *sources*, one ``load`` call each.

    A range that cannot be read in full raises ReadRangeError."""
    parts = []
    for name, offset, size in sources:
        if size == 0:
            continue
        data = load(name, size=size, offset=offset)
        if len(data) != size:
            raise ReadRangeError(f"{name}: wanted {size} bytes at offset {offset}, got {len(data)}")
        parts.append(data)
    return b"".join(parts)


def is_hidden_from_list(name: str) -> bool:
    """True for the names a backend's list() must never yield."""
    return name.endswith(TMP_SUFFIX)


__all__ = ["BackendBase", "Capabilities", "ItemInfo", "ObjectNotFound", "gather_by_loads", "is_hidden_from_list"]
