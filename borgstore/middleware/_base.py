"""The chain interface, the base class of every middleware, and the link to a backend."""

import threading

from ..backends._base import BackendBase

# Every operation of the chain interface.  A middleware overrides the ones it changes; the rest
# are bound straight to the next link, so a pass-through operation costs nothing.
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
    "soft_delete",
    "undelete",
    "list",
    "hash",
    "gather",
    "quota",
)


class Link:
    """One link of a store's chain: a middleware or the adapter around the backend.

    The chain interface is the backend contract (names are nested backend names) plus soft
    deletion: ``info``, ``load``, ``delete``, ``move``, ``list``, ``hash`` and ``gather`` take
    ``deleted=True`` to address soft-deleted items, and ``soft_delete(name)``/``undelete(name)``
    move an item into and out of that state.  The ``softdelete`` middleware implements these on top
    of plain renames; without it in the chain they raise ValueError.
    """

    #: the name the application used for this link (the middleware name, or the URL scheme)
    name = ""
    inner = None

    def layers(self):
        """Yield the links from this one inwards to the backend adapter."""
        link = self
        while link is not None:
            yield link
            link = link.inner

    def find_layer(self, name: str):
        """Return the first link called *name* from here inwards, or None."""
        for link in self.layers():
            if link.name == name:
                return link
        return None

    @property
    def backend(self) -> BackendBase:
        """The backend at the bottom of the chain."""
        return list(self.layers())[-1].backend

    @property
    def capabilities(self):
        return self.inner.capabilities

    @property
    def precreate_dirs(self):
        return self.inner.precreate_dirs

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()
        return False


class Middleware(Link):
    """Base class of every middleware: forwards each operation to :attr:`inner` unchanged.

    Subclass it, override the operations to change, and call ``self.inner.<op>(...)`` to go on
    down the chain.  Keep the signatures of the chain interface (see :class:`BackendAdapter`).
    """

    def __init__(self, inner: Link):
        if not isinstance(inner, Link):
            raise TypeError(f"a middleware wraps a chain link, not {type(inner).__name__}")
        self.inner = inner
        cls = type(self)
        for op in OPERATIONS:
            if getattr(cls, op) is getattr(Middleware, op):
                setattr(self, op, getattr(inner, op))

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"

    def create(self):
        return self.inner.create()

    def destroy(self):
        return self.inner.destroy()

    def open(self):
        return self.inner.open()

    def close(self):
        return self.inner.close()

    def flush(self):
        return self.inner.flush()

    def mkdir(self, name):
        return self.inner.mkdir(name)

    def rmdir(self, name):
        return self.inner.rmdir(name)

    def info(self, name, *, deleted=False):
        return self.inner.info(name, deleted=deleted)

    def load(self, name, *, size=None, offset=0, deleted=False):
        return self.inner.load(name, size=size, offset=offset, deleted=deleted)

    def store(self, name, value):
        return self.inner.store(name, value)

    def delete(self, name, *, deleted=False):
        return self.inner.delete(name, deleted=deleted)

    def move(self, curr_name, new_name, *, deleted=False):
        return self.inner.move(curr_name, new_name, deleted=deleted)

    def soft_delete(self, name):
        return self.inner.soft_delete(name)

    def undelete(self, name):
        return self.inner.undelete(name)

    def list(self, name, *, deleted=False):
        return self.inner.list(name, deleted=deleted)

    def hash(self, name, algorithm="sha256", *, deleted=False):
        return self.inner.hash(name, algorithm, deleted=deleted)

    def gather(self, sources, *, deleted=False):
        return self.inner.gather(sources, deleted=deleted)

    def quota(self):
        return self.inner.quota()


def _no_soft_deletion():
    return ValueError("soft-deleted items need the 'softdelete' middleware in the store's chain")


class BackendAdapter(Link):
    """The innermost link: turns chain calls into backend calls.

    It accepts ``deleted=False`` only: soft deletion is the business of the ``softdelete``
    middleware, which sits further out and never passes ``deleted=True`` down.
    """

    def __init__(self, backend: BackendBase, name: str = "backend"):
        self._backend = backend
        self.name = name
        capabilities = getattr(backend, "capabilities", None)
        if not getattr(capabilities, "thread_safe", False):
            backend = _Serialized(backend)
        for op in ("create", "destroy", "open", "close", "mkdir", "rmdir", "store"):
            setattr(self, op, getattr(backend, op))
        # a backend written for the PyPI package may lack the newer operations
        self.flush = getattr(backend, "flush", _nothing)
        self.quota = getattr(backend, "quota", _unknown_quota)
        self._calls = backend  # what info/load/... below call: the backend, serialized if needed

    def __repr__(self):
        return f"<BackendAdapter {type(self._backend).__name__}>"

    @property
    def backend(self):
        return self._backend

    @property
    def capabilities(self):
        from ..backends._base import Capabilities

        return getattr(self._backend, "capabilities", None) or Capabilities()

    @property
    def precreate_dirs(self):
        return getattr(self._backend, "precreate_dirs", False)

    def info(self, name, *, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        return self._calls.info(name)

    def load(self, name, *, size=None, offset=0, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        return self._calls.load(name, size=size, offset=offset)

    def delete(self, name, *, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        return self._calls.delete(name)

    def move(self, curr_name, new_name, *, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        return self._calls.move(curr_name, new_name)

    def soft_delete(self, name):
        raise _no_soft_deletion()

    def undelete(self, name):
        raise _no_soft_deletion()

    def list(self, name, *, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        return self._calls.list(name)

    def hash(self, name, algorithm="sha256", *, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        hash = getattr(self._calls, "hash", None)
        if hash is None:
            return BackendBase.hash(self._calls, name, algorithm)
        return hash(name, algorithm)

    def gather(self, sources, *, deleted=False):
        if deleted:
            raise _no_soft_deletion()
        gather = getattr(self._calls, "gather", None)
        if gather is None:
            return BackendBase.gather(self._calls, sources)
        return gather(sources)


def _nothing():
    return None


def _unknown_quota():
    return {"limit": -1, "usage": -1}


class _Serialized:
    """Runs one call at a time on a backend that is not declared thread-safe."""

    def __init__(self, backend):
        self._backend = backend
        self._lock = threading.RLock()

    def __getattr__(self, name):
        attribute = getattr(self._backend, name)
        if not callable(attribute):
            return attribute
        lock = self._lock

        def serialized(*args, **kwargs):
            with lock:
                return attribute(*args, **kwargs)

        if name == "list":
            return lambda *args, **kwargs: self._serialized_iteration(attribute, args, kwargs)
        return serialized

    def _serialized_iteration(self, list_method, args, kwargs):
        with self._lock:
            items = iter(list_method(*args, **kwargs))
        while True:
            with self._lock:
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item
