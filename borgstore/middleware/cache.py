"""The ``cache`` middleware: a second backend that keeps copies of a store's items.

The Store adds it (just outside ``emulate``, else innermost) when a namespace's config asks for a cache (``cache`` = ``mirror``
or ``writethrough``, with ``max_age`` and ``size``) and a ``cache_url`` or ``cache_backend`` is
given.  The cache holds items under the same nested names as the store (the primary).

Options:

* ``cache``: the cache: an unopened backend, or a chain (a :class:`~._base.Link`).
* ``policies``: ``{namespace name: CachePolicy(mode, max_age, size)}`` for the cached
  namespaces (``"data"``; ``""`` is the root namespace, whose items are cached when they are
  stored at level 0, i.e. have no ``/`` in their name).

Behaviour (the PyPI borgstore's):

* The cache is created, destroyed, opened and closed with the store.  If it cannot be opened, a
  warning is logged and the store works without it (``snapshot()["cache_disabled"]``).
* store/store_new/delete/move go to the primary; then the cache follows (a stored value is put
  into the cache; a store_new that found an item, ObjectAlreadyExists, caches nothing).  A
  failure on the cache side is logged and counted in ``cache_errors``, never raised: the
  primary decides.
* load in ``mirror`` mode reads the whole item from the primary, puts it into the cache and
  returns the requested range; the cache is written, never read.
* load in ``writethrough`` mode reads the range from the cache; on a miss it reads the whole
  item from the primary, puts it into the cache and returns the range.
* ``size`` (bytes) bounds the cache per namespace: least recently used items are evicted first,
  and an item larger than ``size`` is not cached.  ``max_age`` (seconds) evicts items not used
  for longer.  0 means no limit.  The cache's contents are found by listing it at open.
* gather reads each range through the cached load; list, info and hash go to the primary.
* A soft deletion is a move to ``<name>.del``: the cached copy moves with it.
* Its counters reach ``Store.stats`` with the ``backend_*`` figures: what reached the primary.

Items changed in the primary by someone not using this cache are not noticed: the cache suits
items that never change once written (like borg's content-addressed objects), or ``max_age``.
"""

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

from .._plugins import MiddlewareSpec, hookimpl
from .._stats import BACKEND_CALL_OPS, BACKEND_VOLUME_OPS, CACHE_COUNTERS
from ..backends._base import BackendBase, Ranges, Value, gather_by_loads
from ..backends.errors import ObjectNotFound
from ..constants import HID_SUFFIX, TMP_SUFFIX
from ._base import BackendAdapter, Link, Middleware
from ._optional import optional_operation

if TYPE_CHECKING:
    from .._config import CachePolicy

logger = logging.getLogger(__name__)

MODES = ("mirror", "writethrough")
NAME_LOCKS = 64  # how many writers/readers of different items may work on the primary at once

# what reached the primary, counted here because a hit never gets there
PRIMARY_COUNTERS = tuple(f"backend_{op}_calls" for op in BACKEND_CALL_OPS) + tuple(
    f"backend_{op}_volume" for op in BACKEND_VOLUME_OPS
)


def _size_of(value: Value) -> int:
    return value.nbytes if isinstance(value, memoryview) else len(value)


def _slice(data: bytes, offset: int, size: Optional[int]) -> bytes:
    """The range a backend's load(size=size, offset=offset) of *data* returns."""
    if offset < 0:
        offset = max(len(data) + offset, 0)
    if offset == 0 and size is None:
        return data
    return data[offset : None if size is None else offset + size]


def _check_policy(namespace: str, policy: "CachePolicy") -> "CachePolicy":
    mode = getattr(policy, "mode", None)
    max_age = getattr(policy, "max_age", None)
    size = getattr(policy, "size", None)
    if mode not in MODES:
        raise ValueError(f"cache: invalid mode {mode!r} for namespace {namespace!r}: one of {', '.join(MODES)}")
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0:
        raise ValueError(f"cache: invalid max_age {max_age!r} for namespace {namespace!r}: seconds >= 0")
    if type(size) is not int or size < 0:
        raise ValueError(f"cache: invalid size {size!r} for namespace {namespace!r}: bytes >= 0")
    return policy


class _Index:
    """What one namespace has in the cache: name -> [size, last use], least recently used first."""

    def __init__(self, policy: "CachePolicy"):
        self.policy = policy
        self.entries: OrderedDict[str, list[Any]] = OrderedDict()  # name -> [size, last use]
        self.total = 0

    def add(self, name: str, size: int, used: float) -> None:
        self.discard(name)
        self.entries[name] = [size, used]
        self.total += size

    def discard(self, name: str) -> bool:
        entry = self.entries.pop(name, None)
        if entry is None:
            return False
        self.total -= entry[0]
        return True

    def touch(self, name: str, now: float) -> None:
        self.entries[name][1] = now
        self.entries.move_to_end(name)

    def expired(self, name: str, now: float) -> bool:
        max_age = self.policy.max_age
        return bool(max_age) and now - self.entries[name][1] > max_age

    def victims(self, now: float, incoming: int = 0) -> list[str]:
        """Remove and return the names to evict: expired ones, then the least recently used
        until *incoming* more bytes fit."""
        names = []
        max_age, limit = self.policy.max_age, self.policy.size
        while self.entries:
            name, (size, used) = next(iter(self.entries.items()))
            if (max_age and now - used > max_age) or (limit and self.total + incoming > limit):
                self.discard(name)
                names.append(name)
            else:
                break
        return names


class CacheMiddleware(Middleware):
    name = "cache"

    def __init__(self, inner: Link, *, cache: Union[BackendBase, Link], policies: dict[str, "CachePolicy"]):
        super().__init__(inner)
        if cache is None:
            raise ValueError("cache: give the cache backend (option 'cache')")
        if not isinstance(policies, dict):
            raise ValueError(f"cache: policies must be a dict {{namespace: CachePolicy}}, not {policies!r}")
        self.cache: Link = cache if isinstance(cache, Link) else BackendAdapter(cache, "cache")
        self._indexes = {namespace: _Index(_check_policy(namespace, policy)) for namespace, policy in policies.items()}
        self._lock = threading.RLock()  # the indexes, the counters and every call on the cache
        self._name_locks = [threading.Lock() for _ in range(NAME_LOCKS)]
        self._counters = dict.fromkeys(CACHE_COUNTERS + PRIMARY_COUNTERS, 0)
        self.disabled = False
        self._cache_open = False

    def __repr__(self) -> str:
        return f"<CacheMiddleware cache={self.cache!r} namespaces={sorted(self._indexes)}>"

    # --- helpers ---
    def _index_of(self, name: str) -> Optional[_Index]:
        """The index of the namespace that caches *name*, or None if it is not cached."""
        # internal items (.hid) and items being written (.tmp, e.g. the quota's lock) change
        # under other sessions: never served from a copy
        if not self._cache_open or name.endswith((HID_SUFFIX, TMP_SUFFIX)):
            return None
        slash = name.find("/")
        if slash < 0:
            return self._indexes.get("")
        return self._indexes.get(name[:slash]) if slash else None

    def _name_lock(self, name: str) -> threading.Lock:
        # the primary change and the cache update of one name happen together, so a slower
        # concurrent call can not leave an older value in the cache
        return self._name_locks[hash(name) % NAME_LOCKS]

    def _count(self, counter: str, amount: int = 1) -> None:
        self._counters[counter] += amount

    def _failed(self, action: str, name: str, exc: Exception) -> None:
        self._count("cache_errors")
        logger.warning("cache: %s %r failed: %s: %s", action, name, type(exc).__name__, exc)

    def _evict(self, names: list[str]) -> None:
        for name in names:
            self._count("cache_delete_calls")
            try:
                self.cache.delete(name)
            except ObjectNotFound:
                pass
            except Exception as exc:
                self._failed("evicting", name, exc)

    def _forget(self, index: _Index, name: str) -> None:
        """Drop *name* from the cache (if it is there)."""
        with self._lock:
            if index.discard(name):
                self._evict([name])

    def _fill(self, index: _Index, name: str, value: Value) -> None:
        """Put *value* into the cache as *name*, evicting what the limits ask for."""
        size = _size_of(value)
        with self._lock:
            now = time.time()
            index.discard(name)
            if index.policy.size and size > index.policy.size:
                self._evict([name])  # an older, smaller copy must not stay behind
                return
            self._evict(index.victims(now, size))
            self._count("cache_store_calls")
            try:
                self.cache.store(name, value)
            except Exception as exc:
                self._failed("storing", name, exc)
                self._evict([name])
                return
            self._count("cache_store_volume", size)
            index.add(name, size, now)

    def _read(self, index: _Index, name: str, size: Optional[int], offset: int) -> Optional[bytes]:
        """The range from the cache, or None on a miss."""
        with self._lock:
            now = time.time()
            if name not in index.entries:
                return None
            if index.expired(name, now):
                self._forget(index, name)
                return None
            self._count("cache_load_calls")
            try:
                data = self.cache.load(name, size=size, offset=offset)
            except ObjectNotFound:
                index.discard(name)
                return None
            except Exception as exc:
                self._failed("loading", name, exc)
                self._forget(index, name)
                return None
            self._count("cache_load_volume", len(data))
            index.touch(name, now)
            return data

    # --- lifecycle ---
    def create(self) -> None:
        self.cache.create()
        self.inner.create()

    def destroy(self) -> None:
        self.inner.destroy()
        try:
            self.cache.destroy()
        except Exception as exc:
            self._failed("destroying", "the cache", exc)

    def open(self) -> None:
        self.inner.open()
        self.disabled = False
        try:
            self.cache.open()
        except Exception as exc:
            logger.warning("cache: cannot open %r, working without it: %s: %s", self.cache, type(exc).__name__, exc)
            self.disabled = True
            return
        try:
            self._load_indexes()
        except Exception as exc:
            logger.warning("cache: cannot list %r, working without it: %s: %s", self.cache, type(exc).__name__, exc)
            self.disabled = True
            self._close_cache()
            return
        self._cache_open = True

    def _load_indexes(self) -> None:
        now = time.time()
        with self._lock:
            for namespace, index in self._indexes.items():
                index.entries.clear()
                index.total = 0
                found = sorted(self._scan(namespace, recursive=bool(namespace)), key=lambda entry: entry[2])
                for name, size, used in found:
                    index.add(name, size, used or now)
                self._evict(index.victims(now))

    def _scan(self, directory: str, recursive: bool) -> Iterator[tuple[str, int, float]]:
        try:
            items = list(self.cache.list(directory))
        except ObjectNotFound:
            return
        for info in items:
            name = f"{directory}/{info.name}" if directory else info.name
            if info.directory:
                if recursive:
                    yield from self._scan(name, recursive)
            elif not name.endswith(HID_SUFFIX):
                yield name, info.size, max(info.atime or 0, info.mtime or 0)

    def _close_cache(self) -> None:
        try:
            self.cache.close()
        except Exception as exc:
            self._failed("closing", "the cache", exc)

    def close(self) -> None:
        try:
            if self._cache_open:
                self._cache_open = False
                self._close_cache()
        finally:
            self.inner.close()

    def flush(self) -> None:
        self.inner.flush()
        if self._cache_open:
            try:
                self.cache.flush()
            except Exception as exc:
                self._failed("flushing", "the cache", exc)

    # --- the primary ---
    def _primary_load(self, name: str, **kwargs: Any) -> bytes:
        data = self.inner.load(name, **kwargs)
        with self._lock:
            self._count("backend_load_calls")
            self._count("backend_load_volume", len(data))
        return data

    # --- reading ---
    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        index = self._index_of(name)
        if index is None:
            return self._primary_load(name, size=size, offset=offset)
        with self._name_lock(name):
            if index.policy.mode == "writethrough":
                data = self._read(index, name, size, offset)
                if data is not None:
                    with self._lock:
                        self._count("cache_hits")
                    return data
                with self._lock:
                    self._count("cache_misses")
            data = self._primary_load(name)
            self._fill(index, name, data)
        return _slice(data, offset, size)

    def gather(self, sources: Ranges) -> bytes:
        sources = list(sources)
        if any(self._index_of(name) is not None for name, _, _ in sources):
            return gather_by_loads(self.load, sources)
        data = self.inner.gather(sources)
        with self._lock:
            self._count("backend_gather_calls")
            self._count("backend_gather_volume", len(data))
        return data

    # --- changes ---
    def store(self, name: str, value: Value) -> None:
        index = self._index_of(name)
        if index is None:
            self._primary_store(name, value)
            return
        with self._name_lock(name):
            self._primary_store(name, value)
            self._fill(index, name, value)

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        index = self._index_of(name)
        if index is None:
            self._primary_store(name, value, self.inner.store_new)
            return
        with self._name_lock(name):
            # an ObjectAlreadyExists leaves before the fill: the value refused is not cached
            self._primary_store(name, value, self.inner.store_new)
            self._fill(index, name, value)

    def _primary_store(self, name: str, value: Value, store: Optional[Callable[[str, Value], None]] = None) -> None:
        (store or self.inner.store)(name, value)
        with self._lock:
            self._count("backend_store_calls")
            self._count("backend_store_volume", _size_of(value))

    def delete(self, name: str) -> None:
        index = self._index_of(name)
        if index is None:
            self._primary_delete(name)
            return
        with self._name_lock(name):
            self._primary_delete(name)
            self._forget(index, name)

    def _primary_delete(self, name: str) -> None:
        self.inner.delete(name)
        with self._lock:
            self._count("backend_delete_calls")

    def move(self, curr_name: str, new_name: str) -> None:
        # a soft deletion (a move to name.del) takes the cached copy along, as any move does
        source = self._index_of(curr_name)
        target = self._index_of(new_name)
        if source is None and target is None:
            return self.inner.move(curr_name, new_name)
        locks = sorted({id(lock): lock for lock in map(self._name_lock, (curr_name, new_name))}.items())
        for _, lock in locks:
            lock.acquire()
        try:
            self.inner.move(curr_name, new_name)
            if curr_name != new_name:
                self._follow_move(source, curr_name, target, new_name)
        finally:
            for _, lock in reversed(locks):
                lock.release()

    def _follow_move(self, source: Optional[_Index], curr_name: str, target: Optional[_Index], new_name: str) -> None:
        with self._lock:
            if target is not None:
                self._forget(target, new_name)
            if source is None:
                return
            entry = source.entries.get(curr_name)
            if entry is None:
                return
            if target is not source:
                # another namespace has other limits: let the item come back through a load
                self._forget(source, curr_name)
                return
            source.discard(curr_name)
            try:
                self.cache.move(curr_name, new_name)
            except Exception as exc:
                self._failed("moving", curr_name, exc)
                self._evict([curr_name, new_name])
                return
            source.add(new_name, entry[0], entry[1])

    # --- introspection ---
    def invalidate(self, name: str = "") -> None:
        """Drop cached items: ``""`` all of them, a namespace name all of its items, anything else
        the item with that (nested) name."""
        with self._lock:
            for namespace, index in self._indexes.items():
                if name in ("", namespace):
                    for cached in list(index.entries):
                        self._forget(index, cached)
                elif name in index.entries:
                    self._forget(index, name)

    def snapshot(self) -> dict[str, Any]:
        """The cache's counters and what reached the primary, named as in the PyPI borgstore's
        Store.stats."""
        with self._lock:
            result: dict[str, Any] = dict(self._counters)
        lookups = result["cache_hits"] + result["cache_misses"]
        result["cache_hit_ratio"] = result["cache_hits"] / lookups if lookups else 0.0
        result["cache_disabled"] = self.disabled
        return result

    def contribute_stats(self, stats: dict[str, Any]) -> None:
        # further in than stats: the backend_* figures here are what really reached the primary
        stats.update(self.snapshot())

    def usage(self) -> dict[str, tuple[int, int]]:
        """``{namespace: (items, bytes)}`` as the cache holds them now."""
        with self._lock:
            return {namespace: (len(index.entries), index.total) for namespace, index in self._indexes.items()}


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    return [
        MiddlewareSpec(
            "cache",
            CacheMiddleware,
            "a second backend keeping copies of items (mirror or writethrough, LRU size and max_age)",
        )
    ]
