"""The ``stats`` middleware: calls, time and volume per operation, as ``Store.stats`` shows them.

Counted per call that reaches this link: a listing of a nested namespace counts one ``list``
call per directory (as in the PyPI borgstore), or one per ``list_tree`` stream on a backend that
lists a whole namespace at once (a ``list_temp`` stream counts as one ``list`` call too); a soft
deletion or undeletion is the ``move`` it is, and a ``store_new`` counts as the ``store`` it is.  Times
include everything inside this link (so also an ``emulate`` link further in).  It also gives
the ``backend_*`` figures as what passed here; a link further in that answers some calls
itself (the cache) overwrites them with what really reached the backend.

Each thread counts into counters of its own, so counting takes no lock; a snapshot adds them up.
"""

import threading
from time import perf_counter_ns
from typing import Any, Callable, Iterator, Optional

from .._plugins import MiddlewareSpec, hookimpl
from .._stats import BACKEND_CALL_OPS, BACKEND_VOLUME_OPS
from .._stats import COUNTED_OPS as COUNTED
from .._stats import VOLUME_OPS as WITH_VOLUME
from ..backends._base import ItemInfo, Ranges, Value
from ._base import Link, Middleware
from ._optional import optional_operation


def _new_counters() -> dict[str, list[int]]:
    """One thread's counters, ``op -> [calls, nanoseconds, volume]``; only that thread writes them."""
    return {op: [0, 0, 0] for op in COUNTED}


class StatsMiddleware(Middleware):
    name = "stats"

    def __init__(self, inner: Link):
        super().__init__(inner)
        self._lock = threading.Lock()  # guards the list of counters, not the counting
        self._reset()

    def _reset(self) -> None:
        with self._lock:
            self._local = threading.local()
            self._all_counters: list[dict[str, list[int]]] = []

    def _thread_counters(self) -> dict[str, list[int]]:
        counters = _new_counters()
        with self._lock:
            self._all_counters.append(counters)
        self._local.counters = counters
        return counters

    def _add(self, op: str, started: int, volume: int = 0) -> None:
        # on every call: one lookup and three additions, positional arguments only
        elapsed = perf_counter_ns() - started
        try:
            counter = self._local.counters[op]
        except AttributeError:
            counter = self._thread_counters()[op]
        counter[0] += 1
        counter[1] += elapsed
        counter[2] += volume

    def info(self, name: str) -> ItemInfo:
        t = perf_counter_ns()
        try:
            return self.inner.info(name)
        finally:
            self._add("info", t)

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        t = perf_counter_ns()
        data = b""
        try:
            data = self.inner.load(name, size=size, offset=offset)
            return data
        finally:
            self._add("load", t, len(data))

    def store(self, name: str, value: Value) -> None:
        t = perf_counter_ns()
        ok = False
        try:
            self.inner.store(name, value)
            ok = True
        finally:
            self._add("store", t, len(value) if ok else 0)

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        t = perf_counter_ns()
        ok = False
        try:
            self.inner.store_new(name, value)
            ok = True
        finally:
            self._add("store", t, len(value) if ok else 0)

    def delete(self, name: str) -> None:
        t = perf_counter_ns()
        try:
            return self.inner.delete(name)
        finally:
            self._add("delete", t)

    def move(self, curr_name: str, new_name: str) -> None:
        t = perf_counter_ns()
        try:
            return self.inner.move(curr_name, new_name)
        finally:
            self._add("move", t)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        t = perf_counter_ns()
        try:
            return self.inner.hash(name, algorithm)
        finally:
            self._add("hash", t)

    def gather(self, sources: Ranges) -> bytes:
        t = perf_counter_ns()
        data = b""
        try:
            data = self.inner.gather(sources)
            return data
        finally:
            self._add("gather", t, len(data))

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._listing(self.inner.list, name)

    @optional_operation
    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        return self._listing(self.inner.list_tree, name)

    @optional_operation
    def list_temp(self, name: str) -> Iterator[ItemInfo]:
        return self._listing(self.inner.list_temp, name)

    def _listing(self, list_method: Callable[[str], Iterator[ItemInfo]], name: str) -> Iterator[ItemInfo]:
        # the time of a listing is the time to start it plus the time to pull each item
        t = perf_counter_ns()
        try:
            items = iter(list_method(name))
        finally:
            self._add("list", t)
        return self._timed(items)

    def _timed(self, items: Iterator[ItemInfo]) -> Iterator[ItemInfo]:
        spent = 0
        try:
            while True:
                t = perf_counter_ns()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    spent += perf_counter_ns() - t
                yield item
        finally:  # also when the caller stops early: the time pulling items, not another call
            try:
                counter = self._local.counters["list"]
            except AttributeError:
                counter = self._thread_counters()["list"]
            counter[1] += spent

    def contribute_stats(self, stats: dict[str, Any]) -> None:
        counted = self.snapshot()
        stats.update(counted)
        for op in BACKEND_CALL_OPS:
            stats[f"backend_{op}_calls"] = counted[f"{op}_calls"]
        for op in BACKEND_VOLUME_OPS:
            stats[f"backend_{op}_volume"] = counted[f"{op}_volume"]

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as ``Store.stats`` shows them: times in seconds, volumes in bytes,
        throughputs in bytes per second."""
        with self._lock:
            all_counters = list(self._all_counters)
        calls = {op: sum(c[op][0] for c in all_counters) for op in COUNTED}
        ns = {op: sum(c[op][1] for c in all_counters) for op in COUNTED}
        volume = {op: sum(c[op][2] for c in all_counters) for op in WITH_VOLUME}
        result: dict[str, Any] = {}
        for op in COUNTED:
            result[f"{op}_calls"] = calls[op]
            result[f"{op}_time"] = ns[op] / 1e9
        for op in WITH_VOLUME:
            result[f"{op}_volume"] = volume[op]
            result[f"{op}_throughput"] = int(volume[op] / (ns[op] / 1e9)) if ns[op] else 0
        return result

    def reset(self) -> None:
        """Start counting from zero (calls under way in other threads may be lost)."""
        self._reset()


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    return [MiddlewareSpec("stats", StatsMiddleware, "calls, time and volume per operation")]
