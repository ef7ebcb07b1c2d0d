"""The ``emulate`` middleware: makes a fast backend behave like a slow, distant one.

Each call that passes this link takes at least ``latency + volume / bandwidth``: the time the
backend needed is taken off, the rest is slept.  A listing pays the latency once, when it starts.

Options (explicit ones win over the environment):

* ``latency``: seconds per call; default ``BORGSTORE_LATENCY`` (microseconds) or 0.
* ``bandwidth``: bits per second; default ``BORGSTORE_BANDWIDTH`` or 0 (unlimited).
"""

import os
import time
from typing import Any, Callable, Iterator, Optional, TypeVar

from .._plugins import MiddlewareSpec, hookimpl
from ..backends._base import ItemInfo, Ranges, Value
from ._base import Link, Middleware
from ._optional import optional_operation


def _env_number(variable: str) -> float:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{variable}={raw!r} must not be negative")
    return value


def latency_from_environment() -> float:
    """BORGSTORE_LATENCY in seconds (the variable is in microseconds)."""
    return _env_number("BORGSTORE_LATENCY") / 1e6


def bandwidth_from_environment() -> float:
    """BORGSTORE_BANDWIDTH in bits per second."""
    return _env_number("BORGSTORE_BANDWIDTH")


_R = TypeVar("_R")


def emulation_requested() -> bool:
    return bool(latency_from_environment() or bandwidth_from_environment())


class EmulateMiddleware(Middleware):
    name = "emulate"

    def __init__(self, inner: Link, *, latency: Optional[float] = None, bandwidth: Optional[float] = None):
        super().__init__(inner)
        self.latency = latency_from_environment() if latency is None else latency
        self.bandwidth = bandwidth_from_environment() if bandwidth is None else bandwidth
        for option, value in (("latency", self.latency), ("bandwidth", self.bandwidth)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"emulate: {option} must be a number >= 0, not {value!r}")

    def _pace(self, started: float, volume: int = 0) -> None:
        wanted = self.latency + (volume * 8 / self.bandwidth if self.bandwidth else 0.0)
        remaining = wanted - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)

    def _call(self, op: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
        t = time.perf_counter()
        try:
            return op(*args, **kwargs)
        finally:
            self._pace(t)

    def create(self) -> None:
        return self._call(self.inner.create)

    def destroy(self) -> None:
        return self._call(self.inner.destroy)

    def open(self) -> None:
        return self._call(self.inner.open)

    def close(self) -> None:
        return self._call(self.inner.close)

    def mkdir(self, name: str) -> None:
        return self._call(self.inner.mkdir, name)

    def rmdir(self, name: str) -> None:
        return self._call(self.inner.rmdir, name)

    def info(self, name: str) -> ItemInfo:
        return self._call(self.inner.info, name)

    def delete(self, name: str) -> None:
        return self._call(self.inner.delete, name)

    def move(self, curr_name: str, new_name: str) -> None:
        return self._call(self.inner.move, curr_name, new_name)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return self._call(self.inner.hash, name, algorithm)

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._call(self.inner.list, name)

    @optional_operation
    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        return self._call(self.inner.list_tree, name)

    @optional_operation
    def list_temp(self, name: str) -> Iterator[ItemInfo]:
        return self._call(self.inner.list_temp, name)

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        t = time.perf_counter()
        data = b""
        try:
            data = self.inner.load(name, size=size, offset=offset)
            return data
        finally:
            self._pace(t, len(data))

    def store(self, name: str, value: Value) -> None:
        t = time.perf_counter()
        try:
            return self.inner.store(name, value)
        finally:
            self._pace(t, len(value))

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        t = time.perf_counter()
        try:
            return self.inner.store_new(name, value)
        finally:
            self._pace(t, len(value))

    def gather(self, sources: Ranges) -> bytes:
        t = time.perf_counter()
        data = b""
        try:
            data = self.inner.gather(sources)
            return data
        finally:
            self._pace(t, len(data))


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    return [MiddlewareSpec("emulate", EmulateMiddleware, "latency and bandwidth emulation")]
