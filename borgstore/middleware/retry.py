"""The ``retry`` middleware: tries an operation again when it failed with a temporary error.

Only a :class:`~borgstore.backends.errors.BackendError` whose ``temporary`` is True is retried;
a permanent error and every other exception pass through at once, untouched.  Attempts are
bounded (``attempts``), spaced by an exponential backoff with full jitter (a random delay
between 0 and ``first_delay * 2**k``, at most ``max_delay``) and limited by a time budget per
call (``budget`` seconds from the start of the call: no attempt starts whose delay would pass
it).  Out of attempts or budget, the last error is raised again, as the same class with the same
flags, its message saying how many tries over how long, chained to the original; its
``maybe_applied`` is True if any attempt's was.  A CircuitOpen from a retry layer further in
passes at once.

A circuit breaker counts consecutive failed attempts across all calls and threads; after
``breaker_failures`` of them it opens for ``breaker_cooldown`` seconds, during which every call
raises :class:`~borgstore.backends.errors.CircuitOpen` at once.  Then one trial call goes
through: success (or any answer from the storage, even a permanent error) closes it, another
temporary failure opens it again.  A call already retrying when the breaker opens gives up with
its own last error.

A mutation whose failed attempt may have been applied (``maybe_applied``: a lost reply) is
resolved by looking through the next link, never by guessing:

* ``delete``/``rmdir``: ObjectNotFound on the retry means the lost attempt did it.  This cannot
  tell an item that never existed from one the lost attempt removed; nothing can.
* ``destroy``: BackendDoesNotExist on the retry means the lost attempt did it.
* ``move(a, b)``: ``info`` of both first: ``a`` gone and ``b`` there is success; ``a`` there
  moves again; both gone raises ObjectNotFound(a).
* ``store_new``: ``info``, then ``load`` if the size matches: the same content is success, other
  content raises ObjectAlreadyExists, nothing there writes again.
* ``store``, ``mkdir``, ``create`` are idempotent and simply repeated.

``close`` is never retried.  A listing (``list``, ``list_tree``, ``list_temp``) that fails while
starting or in the middle is started again and yields only what it did not yield yet:
``list`` and ``list_tree`` are sorted by name (the backend contract), so the resumed stream
skips every name up to the last one yielded (no memory kept); ``list_temp`` has no documented
order, so the names it yielded are kept in a set (temp items are few).  A listing that makes
progress between failures starts its count of attempts and its budget afresh.
"""

import contextlib
import logging
import math
import random
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator, NoReturn, Optional, TypeVar, Union

from .._plugins import MiddlewareSpec, hookimpl
from .._stats import RETRY_COUNTERS
from ..backends._base import ItemInfo, Ranges, Value
from ..backends.errors import BackendDoesNotExist, BackendError, CircuitOpen, ObjectAlreadyExists, ObjectNotFound
from ._base import Link, Middleware
from ._optional import optional_operation

logger = logging.getLogger(__name__)

_R = TypeVar("_R")


def _number(option: str, value: object, *, minimum: float = 0.0, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"retry: {option} must be a finite number, not {value!r}")
    if value < minimum or (positive and value <= 0):
        bound = "> 0" if positive else f">= {minimum}"
        raise ValueError(f"retry: {option} must be {bound}, not {value!r}")
    return float(value)


def _integer(option: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"retry: {option} must be an int >= {minimum}, not {value!r}")
    return value


def _shown(names: Iterable[str]) -> str:
    return " -> ".join(repr(name) for name in names)


def _what(call: "_Call") -> str:
    """The operation and its names, for log records and messages."""
    return " ".join((call.op, _shown(call.names))) if call.names else call.op


def _wall(clock_time: float, clock: Callable[[], float]) -> str:
    """A time of *clock* as a wall-clock time of day, for messages."""
    return time.strftime("%H:%M:%S", time.localtime(time.time() + (clock_time - clock())))


def _again(exc: BackendError, note: str, maybe_applied: bool) -> BackendError:
    """*exc* as a new error of the same class and attributes, its message extended; it may have
    been applied if any attempt may have been (not only the last one)."""
    try:
        new = type(exc)(f"{exc} ({note})")
        new.__dict__.update({k: v for k, v in exc.__dict__.items() if k != "__notes__"})
    except Exception:  # a subclass with a constructor of its own: keep it, with a note
        new = exc
        if sys.version_info >= (3, 11):
            new.add_note(note)
        else:  # Python 3.10 has no add_note(): the attribute it would extend
            setattr(new, "__notes__", [*getattr(new, "__notes__", []), note])
    new.temporary = exc.temporary
    new.maybe_applied = maybe_applied
    return new


class _Breaker:
    """The circuit breaker: closed, open until a time, or half-open with one trial under way."""

    def __init__(
        self,
        failures: int,
        cooldown: float,
        clock: Callable[[], float],
        on_open: Callable[[BackendError, int], None],
        on_close: Callable[[], None],
    ):
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.on_open, self.on_close = on_open, on_close
        self.lock = threading.Lock()
        self.state = "closed"
        self.consecutive = 0
        self.opened_at = self.until = 0.0
        self.last_error: Optional[BackendError] = None
        self.trial = False  # a half-open trial call is under way

    def admit(self) -> bool:
        """Let a call try, returning whether it is the half-open trial; or raise CircuitOpen."""
        if not self.threshold or self.state == "closed":
            return False
        with self.lock:
            if self.state == "closed":
                return False
            now = self.clock()
            if self.state == "open" and now >= self.until:
                self.state, self.trial = "half-open", False
            if self.state == "half-open" and not self.trial:
                self.trial = True
                return True
            raise self._refusal(now)

    def _refusal(self, now: float) -> CircuitOpen:
        if self.state == "open":
            when = f"until {_wall(self.until, self.clock)} (in {self.until - now:.1f} s)"
        else:
            when = "until the trial call under way has succeeded"
        exc = CircuitOpen(
            f"circuit breaker open since {_wall(self.opened_at, self.clock)} ({now - self.opened_at:.1f} s ago) "
            f"{when}, after {self.consecutive} consecutive failed attempts; last error: "
            f"{type(self.last_error).__name__}: {self.last_error}"
        )
        exc.opened_at, exc.until, exc.failures = self.opened_at, self.until, self.consecutive
        exc.last_error = self.last_error
        return exc

    def answered(self, trial: bool) -> None:
        """The storage answered (a success or a permanent error): the breaker closes, also if
        the answer is to a call admitted before it opened: the storage is reachable."""
        if self.state == "closed" and not self.consecutive:
            return
        with self.lock:
            self.consecutive = 0
            if self.state != "closed":
                self.state, self.trial = "closed", False
                self.on_close()

    def failed(self, exc: BackendError, trial: bool) -> bool:
        """A temporary failure: count it, open the breaker if due; return whether it is open."""
        if not self.threshold:
            return False
        with self.lock:
            self.consecutive += 1
            self.last_error = exc
            reopen = self.state == "half-open" and trial
            if reopen or (self.state == "closed" and self.consecutive >= self.threshold):
                self.state, self.trial = "open", False
                self.opened_at = self.clock()
                self.until = self.opened_at + self.cooldown
                self.on_open(exc, self.consecutive)
            return self.state != "closed"

    def released(self, trial: bool) -> None:
        """The trial ended without an answer from the storage (e.g. a bad argument)."""
        if trial:
            with self.lock:
                self.trial = False


class _Call:
    """One call's retry state: its tries, its start, whether a lost attempt may have applied it."""

    __slots__ = ("op", "names", "start", "tries", "lost")

    def __init__(self, op: str, names: tuple[str, ...], start: float):
        self.op, self.names, self.start = op, names, start
        self.tries = 1
        self.lost = False


class RetryMiddleware(Middleware):
    """Retries temporary errors with backoff, a budget and a circuit breaker (see the module)."""

    name = "retry"

    def __init__(
        self,
        inner: Link,
        *,
        attempts: int = 6,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
        budget: float = 60.0,
        breaker_failures: int = 8,
        breaker_cooldown: float = 30.0,
        seed: Union[int, str, bytes, None] = None,
        sleep: Optional[Callable[[float], object]] = None,
        clock: Optional[Callable[[], float]] = None,
    ):
        self.attempts = _integer("attempts", attempts, 1)
        self.first_delay = _number("first_delay", first_delay)
        self.max_delay = _number("max_delay", max_delay)
        if self.max_delay < self.first_delay:
            raise ValueError(f"retry: max_delay must be >= first_delay ({first_delay!r}), not {max_delay!r}")
        self.budget = _number("budget", budget, positive=True)
        breaker_failures = _integer("breaker_failures", breaker_failures, 0)
        breaker_cooldown = _number("breaker_cooldown", breaker_cooldown)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str, bytes))):
            raise ValueError(f"retry: seed must be None, an int, str or bytes, not {seed!r}")
        for option, value in (("sleep", sleep), ("clock", clock)):
            if value is not None and not callable(value):
                raise ValueError(f"retry: {option} must be callable, not {value!r}")
        super().__init__(inner)
        self._sleep = sleep if sleep is not None else time.sleep
        self._clock = clock if clock is not None else time.monotonic
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(RETRY_COUNTERS, 0)
        self._breaker = _Breaker(breaker_failures, breaker_cooldown, self._clock, self._opened, self._closed)

    # --- counters and log records ---
    def _count(self, counter: str) -> None:
        with self._lock:
            self._counters[counter] += 1

    def contribute_stats(self, stats: dict[str, Any]) -> None:
        with self._lock:
            stats.update(self._counters)

    def _opened(self, exc: BackendError, failures: int) -> None:
        self._count("retry_breaker_opened")
        logger.warning(
            "circuit breaker opened after %d consecutive failed attempts (last: %s: %s); calls fail at once for %.1f s",
            failures,
            type(exc).__name__,
            exc,
            self._breaker.cooldown,
        )

    def _closed(self) -> None:
        logger.info("circuit breaker closed: the storage answered again")

    # --- the retry loop ---
    def _admit(self, call: _Call) -> bool:
        """Admit *call*'s first try, or fail fast."""
        try:
            return self._breaker.admit()
        except CircuitOpen:
            self._count("retry_fast_failures")
            logger.debug("%s refused: the circuit breaker is open", _what(call))
            raise

    def _after_failure(self, call: _Call, exc: BackendError, trial: bool) -> bool:
        """Handle a temporary failure of *call*: wait and return whether it is a trial, or give up."""
        call.lost = call.lost or exc.maybe_applied
        is_open = self._breaker.failed(exc, trial)
        elapsed = self._clock() - call.start
        reason = None
        if is_open:
            reason = "the circuit breaker opened"
        elif call.tries >= self.attempts:
            reason = "no attempts left"
        else:
            cap = min(self.max_delay, self.first_delay * 2 ** (call.tries - 1))
            delay = self._random.uniform(0.0, cap)
            if elapsed + delay > self.budget:
                reason = f"the next try would pass the {self.budget:g} s budget"
        if reason is None:
            self._count("retry_attempts")
            logger.warning(
                "%s failed (attempt %d of %d), retrying in %.2f s: %s: %s",
                *(_what(call), call.tries, self.attempts, delay, type(exc).__name__, exc),
            )
            self._sleep(delay)
            try:
                trial = self._breaker.admit()
            except CircuitOpen:  # opened by another call meanwhile
                reason = "the circuit breaker opened"
            else:
                call.tries += 1
                return trial
        self._give_up(call, exc, reason)

    def _give_up(self, call: _Call, exc: BackendError, reason: str) -> NoReturn:
        self._count("retry_giveups")
        elapsed = self._clock() - call.start
        tries = "1 try" if call.tries == 1 else f"{call.tries} tries"
        note = f"gave up after {tries} over {elapsed:.1f} s: {reason}"
        logger.error("%s %s; last error: %s: %s", _what(call), note, type(exc).__name__, exc)
        again = _again(exc, note, call.lost)
        if again is exc:
            raise exc
        raise again from exc

    def _run(self, op: str, names: tuple[str, ...], attempt: Callable[[bool], _R]) -> _R:
        """Call ``attempt(lost)`` until it returns, retrying temporary errors."""
        call = _Call(op, names, self._clock())
        trial = self._admit(call)
        while True:
            try:
                result = attempt(call.lost)
            except CircuitOpen:  # a retry layer further in fails fast: so does this one
                self._breaker.released(trial)
                raise
            except BackendError as exc:
                if not exc.temporary:
                    self._breaker.answered(trial)
                    raise
                trial = self._after_failure(call, exc, trial)
                continue
            except BaseException:
                self._breaker.released(trial)
                raise
            self._breaker.answered(trial)
            return result

    def _resolved(self, op: str, names: tuple[str, ...], how: str) -> None:
        self._count("retry_resolved")
        logger.warning("%s %s: an earlier attempt's reply was lost; %s", op, _shown(names), how)

    # --- plain repeats ---
    def create(self) -> None:
        return self._run("create", (), lambda lost: self.inner.create())

    def open(self) -> None:
        return self._run("open", (), lambda lost: self.inner.open())

    def flush(self) -> None:
        return self._run("flush", (), lambda lost: self.inner.flush())

    def quota(self) -> dict[str, int]:
        return self._run("quota", (), lambda lost: self.inner.quota())

    def mkdir(self, name: str) -> None:
        return self._run("mkdir", (name,), lambda lost: self.inner.mkdir(name))

    def info(self, name: str) -> ItemInfo:
        return self._run("info", (name,), lambda lost: self.inner.info(name))

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        return self._run("load", (name,), lambda lost: self.inner.load(name, size=size, offset=offset))

    def store(self, name: str, value: Value) -> None:
        return self._run("store", (name,), lambda lost: self.inner.store(name, value))

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return self._run("hash", (name,), lambda lost: self.inner.hash(name, algorithm))

    def gather(self, sources: Ranges) -> bytes:
        names = tuple(dict.fromkeys(source[0] for source in sources))
        return self._run("gather", names, lambda lost: self.inner.gather(sources))

    # close is not defined here: Middleware binds it to the next link, tried once

    # --- mutations resolved by looking ---
    def _gone_means_done(
        self, op: str, names: tuple[str, ...], call: Callable[[], None], missing: type[BackendError]
    ) -> Callable[[bool], None]:
        """``attempt(lost)`` for an operation whose retry raising *missing* after a lost attempt
        means the lost attempt did it."""

        def attempt(lost: bool) -> None:
            try:
                return call()
            except missing:
                if not lost:
                    raise
                self._resolved(op, names, f"{missing.__name__} now: the lost attempt did it")
                return None

        return attempt

    def delete(self, name: str) -> None:
        attempt = self._gone_means_done("delete", (name,), lambda: self.inner.delete(name), ObjectNotFound)
        return self._run("delete", (name,), attempt)

    def rmdir(self, name: str) -> None:
        attempt = self._gone_means_done("rmdir", (name,), lambda: self.inner.rmdir(name), ObjectNotFound)
        return self._run("rmdir", (name,), attempt)

    def destroy(self) -> None:
        attempt = self._gone_means_done("destroy", (), lambda: self.inner.destroy(), BackendDoesNotExist)
        return self._run("destroy", (), attempt)

    def move(self, curr_name: str, new_name: str) -> None:
        names = (curr_name, new_name)

        def attempt(lost: bool) -> None:
            if lost:
                source = self.inner.info(curr_name)
                if not source.exists:
                    if self.inner.info(new_name).exists:
                        self._resolved(
                            "move", names, "the source is gone and the target there: the lost attempt did it"
                        )
                        return None
                    raise ObjectNotFound(f"move {_shown(names)}: neither the source nor the target exists")
            return self.inner.move(curr_name, new_name)

        return self._run("move", names, attempt)

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        def attempt(lost: bool) -> None:
            if lost:
                found = self.inner.info(name)
                if found.exists:
                    if found.size == len(value) and self.inner.load(name) == value:
                        self._resolved("store_new", (name,), "the item holds the value: the lost attempt wrote it")
                        return None
                    raise ObjectAlreadyExists(f"store_new {name!r}: an item of that name exists with other content")
            return self.inner.store_new(name, value)

        return self._run("store_new", (name,), attempt)

    # --- listings: restarted, never repeating or skipping an item ---
    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._listing("list", self.inner.list, name, sorted_names=True)

    @optional_operation
    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        return self._listing("list_tree", self.inner.list_tree, name, sorted_names=True)

    @optional_operation
    def list_temp(self, name: str) -> Iterator[ItemInfo]:
        return self._listing("list_temp", self.inner.list_temp, name, sorted_names=False)

    def _listing(
        self, op: str, list_method: Callable[[str], Iterator[ItemInfo]], name: str, *, sorted_names: bool
    ) -> Iterator[ItemInfo]:
        call = _Call(op, (name,), self._clock())
        last: Optional[str] = None  # sorted: the last name yielded
        yielded: set[str] = set()  # unsorted: every name yielded
        resumed = progressed = False
        items: Optional[Iterator[ItemInfo]] = None
        trial = self._admit(call)
        try:
            while True:
                try:
                    if items is None:
                        items = iter(list_method(name))
                    item = next(items)
                except StopIteration:
                    self._breaker.answered(trial)
                    return
                except CircuitOpen:
                    self._breaker.released(trial)
                    raise
                except BackendError as exc:
                    if not exc.temporary:
                        self._breaker.answered(trial)
                        raise
                    _closed(items)
                    items = None
                    if progressed:  # a new streak of failures: a fresh count and budget
                        call.tries, call.start, progressed = 1, self._clock(), False
                    trial = self._after_failure(call, exc, trial)
                    resumed = True
                    continue
                except BaseException:
                    self._breaker.released(trial)
                    raise
                if trial or not progressed:
                    self._breaker.answered(trial)
                    trial = False
                if sorted_names:
                    if resumed and last is not None and item.name <= last:
                        continue
                    last = item.name
                elif item.name in yielded:
                    continue
                else:
                    yielded.add(item.name)
                progressed = True
                yield item
        finally:
            _closed(items)


def _closed(items: Optional[Iterator[ItemInfo]]) -> None:
    """Close a listing's iterator (quietly: it failed or is abandoned); return None."""
    with contextlib.suppress(Exception):
        getattr(items, "close", lambda: None)()


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    description = "retries temporary errors: backoff, a time budget, a circuit breaker"
    return [MiddlewareSpec("retry", RetryMiddleware, description)]
