"""The Store: the API applications use (docs/compatibility.md), on top of a middleware chain and a backend.

A call travels: Store (validates the name, finds the namespace's nesting) -> the middleware chain,
outermost first -> the backend adapter -> the backend.  See docs/architecture.md.
"""

import threading
from typing import Any, Iterable, Iterator, Optional, Union

from . import _plugins
from ._config import Namespace, level_directories, parse_config, parse_levels, replace_levels
from ._names import check_name, check_namespace, missing_at_every_level, reword
from .backends._base import BackendBase, ItemInfo, new_hash, read_range_error
from .backends.errors import (
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    NoBackendGiven,
    ObjectNotFound,
    ReadRangeError,
)
from ._listing import check_sources, sorted_lazily, walk, walk_tree
from ._maintenance import check_age, remove_stale_temps
from ._stats import empty_stats
from .constants import DEL_SUFFIX, MAX_NAME_LENGTH
from .middleware._base import BackendAdapter, Link
from ._chain import MiddlewareEntry, build_chain, default_middleware, get_backend, store_chain  # noqa: F401 (public here too)


__all__ = [
    "Store",
    "ItemInfo",
    "ObjectNotFound",
    "ReadRangeError",
    "get_backend",
    "BackendURLInvalid",
    "NoBackendGiven",
]


class Store:
    """A key/value store: names are ``namespace/key``, values are bytes.

    :param url: where the store is, e.g. ``file:///srv/store``; or give *backend*.
    :param backend: an unopened backend (or chain) instead of a URL.
    :param config: ``{"namespace/": {"levels": [..], "nesting": "hex"}}`` per namespace.
    :param permissions: ``{name prefix: letters}`` (docs/compatibility.md, "Permissions"); adds ``permissions``.
    :param cache_url: a second store used as a cache for namespaces whose config asks for one.
    :param cache_backend: the same, as a backend object.
    :param levels: the older form of config: ``{"namespace/": [levels]}``.
    :param quota: a limit in bytes; adds the ``quota`` middleware.
    :param middleware: the chain, outermost first: names or ``(name, {options})``.  Default:
        :func:`default_middleware`.
    :param backend_options: options for the backend built from *url*.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        backend: Union[BackendBase, Link, None] = None,
        config: Optional[dict] = None,
        permissions: Optional[dict] = None,
        *,
        cache_url: Optional[str] = None,
        cache_backend: Union[BackendBase, Link, None] = None,
        levels: Optional[dict] = None,
        quota: Optional[int] = None,
        middleware: Optional[Iterable[MiddlewareEntry]] = None,
        backend_options: Optional[dict] = None,
    ) -> None:
        if levels is not None:
            if config is not None:
                raise ValueError("give either config or levels, not both")
            config = parse_levels(levels)
        if backend is None and url is not None:
            backend = _plugins.backend_for_url(url, backend_options)
        elif backend_options:
            raise ValueError("backend_options only apply to a backend built from a URL")
        if backend is None:
            raise NoBackendGiven("give a backend URL or a backend instance")
        self._namespaces, cached = parse_config(config)
        if cache_url is not None and cache_backend is not None:
            raise ValueError("give either cache_url or cache_backend, not both")
        if cache_url is not None:
            cache_backend = _plugins.backend_for_url(cache_url)
        if cached and cache_backend is None:
            raise ValueError(f"namespaces {', '.join(sorted(cached))} ask for a cache: give cache_url or cache_backend")
        self._chain = store_chain(backend, url, middleware, permissions, quota, cached, cache_backend)
        self._url = url
        self._opened = False
        self._stale_temps_removed = 0
        self._maintenance_lock = threading.Lock()

    def __repr__(self) -> str:
        where = _plugins.redact_url(self._url) if self._url else type(self._chain.backend).__name__
        return f"<Store({where!r}, middleware={list(self.middleware)})>"

    # --- introspection ---
    @property
    def chain(self) -> Link:
        """The outermost link of the middleware chain: its operations (backend names, the backend
        contract) pass every link, so the permissions, read-only and quota limits given apply."""
        return self._chain

    @property
    def middleware(self) -> tuple:
        """The names of the middleware in the chain, outermost first."""
        return tuple(link.name for link in self._chain.layers() if not isinstance(link, BackendAdapter))

    @property
    def backend(self) -> Union[BackendBase, Link]:
        """Backend operations on backend names, with the limits given in force: the chain from its
        outermost link that enforces limits (``enforces_limits``: permissions, readonly, quota)
        inwards, so ``store.backend.delete(...)`` is checked as ``store.delete`` is.  Without such
        a link, the backend object itself (as the PyPI Store)."""
        for link in self._chain.layers():
            if link.enforces_limits:
                return link
        return self._chain.backend

    @property
    def stats(self) -> dict:
        """Calls, times [s], volumes [bytes] and throughputs [bytes/s] per operation, what
        reached the backend, and the cache's counters.  Every key is always present (0 where
        nothing was counted, e.g. without the ``stats`` middleware)."""
        result = empty_stats()
        for link in self._chain.layers():
            link.contribute_stats(result)
        result["stale_temps_removed"] = self._stale_temps_removed
        return result

    # --- lifecycle ---
    def create(self) -> None:
        """Make a new, empty store (an existing empty location is fine, a non-empty one raises
        BackendAlreadyExists); the store must be closed."""
        if self._opened:
            raise BackendMustNotBeOpen("close the store before create()")
        self._chain.create()
        if self._chain.precreate_dirs:
            self.create_levels()

    def destroy(self) -> None:
        """Remove the store and everything in it (missing: BackendDoesNotExist); the store must be closed."""
        if self._opened:
            raise BackendMustNotBeOpen("close the store before destroy()")
        self._chain.destroy()

    def open(self) -> None:
        """Open the existing store (missing: BackendDoesNotExist); also ``with store:``."""
        if self._opened:
            raise BackendMustNotBeOpen("the store is already open")
        self._chain.open()
        self._opened = True

    def close(self) -> None:
        """Close the store and release its connections; not open: BackendMustBeOpen."""
        if not self._opened:
            raise BackendMustBeOpen("the store is not open")
        self._opened = False
        self._chain.close()

    def flush(self) -> None:
        """Make everything stored so far durable (see the backend's durability setting)."""
        self._check_open()
        self._chain.flush()

    def __enter__(self) -> "Store":
        self.open()
        return self

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._opened:
            raise BackendMustBeOpen("the store is not open")

    # --- levels ---
    def set_levels(self, levels: dict, create: bool = False) -> None:
        """Replace the nesting levels: ``{"namespace/": [levels]}``; *create* pre-creates them.

        A namespace that was configured before keeps its nesting strategy."""
        self._namespaces = replace_levels(self._namespaces, levels)
        if create:
            self.create_levels()

    def create_levels(self) -> None:
        """Create each namespace's directories for its write level (the last one configured)."""
        was_open = self._opened
        if not was_open:
            self.open()
        try:
            for directory in level_directories(self._namespaces):
                self._chain.mkdir(directory)
        finally:
            if not was_open:
                self.close()

    # --- names ---
    def _namespace_of(self, name: str) -> Namespace:
        if type(name) is str and len(name) <= MAX_NAME_LENGTH:
            # the common names (a configured namespace, a key of lowercase letters and digits)
            # take a few string methods; anything else the full check.  A configured namespace
            # was checked when the config was.
            prefix, separator, key = name.partition("/")
            if prefix and separator:  # "/key" is no name, even where the root namespace "" is configured
                namespace = self._namespaces.get(prefix)
                if namespace is not None and key.isascii():
                    flat = key.encode()  # bytes methods: several times faster than their str twins
                    if flat.isalnum() and (flat.islower() or flat.isdigit()):
                        return namespace
        check_name(name)
        slash = name.find("/")
        if slash < 0:
            namespace = self._namespaces.get("")
            if name in self._namespaces:
                # the root item would be the very directory that holds that namespace
                raise ValueError(f"invalid name {name!r}: it is the name of the namespace {name + '/'!r}")
        else:
            namespace = self._namespaces.get(name[:slash])
        if namespace is None:
            raise ValueError(f"no nesting levels configured for the namespace of {name!r}")
        return namespace

    def find(self, name: str, *, deleted: bool = False) -> str:
        """Return the backend name of *name*: where it is, or where it would be written.

        With one level configured this needs no storage access (and no open store)."""
        namespace = self._namespace_of(name)
        if not namespace.single:
            self._check_open()
        found = self._find(namespace, name, deleted)
        return found[: -len(DEL_SUFFIX)] if deleted else found

    def _find(self, namespace: Namespace, name: str, deleted: bool) -> str:
        """The backend name of *name* (with the ``.del`` suffix if *deleted*)."""
        suffix = DEL_SUFFIX if deleted else ""
        if namespace.single:
            return namespace.nest_write(name) + suffix
        for level in namespace.levels:
            nested = namespace.nest(name, level) + suffix
            if self._chain.info(nested).exists:
                return nested
        return namespace.nest_write(name) + suffix

    # --- items ---
    # Soft deletion happens here, once: a soft-deleted item is the backend name plus ".del", and
    # soft deleting is a move to that name, so every link of the chain sees plain names and moves.
    def info(self, name: str, *, deleted: bool = False) -> ItemInfo:
        """What is known of item *name* (its soft-deleted twin with *deleted*): ``exists``,
        ``size``, ``mtime``; a missing item gives ``exists=False``, never an exception."""
        if not self._opened:
            raise BackendMustBeOpen("the store is not open")
        namespace = self._namespace_of(name)
        key = name[name.find("/") + 1 :]
        suffix = DEL_SUFFIX if deleted else ""
        try:
            if namespace.single:
                info = self._chain.info(namespace.nest_write(name) + suffix)
            else:
                for level in namespace.levels:
                    info = self._chain.info(namespace.nest(name, level) + suffix)
                    if info.exists:
                        break
        except BackendError as exc:  # errors name the item as the application did (_names.reword)
            reword(exc, ((namespace, name, deleted),))
            raise
        # most backends already report the key (the last path component); _replace costs ~0.6 us
        return info if info.name == key else info._replace(name=key)

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0, deleted: bool = False) -> bytes:
        """The value of *name*, or *size* bytes of it from *offset* (negative: from the end);
        past the end gives fewer bytes.  Missing: ObjectNotFound."""
        if not self._opened:  # inlined on the hot paths: a method call costs as much as this check
            raise BackendMustBeOpen("the store is not open")
        namespace = self._namespace_of(name)
        if size is not None and (type(size) is not int or size < 0):
            raise ValueError(f"invalid size {size!r}: an int >= 0 or None")
        if type(offset) is not int:
            raise ValueError(f"invalid offset {offset!r}: an int")
        try:
            if namespace.single and not deleted:
                return self._chain.load(namespace.nest_write(name), size=size, offset=offset)
            suffix = DEL_SUFFIX if deleted else ""
            for level in namespace.levels:
                try:
                    return self._chain.load(namespace.nest(name, level) + suffix, size=size, offset=offset)
                except ObjectNotFound:
                    if namespace.single:
                        raise
        except BackendError as exc:
            reword(exc, ((namespace, name, deleted),))
            raise
        raise ObjectNotFound(missing_at_every_level(namespace, name, deleted))

    def store(self, name: str, value: Union[bytes, bytearray, memoryview]) -> None:
        """Store *value* under *name*, replacing any value there; atomic: a reader sees the old
        or the new value, never part of one."""
        if not self._opened:
            raise BackendMustBeOpen("the store is not open")
        namespace = self._namespace_of(name)
        if type(value) is not bytes:
            if isinstance(value, memoryview):  # memoryview has no subclasses: as fast as "type() is"
                if not value.c_contiguous:
                    raise ValueError("value must be a C-contiguous memoryview")
                if value.ndim != 1 or value.format != "B":
                    value = value.cast("B")
            elif type(value) is not bytearray:
                raise ValueError(f"value must be bytes, bytearray or memoryview, not {type(value).__name__}")
        try:
            self._chain.store(
                namespace.nest_write(name) if namespace.single else self._find(namespace, name, False), value
            )
        except BackendError as exc:
            reword(exc, ((namespace, name, False),))
            raise

    def delete(self, name: str, *, deleted: bool = False) -> None:
        """Remove *name* for good (its soft-deleted twin with *deleted*); missing: ObjectNotFound.
        Soft deletion is ``move(name, delete=True)``."""
        if not self._opened:
            raise BackendMustBeOpen("the store is not open")
        namespace = self._namespace_of(name)
        try:
            if namespace.single and not deleted:
                self._chain.delete(namespace.nest_write(name))
            else:
                self._chain.delete(self._find(namespace, name, deleted))
        except BackendError as exc:
            reword(exc, ((namespace, name, deleted),))
            raise

    def move(
        self,
        name: str,
        new_name: Optional[str] = None,
        *,
        delete: bool = False,
        undelete: bool = False,
        change_level: bool = False,
        deleted: bool = False,
    ) -> None:
        """Exactly one of: rename *name* to *new_name*; soft-delete it (*delete*: it is kept as
        ``<name>.del`` and listed only with ``deleted=True``); *undelete* a soft-deleted item; or
        *change_level*: move it to its namespace's write level.  Missing: ObjectNotFound."""
        if not self._opened:
            raise BackendMustBeOpen("the store is not open")
        namespace = self._namespace_of(name)
        if delete is True and new_name is None and not (undelete or change_level or deleted):
            # a soft deletion, the common case, without the checks of the combinations below
            try:
                current = namespace.nest_write(name) if namespace.single else self._find(namespace, name, False)
                self._chain.move(current, current + DEL_SUFFIX)
            except BackendError as exc:
                reword(exc, ((namespace, name, False), (namespace, name, True)))
                raise
            return
        if (new_name is not None) + bool(delete) + bool(undelete) + bool(change_level) != 1:
            flags = (
                ("new_name", new_name is not None),
                ("delete", delete),
                ("undelete", undelete),
                ("change_level", change_level),
            )
            chosen = [flag for flag, on in flags if on]
            raise ValueError(
                f"move needs exactly one of new_name, delete, undelete, change_level; got {chosen or 'none'}"
            )
        if delete and deleted:
            raise ValueError("move(delete=True) soft-deletes a live item; deleted=True makes no sense with it")
        if undelete and deleted:
            raise ValueError("move(undelete=True) always acts on a deleted item; do not pass deleted=True")
        new_namespace = None if new_name is None else self._namespace_of(new_name)
        try:
            self._move(namespace, name, new_namespace, new_name, delete, undelete, deleted)
        except BackendError as exc:
            if new_namespace is None or new_name is None:
                reword(exc, ((namespace, name, False), (namespace, name, True)))
            else:
                reword(exc, ((namespace, name, deleted), (new_namespace, new_name, deleted)))
            raise

    def _move(
        self,
        namespace: Namespace,
        name: str,
        new_namespace: Optional[Namespace],
        new_name: Optional[str],
        delete: bool,
        undelete: bool,
        deleted: bool,
    ) -> None:
        """move() after its arguments were checked: one of its four kinds."""
        if delete:
            current = self._find(namespace, name, False)
            self._chain.move(current, current + DEL_SUFFIX)
        elif undelete:
            current = self._find(namespace, name, True)
            self._chain.move(current, current[: -len(DEL_SUFFIX)])
        elif new_name is None or new_namespace is None:  # change_level (new_namespace comes with new_name)
            current = self._find(namespace, name, deleted)
            target = namespace.nest_write(name) + (DEL_SUFFIX if deleted else "")
            if current != target:
                self._chain.move(current, target)
        else:
            source = self._find(namespace, name, deleted)
            self._chain.move(source, self._find(new_namespace, new_name, deleted))

    def list(self, name: str, deleted: bool = False) -> Iterator[ItemInfo]:
        """Yield the items of namespace *name*, sorted by key: the live ones, or with *deleted*
        the soft-deleted ones (named without ``.del``).  Lazy: nothing is read before the first
        item is asked for."""
        self._check_open()
        ns_name = check_namespace(name)
        namespace = self._namespaces.get(ns_name)
        if namespace is None:
            raise ValueError(f"no nesting levels configured for namespace {name!r}")
        # a flat namespace is one list call anyway, and a tree listing of the root would be the
        # whole store
        if namespace.deepest and self._chain.capabilities.list_tree:
            items = walk_tree(self._chain, ns_name, namespace, deleted)
        else:
            items = walk(self._chain, ns_name, namespace, 0, deleted)
        if namespace.single and namespace.strategy.order_preserving and not deleted:
            return items
        # stripping ".del" can change the order ("a-b.del" < "a.del", but "a" < "a-b")
        return sorted_lazily(items)

    def hash(self, name: str, algorithm: str = "sha256", *, deleted: bool = False) -> str:
        """The hex digest of *name*'s value (any hashlib algorithm; ``blake3`` where installed),
        computed where the data is if the backend can.  Unknown algorithm: ValueError."""
        self._check_open()
        namespace = self._namespace_of(name)
        new_hash(algorithm)  # an unknown algorithm fails before any storage access
        try:
            return self._chain.hash(self._find(namespace, name, deleted), algorithm)
        except BackendError as exc:
            reword(exc, ((namespace, name, deleted),))
            raise

    def gather(self, sources: Iterable[tuple[str, int, int]], *, namespace: Optional[str] = None, deleted: bool = False) -> bytes:
        """Return the concatenated ranges ``(name, offset, size)`` of *sources*; names are keys in
        *namespace* if it is given.  A short range raises ReadRangeError."""
        self._check_open()
        ns_name = None if namespace is None else check_namespace(namespace)
        checked = [
            (self._namespace_of(name), name, offset, size) for name, offset, size in check_sources(sources, ns_name)
        ]
        if not checked:
            return b""
        try:
            resolved = [(self._find(ns, name, deleted), offset, size) for ns, name, offset, size in checked]
            data = self._chain.gather(resolved)
            wanted = sum(size for _, _, size in resolved)
            if len(data) != wanted:
                raise read_range_error(", ".join(dict.fromkeys(name for name, _, _ in resolved)), 0, wanted, len(data))
        except BackendError as exc:
            reword(exc, [(ns, name, deleted) for ns, name, _, _ in checked])
            raise
        return data

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: Optional[str] = None,
        algorithm: Optional[str] = None,
        namespace: Optional[str] = None,
        deleted: bool = False,
    ) -> str:
        """Store the concatenated ranges of *sources* as one item and return its key: *target*,
        or the *algorithm* hex digest of the data.  The item goes into *namespace*."""
        self._check_open()
        if target is None and algorithm is None:
            raise ValueError("defrag needs a target or an algorithm")
        if algorithm is not None:
            new_hash(algorithm)
        ns_name = None if namespace is None else check_namespace(namespace)
        if target is not None and ns_name is not None and "/" in target:
            raise ValueError(f"target {target!r} must be a key without '/' when a namespace is given")
        data = self.gather(sources, namespace=namespace, deleted=deleted)
        key = target if target is not None else new_hash(algorithm or "", data).hexdigest()
        self.store(f"{ns_name}/{key}" if ns_name else key, data)
        return key

    def quota(self) -> dict:
        """``{"limit": bytes, "usage": bytes}``, -1 where not tracked."""
        self._check_open()
        return self._chain.quota()

    # --- maintenance ---
    def remove_stale_temps(self, older_than: float = 3600.0) -> int:
        """Remove the ``.tmp`` items, in the whole store, whose mtime is at least *older_than*
        seconds in the past: writes that writers which died left behind.  Return how many were
        removed (also counted in ``stats["stale_temps_removed"]``).

        A maintenance call, not run at open(): it lists the whole store.  Each removal is a
        ``delete`` through the chain, so the permissions apply: what may be removed is, then
        ``PermissionDenied`` reports the refused ones (its ``removed`` attribute is the count).
        A backend without ``list_temp``: ``BackendError``.  Why the age is safe, and the clock
        caveat: docs/architecture.md ("Stale temp items")."""
        check_age(older_than)
        self._check_open()
        return remove_stale_temps(self._chain, older_than, on_removed=self._count_stale_temp)

    def _count_stale_temp(self) -> None:
        with self._maintenance_lock:
            self._stale_temps_removed += 1
