"""The ``stats`` middleware: calls, time and volume per operation, as ``Store.stats`` shows them.

Counted per call that reaches this link, so a listing of a nested namespace counts one ``list``
call per directory, as in the PyPI borgstore.  ``soft_delete``/``undelete`` count as ``move``.  Times include everything inside this link (so also an
``emulate`` link further in).
"""

import threading
from time import perf_counter_ns

from .._plugins import MiddlewareSpec, hookimpl
from ._base import Middleware

COUNTED = ("info", "load", "store", "delete", "move", "list", "hash", "gather")
WITH_VOLUME = ("load", "store", "gather")


class StatsMiddleware(Middleware):
    name = "stats"

    def __init__(self, inner):
        super().__init__(inner)
        self._lock = threading.Lock()
        self._calls = dict.fromkeys(COUNTED, 0)
        self._ns = dict.fromkeys(COUNTED, 0)
        self._volume = dict.fromkeys(WITH_VOLUME, 0)

    def _add(self, op, started, calls=1, volume=0):
        elapsed = perf_counter_ns() - started
        with self._lock:
            self._calls[op] += calls
            self._ns[op] += elapsed
            if volume:
                self._volume[op] += volume

    def info(self, name, *, deleted=False):
        t = perf_counter_ns()
        try:
            return self.inner.info(name, deleted=deleted)
        finally:
            self._add("info", t)

    def load(self, name, *, size=None, offset=0, deleted=False):
        t = perf_counter_ns()
        data = b""
        try:
            data = self.inner.load(name, size=size, offset=offset, deleted=deleted)
            return data
        finally:
            self._add("load", t, volume=len(data))

    def store(self, name, value):
        t = perf_counter_ns()
        ok = False
        try:
            self.inner.store(name, value)
            ok = True
        finally:
            self._add("store", t, volume=len(value) if ok else 0)

    def delete(self, name, *, deleted=False):
        t = perf_counter_ns()
        try:
            return self.inner.delete(name, deleted=deleted)
        finally:
            self._add("delete", t)

    def move(self, curr_name, new_name, *, deleted=False):
        t = perf_counter_ns()
        try:
            return self.inner.move(curr_name, new_name, deleted=deleted)
        finally:
            self._add("move", t)

    def soft_delete(self, name):
        t = perf_counter_ns()
        try:
            return self.inner.soft_delete(name)
        finally:
            self._add("move", t)

    def undelete(self, name):
        t = perf_counter_ns()
        try:
            return self.inner.undelete(name)
        finally:
            self._add("move", t)

    def hash(self, name, algorithm="sha256", *, deleted=False):
        t = perf_counter_ns()
        try:
            return self.inner.hash(name, algorithm, deleted=deleted)
        finally:
            self._add("hash", t)

    def gather(self, sources, *, deleted=False):
        t = perf_counter_ns()
        data = b""
        try:
            data = self.inner.gather(sources, deleted=deleted)
            return data
        finally:
            self._add("gather", t, volume=len(data))

    def list(self, name, *, deleted=False):
        # the time of a listing is the time to start it plus the time to pull each item
        t = perf_counter_ns()
        try:
            items = iter(self.inner.list(name, deleted=deleted))
        finally:
            self._add("list", t)
        return self._timed(items)

    def _timed(self, items):
        while True:
            t = perf_counter_ns()
            try:
                item = next(items)
            except StopIteration:
                self._add("list", t, calls=0)
                return
            except BaseException:
                self._add("list", t, calls=0)
                raise
            self._add("list", t, calls=0)
            yield item

    def snapshot(self) -> dict:
        """Return the counters as ``Store.stats`` shows them: times in seconds, volumes in bytes,
        throughputs in bytes per second."""
        with self._lock:
            calls, ns, volume = dict(self._calls), dict(self._ns), dict(self._volume)
        result = {}
        for op in COUNTED:
            result[f"{op}_calls"] = calls[op]
            result[f"{op}_time"] = ns[op] / 1e9
        for op in WITH_VOLUME:
            result[f"{op}_volume"] = volume[op]
            result[f"{op}_throughput"] = int(volume[op] / (ns[op] / 1e9)) if ns[op] else 0
        return result

    def reset(self):
        with self._lock:
            for table in (self._calls, self._ns, self._volume):
                for key in table:
                    table[key] = 0


@hookimpl
def borgstore_middleware():
    return [MiddlewareSpec("stats", StatsMiddleware, "calls, time and volume per operation")]
