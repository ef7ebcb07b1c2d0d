"""A link that makes a healthy chain fail the way networks and servers do, reproducibly.

:class:`FaultInjector` sits in a chain like any middleware and, for a share of the calls that
pass it, injects one of these faults (decided by ``random.Random`` from the seed, the number of
the call and its names, so the same seed and the same sequence of calls give the same faults):

``"error"``
    The connection fails before the request is sent: ``BackendConnectionError`` (temporary,
    ``maybe_applied`` False) and the link further in is not called, so nothing happened.
``"lost_reply"``
    The request reaches the storage and its reply is lost.  A mutation (store, store_new,
    delete, move, mkdir, rmdir, create, destroy) is carried out; if it succeeded,
    ``BackendConnectionError(maybe_applied=True)`` is raised instead of its result; if it failed,
    its own error is raised unchanged (a failed request stays failed: no retry layer could tell
    "my lost delete removed it" from "it was never there").  A read is carried out and
    ``BackendConnectionError`` raised instead of whatever it answered.
``"slow"``
    The call waits ``slow_seconds`` (with the *sleep* given), then proceeds normally.
``"torn"``
    The connection breaks during the transfer: a listing yields a few items (1 to 3: all of
    them if it has fewer) and then raises ``BackendConnectionError``; load, gather and hash read
    the data and raise instead of returning it.  A transfer of other calls is too small to tear:
    for them it is an ``"error"``.

Lifecycle calls (create, destroy, open, close, flush, quota) get no faults unless named in
*operations*.  An optional operation (list_tree, list_temp, store_new) exists on the injector
exactly where it exists on the link further in.  :attr:`FaultInjector.injected` counts what was
injected per kind, :attr:`FaultInjector.history` lists ``(operation, kind)`` of recent faults.

The conformance kit's ``faults`` profile runs its state machines through ``retry`` around this
layer (borgstore.testing._faults_profile)::

    from borgstore.middleware.retry import RetryMiddleware
    chain = RetryMiddleware(FaultInjector(build_chain(backend), seed=7), sleep=lambda s: None)
"""

import collections
import random
import threading
import time
from typing import Any, Callable, Iterable, Iterator, NoReturn, Optional, Union

from ..backends._base import ItemInfo
from ..backends.errors import BackendConnectionError, BackendError
from ..middleware._base import OPERATIONS, OPTIONAL_OPERATIONS, Link, Middleware

FAULT_KINDS = ("error", "lost_reply", "slow", "torn")

#: calls that change the store: a lost reply leaves them applied
MUTATIONS = frozenset({"store", "store_new", "delete", "move", "mkdir", "rmdir", "create", "destroy"})
#: calls whose result is a stream that a torn connection cuts short
LISTINGS = frozenset({"list", "list_tree", "list_temp"})
#: reads with a payload that a torn connection loses after the storage sent it
TRANSFERS = frozenset({"load", "gather", "hash"})
#: calls without faults unless asked for: a chain's setup and teardown, and the cheap queries
LIFECYCLE = frozenset({"create", "destroy", "open", "close", "flush", "quota"})
DEFAULT_OPERATIONS = frozenset(OPERATIONS) - LIFECYCLE

#: how many items a torn listing yields at most before it breaks (at least one: a listing that
#: breaks before its first item is an "error")
_MOST_ITEMS_BEFORE_TEAR = 3
_HISTORY_LENGTH = 10000


class FaultInjector(Middleware):
    """Injects seeded faults into the calls that pass it (see the module docstring).

    :param inner: the link further in (``build_chain(backend)`` for a bare backend).
    :param seed: decides, with each call's number and names, which calls fail (keyword, required).
    :param rate: the share of calls that get a fault, 0 to 1.
    :param faults: the kinds to choose from, equally often.
    :param slow_seconds: how long a ``"slow"`` call waits.
    :param sleep: the function that waits (a test may pass a no-op or a recorder).
    :param operations: the operations that may get faults; default: all but the lifecycle calls.
    """

    name = "faults"

    def __init__(
        self,
        inner: Link,
        *,
        seed: int,
        rate: float = 0.2,
        faults: Union[str, Iterable[str]] = FAULT_KINDS,
        slow_seconds: float = 0.002,
        sleep: Callable[[float], object] = time.sleep,
        operations: Optional[Iterable[str]] = None,
    ):
        super().__init__(inner)
        self.rate = _checked_rate(rate)
        self.faults = _checked_kinds(faults)
        self.slow_seconds = float(slow_seconds)
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds={slow_seconds!r}: must not be negative")
        self._sleep = sleep
        self.operations = _checked_operations(DEFAULT_OPERATIONS if operations is None else operations)
        self._lock = threading.Lock()
        self.reseed(seed)
        for op in self.operations:
            if op in OPTIONAL_OPERATIONS and not hasattr(inner, op):
                continue
            forward = getattr(inner, op)
            setattr(self, op, self._listing_call(op, forward) if op in LISTINGS else self._plain_call(op, forward))

    def reseed(self, seed: int) -> None:
        """Start the fault sequence of *seed* anew and zero the counters."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed={seed!r}: an int, so that the faults are reproducible")
        with self._lock:
            self.seed = seed
            #: faults injected so far, per kind
            self.injected = dict.fromkeys(FAULT_KINDS, 0)
            #: calls that could have got a fault
            self.calls = 0
            #: (operation, kind) of the most recent faults, oldest first
            self.history: collections.deque[tuple[str, str]] = collections.deque(maxlen=_HISTORY_LENGTH)

    def contribute_stats(self, stats: dict[str, Any]) -> None:
        for kind, count in self.injected.items():
            stats[f"faults_{kind}"] = count

    # --- deciding ---
    def _decide(self, op: str, args: tuple[Any, ...]) -> tuple[Optional[str], int]:
        """The fault for this call (None: none) and, for a torn listing, how many items it yields
        first.  Decided from the seed, the number of the call and the names it is called with:
        the same calls give the same faults, and runs sharing a seed but not their calls get
        different faults (a sequence from the seed alone would hit the same call numbers in
        every run with that seed)."""
        with self._lock:
            self.calls += 1
            chance = random.Random(f"{self.seed}/{self.calls}/{op}/{_call_text(op, args)}")
            if chance.random() >= self.rate:
                return None, 0
            kind = self.faults[chance.randrange(len(self.faults))]
            self.injected[kind] += 1
            self.history.append((op, kind))
            return kind, chance.randint(1, _MOST_ITEMS_BEFORE_TEAR)

    # --- injecting ---
    def _plain_call(self, op: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            kind, _ = self._decide(op, args)
            if kind is None:
                return forward(*args, **kwargs)
            if kind == "slow":
                self._sleep(self.slow_seconds)
                return forward(*args, **kwargs)
            if kind == "error" or (kind == "torn" and op not in TRANSFERS):
                raise _before(op, args)
            if kind == "lost_reply" and op in MUTATIONS:
                forward(*args, **kwargs)  # its own error, if any, is the answer that came back
                raise BackendConnectionError(
                    f"injected fault: the reply to {_call_text(op, args)} was lost after it was applied",
                    maybe_applied=True,
                )
            return _read_then_fail(op, kind, forward, args, kwargs)

        call.__name__ = op
        return call

    def _listing_call(
        self, op: str, forward: Callable[[str], Iterator[ItemInfo]]
    ) -> Callable[[str], Iterator[ItemInfo]]:
        def call(name: str) -> Iterator[ItemInfo]:
            kind, keep = self._decide(op, (name,))
            if kind is None:
                return forward(name)
            if kind == "slow":
                self._sleep(self.slow_seconds)
                return forward(name)
            if kind == "error":
                raise _before(op, (name,))
            if kind == "lost_reply":
                _read_then_fail(op, kind, lambda name: [*forward(name)], (name,), {})
            return _torn(op, name, forward(name), keep)

        call.__name__ = op
        return call


def _read_then_fail(
    op: str, kind: str, forward: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> NoReturn:
    """Carry out a read, then lose what it answered."""
    what = "the reply was lost" if kind == "lost_reply" else "the connection broke during the transfer"
    try:
        forward(*args, **kwargs)
    except BackendError as exc:
        raise BackendConnectionError(f"injected fault: {_call_text(op, args)}: {what}") from exc
    raise BackendConnectionError(f"injected fault: {_call_text(op, args)}: {what}")


def _torn(op: str, name: str, stream: Iterable[ItemInfo], keep: int) -> Iterator[ItemInfo]:
    """Yield the first *keep* items of *stream* (all, if it has fewer), then break."""
    stream = iter(stream)
    yielded = 0
    try:
        for item in stream:
            if yielded == keep:
                break
            yielded += 1
            yield item
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    raise BackendConnectionError(f"injected fault: {op}({name!r}) broke after {yielded} items")


def _before(op: str, args: tuple[Any, ...]) -> BackendConnectionError:
    return BackendConnectionError(f"injected fault: the connection failed before {_call_text(op, args)} was sent")


def _call_text(op: str, args: tuple[Any, ...]) -> str:
    shown = ", ".join(repr(arg) for arg in args if isinstance(arg, str))
    return f"{op}({shown})"


def _checked_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate={rate!r}: the share of calls that fail, a number from 0 to 1")
    return float(rate)


def _checked_kinds(faults: Union[str, Iterable[str]]) -> tuple[str, ...]:
    if isinstance(faults, str):
        faults = (faults,)
    faults = tuple(faults)
    unknown = [kind for kind in faults if kind not in FAULT_KINDS]
    if unknown or not faults:
        raise ValueError(f"faults={faults!r}: choose one or more of {', '.join(FAULT_KINDS)}")
    return faults


def _checked_operations(operations: Iterable[str]) -> frozenset[str]:
    if isinstance(operations, str):
        raise TypeError(f"operations={operations!r}: give a collection of operation names")
    operations = frozenset(operations)
    unknown = sorted(operations - set(OPERATIONS))
    if unknown:
        raise ValueError(f"operations: {', '.join(map(repr, unknown))} are no chain operations; use {OPERATIONS}")
    return operations
