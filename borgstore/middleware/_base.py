"""The chain interface, the base class of every middleware, and the link to a backend."""

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Optional, TypeVar, cast

from ..backends._base import BackendBase, Capabilities, ItemInfo, Ranges, Value
from ._optional import optional_operation

# Every operation of the link contract: exactly the backend contract (names are backend names,
# no soft deletion).  A middleware overrides the ones it changes; the rest are bound straight to
# the next link, so a pass-through operation costs nothing.
OPERATIONS = (
    "create",
    "destroy",
    "open",
    "close",
    "flush",
    "mkdir",
    "rmdir",
    "info",
    "load",
    "store",
    "delete",
    "move",
    "list",
    "list_tree",
    "list_temp",
    "hash",
    "gather",
    "quota",
    "store_new",
)
#: operations a backend may lack (list_tree, store_new: see its capabilities; list_temp: the
#: stale temp clean-up); a link has them only where the link further in has them
OPTIONAL_OPERATIONS = ("list_tree", "list_temp", "store_new")

_Link = TypeVar("_Link", bound="Link")


class Link:
    """One link of a store's chain: a middleware or the adapter around the backend.

    Every link speaks the backend contract (:class:`~borgstore.backends.BackendBase`) on backend
    names such as ``data/01/0123abcd`` or ``data/01/0123abcd.del``: the Store has already done
    the nesting and the soft deletion (a soft deletion is a ``move`` to ``<name>.del``).
    ``list_tree`` is there when ``capabilities.list_tree`` is True.
    """

    #: the name the application used for this link (the middleware name, or the URL scheme)
    name = ""
    #: the next link further in (None only for the backend adapter)
    inner: Optional["Link"] = None
    enforces_limits = False  #: refuses what the application may not do; Store.backend starts at the outermost such link

    if TYPE_CHECKING:
        # The operations, for the type checker only: a middleware has them as methods, the
        # adapter as attributes bound to the backend's, and the optional ones exist only where
        # the backend has them (hasattr() tells), so the class itself must not define them.
        def create(self) -> None: ...
        def destroy(self) -> None: ...
        def open(self) -> None: ...
        def close(self) -> None: ...
        def flush(self) -> None: ...
        def mkdir(self, name: str) -> None: ...
        def rmdir(self, name: str) -> None: ...
        def info(self, name: str) -> ItemInfo: ...
        def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes: ...
        def store(self, name: str, value: Value) -> None: ...
        def delete(self, name: str) -> None: ...
        def move(self, curr_name: str, new_name: str) -> None: ...
        def list(self, name: str) -> Iterator[ItemInfo]: ...
        def list_tree(self, name: str) -> Iterator[ItemInfo]: ...
        def list_temp(self, name: str) -> Iterator[ItemInfo]: ...
        def hash(self, name: str, algorithm: str = "sha256") -> str: ...
        def gather(self, sources: Ranges) -> bytes: ...
        def quota(self) -> dict[str, int]: ...
        def store_new(self, name: str, value: Value) -> None: ...

    def layers(self) -> Iterator["Link"]:
        """Yield the links from this one inwards to the backend adapter."""
        link: Optional[Link] = self
        while link is not None:
            yield link
            link = link.inner

    def find_layer(self, kind: type[_Link]) -> Optional[_Link]:
        """Return the first link from here inwards that is an instance of *kind*, or None."""
        for link in self.layers():
            if isinstance(link, kind):
                return link
        return None

    def contribute_stats(self, stats: dict[str, Any]) -> None:
        """Add this link's counters to *stats* (what ``Store.stats`` shows).

        The Store asks every link, outermost first, so a link further in (closer to the
        storage) may overwrite a figure an outer one gave: it knows better what reached the
        backend.  The default contributes nothing."""

    @property
    def backend(self) -> BackendBase:
        """The backend at the bottom of the chain."""
        return list(self.layers())[-1].backend

    # every link but the adapter (which overrides these) has one further in
    @property
    def capabilities(self) -> Capabilities:
        """What the chain can do: the backend's capabilities (read them after open())."""
        return cast(Link, self.inner).capabilities

    @property
    def precreate_dirs(self) -> bool:
        """Whether the Store creates the nesting directories at create(): the backend's ``precreate_dirs``."""
        return cast(Link, self.inner).precreate_dirs

    def __enter__(self: _Link) -> _Link:
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


class Middleware(Link):
    """Base class of every middleware: forwards each operation to :attr:`inner` unchanged.

    Subclass it, override only the operations to change, with the signatures of the backend
    contract, and call ``self.inner.<op>(...)`` to go on down the chain.  Operations not
    overridden are the inner link's own bound methods: they cost nothing.
    """

    inner: Link

    def __init__(self, inner: Link):
        if not isinstance(inner, Link):
            raise TypeError(f"a middleware wraps a chain link, not {type(inner).__name__}")
        self.inner = inner
        cls = type(self)
        for op in OPERATIONS:
            if getattr(cls, op, None) is getattr(Middleware, op, None):
                if op in OPTIONAL_OPERATIONS and not hasattr(inner, op):
                    continue
                setattr(self, op, getattr(inner, op))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def create(self) -> None:
        return self.inner.create()

    def destroy(self) -> None:
        return self.inner.destroy()

    def open(self) -> None:
        return self.inner.open()

    def close(self) -> None:
        return self.inner.close()

    def flush(self) -> None:
        return self.inner.flush()

    def mkdir(self, name: str) -> None:
        return self.inner.mkdir(name)

    def rmdir(self, name: str) -> None:
        return self.inner.rmdir(name)

    def info(self, name: str) -> ItemInfo:
        return self.inner.info(name)

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        return self.inner.load(name, size=size, offset=offset)

    def store(self, name: str, value: Value) -> None:
        return self.inner.store(name, value)

    def delete(self, name: str) -> None:
        return self.inner.delete(name)

    def move(self, curr_name: str, new_name: str) -> None:
        return self.inner.move(curr_name, new_name)

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self.inner.list(name)

    @optional_operation
    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        return self.inner.list_tree(name)

    @optional_operation
    def list_temp(self, name: str) -> Iterator[ItemInfo]:
        return self.inner.list_temp(name)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return self.inner.hash(name, algorithm)

    def gather(self, sources: Ranges) -> bytes:
        return self.inner.gather(sources)

    def quota(self) -> dict[str, int]:
        return self.inner.quota()

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        return self.inner.store_new(name, value)


# A middleware operation keeps the backend contract exactly, so it carries the contract's text
# (help(Middleware.load), the API reference) rather than fifteen restatements of "forwarded".
for _op in OPERATIONS:
    if _op in OPTIONAL_OPERATIONS:
        continue  # optional: the backend class only names them in a comment
    getattr(Middleware, _op).__doc__ = getattr(BackendBase, _op).__doc__
del _op

# what every backend has; the rest have generic stand-ins below, or exist only where declared
_EVERY_BACKEND_HAS = tuple(
    op for op in OPERATIONS if op not in ("flush", "quota", "hash", "gather") + OPTIONAL_OPERATIONS
)


class BackendAdapter(Link):
    """The innermost link: binds the chain's operations to the backend's methods.

    A backend not declaring ``thread_safe`` is called one operation at a time; one written for
    the PyPI package gets the newer operations (``flush``, ``quota``, ``hash``, ``gather``) from
    their generic implementations.
    """

    def __init__(self, backend: BackendBase, name: str = "backend"):
        self._backend = backend
        self.name = name
        capabilities = getattr(backend, "capabilities", None)
        calls: Any = backend if getattr(capabilities, "thread_safe", False) else _Serialized(backend)
        for op in _EVERY_BACKEND_HAS:
            setattr(self, op, getattr(calls, op))
        # the operations are instance attributes here (setattr: the class has no methods to replace)
        setattr(self, "flush", getattr(calls, "flush", _nothing))
        setattr(self, "quota", getattr(calls, "quota", _unknown_quota))
        hash_ = getattr(calls, "hash", None)
        setattr(
            self,
            "hash",
            hash_ if hash_ is not None else lambda name, algorithm="sha256": BackendBase.hash(calls, name, algorithm),
        )
        gather = getattr(calls, "gather", None)
        setattr(self, "gather", gather if gather is not None else lambda sources: BackendBase.gather(calls, sources))
        for op in OPTIONAL_OPERATIONS:
            if hasattr(backend, op):
                setattr(self, op, getattr(calls, op))

    def __repr__(self) -> str:
        return f"<BackendAdapter {type(self._backend).__name__}>"

    @property
    def backend(self) -> BackendBase:
        return self._backend

    @property
    def capabilities(self) -> Capabilities:
        from ..backends._base import Capabilities

        return getattr(self._backend, "capabilities", None) or Capabilities()

    @property
    def precreate_dirs(self) -> bool:
        """The backend's ``precreate_dirs`` (False for a backend that does not say)."""
        return getattr(self._backend, "precreate_dirs", False)


def _nothing() -> None:
    return None


def _unknown_quota() -> dict[str, int]:
    return {"limit": -1, "usage": -1}


class _Serialized:
    """Runs one call at a time on a backend that is not declared thread-safe."""

    def __init__(self, backend: BackendBase):
        self._backend = backend
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._backend, name)
        if not callable(attribute):
            return attribute
        lock = self._lock

        def serialized(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return attribute(*args, **kwargs)

        if name in ("list", "list_tree", "list_temp"):
            return lambda *args, **kwargs: self._serialized_iteration(attribute, args, kwargs)
        return serialized

    def _serialized_iteration(
        self, list_method: Callable[..., Iterator[ItemInfo]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Iterator[ItemInfo]:
        with self._lock:
            items = iter(list_method(*args, **kwargs))
        while True:
            with self._lock:
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item
