"""The retry middleware: temporary errors retried within bounds, permanent ones passed at once,
lost replies resolved by looking, listings resumed without repeats or gaps, a circuit breaker.

The failures come from a test-local link (``Flaky``) between the retry layer and the memory
backend that fails on purpose by a script; a fake clock stands in for time, so nothing sleeps.
"""

import collections
import dataclasses
import functools
import logging
import random
import re
import threading

import pytest

from borgstore.backends.errors import (
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ObjectAlreadyExists,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import BackendAdapter, Middleware
from borgstore.middleware._base import OPTIONAL_OPERATIONS
from borgstore.middleware.retry import RetryMiddleware
from borgstore.store import Store, build_chain, default_middleware

LOGGER = "borgstore.middleware.retry"
PLAIN_OPS = ("create", "destroy", "open", "close", "flush", "mkdir", "rmdir", "info", "load", "store")
PLAIN_OPS += ("delete", "move", "hash", "gather", "quota", "store_new")
LIST_OPS = ("list", "list_tree", "list_temp")
CONFIG = {"data/": {"levels": [0]}}


class MemoryWithNew(MemoryBackend):
    """The memory backend plus store_new and list_temp (its temp items deliberately unsorted)."""

    def __init__(self, name="", **options):
        super().__init__(name, **options)
        self.capabilities = dataclasses.replace(self.capabilities, store_new=True)

    def store_new(self, name, value):
        with self._location.lock:
            if self.info(name).exists:
                raise ObjectAlreadyExists(f"{name!r} exists")
            self.store(name, value)

    def list_temp(self, name):
        found = []

        def walk(directory, prefix):
            for key, child in directory.items():
                if isinstance(child, dict):
                    walk(child, f"{prefix}{key}/")
                elif key.endswith(".tmp"):
                    found.append(prefix + key)

        try:
            walk(self._dir(name), "")
        except ObjectNotFound:
            return
        for path in sorted(found, reverse=True):
            yield self.info(f"{name}/{path}")._replace(name=path)


class FakeTime:
    """A clock that only moves when someone sleeps (or a test moves it)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky(Middleware):
    """Fails on purpose.  ``script[op]`` lists what the next calls of *op* do: "fail" (a temporary
    error, nothing done), "lost" (done, then the reply is lost), "lost-before" (a lost reply of
    an attempt that did nothing), "deny" (a permanent error), "bug" (a RuntimeError), "slow"
    (nothing done, a temporary error after 0.6 s of the fake clock), "ok".  ``tear[op]`` lists
    for the next listings how many items each yields before a temporary error (or ``("deny", k)``
    for a permanent one).  ``calls`` counts what reached this link; ``raised`` keeps what it raised."""

    def __init__(self, inner, fake=None):
        super().__init__(inner)
        self.fake = fake
        self.script = collections.defaultdict(list)
        self.tear = collections.defaultdict(list)
        self.calls = collections.Counter()
        self.raised = []
        self.hook = {}  # op -> a function called after the operation was done, before the reply
        for op in PLAIN_OPS:
            if hasattr(inner, op):
                setattr(self, op, functools.partial(self._call, op, getattr(inner, op)))
        for op in LIST_OPS:
            if hasattr(inner, op):
                setattr(self, op, functools.partial(self._listing, op, getattr(inner, op)))

    def _raise(self, exc):
        self.raised.append(exc)
        raise exc

    def _call(self, op, method, *args, **kwargs):
        self.calls[op] += 1
        action = self.script[op].pop(0) if self.script[op] else "ok"
        if action == "fail":
            self._raise(BackendConnectionError(f"{op}: connection reset by peer"))
        if action == "slow":
            self.fake.now += 0.6
            self._raise(BackendTimeout(f"{op}: no answer within 0.6 s"))
        if action == "lost-before":
            self._raise(BackendConnectionError(f"{op}: reply lost", maybe_applied=True))
        if action == "deny":
            self._raise(PermissionDenied(f"{op}: denied"))
        if action == "bug":
            self._raise(RuntimeError(f"{op}: a bug"))
        result = method(*args, **kwargs)
        if op in self.hook:
            self.hook[op]()
        if action == "lost":
            self._raise(BackendConnectionError(f"{op}: reply lost", maybe_applied=True))
        return result

    def _listing(self, op, method, name):
        self.calls[op] += 1
        plan = self.tear[op].pop(0) if self.tear[op] else None
        if plan is None:
            yield from method(name)
            return
        kind, count = plan if isinstance(plan, tuple) else ("fail", plan)
        for index, item in enumerate(method(name)):
            if index == count:
                break
            yield item
        if kind == "deny":
            self._raise(PermissionDenied(f"{op} {name!r}: denied after {count} items"))
        self._raise(BackendConnectionError(f"{op} {name!r}: connection reset after {count} items"))


def make(fake=None, backend=None, **options):
    """(retry link, flaky link, fake time) over an opened memory store."""
    fake = fake or FakeTime()
    backend = backend or MemoryWithNew()
    backend.create()
    backend.open()
    flaky = Flaky(BackendAdapter(backend), fake)
    options = {"sleep": fake.sleep, "clock": fake.clock, **options}
    return RetryMiddleware(flaky, **options), flaky, fake


def stats(link):
    result = {}
    link.contribute_stats(result)
    return result


# --- retrying or not ---


def test_temporary_error_is_retried_until_it_succeeds():
    retry, flaky, fake = make()
    retry.store("data/a", b"value")
    flaky.script["load"] = ["fail", "fail"]
    assert retry.load("data/a") == b"value"
    assert flaky.calls["load"] == 3 and len(fake.sleeps) == 2
    assert stats(retry)["retry_attempts"] == 2 and stats(retry)["retry_giveups"] == 0


@pytest.mark.parametrize("action, kind", [("deny", PermissionDenied), ("bug", RuntimeError)])
def test_permanent_and_foreign_errors_pass_at_once_untouched(action, kind):
    retry, flaky, fake = make()
    flaky.script["store"] = [action]
    with pytest.raises(kind) as raised:
        retry.store("data/a", b"value")
    assert raised.value is flaky.raised[0]
    assert flaky.calls["store"] == 1 and fake.sleeps == []
    assert stats(retry)["retry_attempts"] == 0 and stats(retry)["retry_giveups"] == 0


def test_a_missing_item_is_reported_after_one_call():
    retry, flaky, fake = make()
    with pytest.raises(ObjectNotFound):
        retry.load("data/missing")
    with pytest.raises(ObjectNotFound):
        retry.delete("data/missing")
    assert flaky.calls["load"] == 1 and flaky.calls["delete"] == 1 and fake.sleeps == []


def test_gives_up_after_the_attempts_with_the_same_class_and_flags():
    retry, flaky, _ = make(attempts=3)
    retry.store("data/a", b"value")
    flaky.script["load"] = ["fail", "fail", "slow", "ok"]
    with pytest.raises(BackendConnectionError) as raised:
        retry.load("data/a")
    exc = raised.value
    assert type(exc) is BackendTimeout  # the last error's class: callers catching it still do
    assert exc.temporary and not exc.maybe_applied
    assert exc.__cause__ is flaky.raised[-1]
    assert "gave up after 3 tries over" in str(exc) and "no attempts left" in str(exc)
    assert "no answer within 0.6 s" in str(exc)
    assert flaky.calls["load"] == 3
    assert stats(retry)["retry_attempts"] == 2 and stats(retry)["retry_giveups"] == 1


def test_a_call_given_up_may_have_been_applied_if_any_attempt_may_have():
    retry, flaky, _ = make(attempts=2)
    flaky.script["store"] = ["fail", "fail"]
    with pytest.raises(BackendConnectionError) as raised:
        retry.store("data/a", b"value")
    assert not raised.value.maybe_applied
    flaky.script["move"] = ["lost-before"]
    flaky.script["info"] = ["fail"]  # looking fails too: the move may still have been applied
    with pytest.raises(BackendConnectionError) as raised:
        retry.move("data/a", "data/b")
    assert raised.value.__cause__ is flaky.raised[-1] and not flaky.raised[-1].maybe_applied
    assert raised.value.maybe_applied and "2 tries" in str(raised.value)


def test_circuit_open_from_a_retry_layer_further_in_passes_at_once():
    fake = FakeTime()
    backend = MemoryWithNew()
    backend.create()
    backend.open()
    flaky = Flaky(BackendAdapter(backend), fake)
    options = {"sleep": fake.sleep, "clock": fake.clock}
    inner = RetryMiddleware(flaky, attempts=1, breaker_failures=1, **options)
    outer = RetryMiddleware(inner, **options)
    flaky.script["quota"] = ["fail"]
    with pytest.raises(CircuitOpen):
        outer.quota()  # the outer layer retries once, the inner breaker refuses: no more tries
    assert flaky.calls["quota"] == 1 and stats(outer)["retry_attempts"] == 1 and len(fake.sleeps) == 1


def test_gives_up_when_the_next_delay_would_pass_the_budget():
    retry, flaky, fake = make(attempts=10, budget=1.0, first_delay=0.01, max_delay=0.01)
    flaky.script["info"] = ["slow"] * 10
    start = fake.now
    with pytest.raises(BackendTimeout) as raised:
        retry.info("data/a")
    # 0.6 s per attempt: after the second one (1.2 s and more) no attempt may start
    assert flaky.calls["info"] == 2
    assert "gave up after 2 tries over 1.2 s" in str(raised.value) and "1 s budget" in str(raised.value)
    assert fake.now - start <= 1.0 + 0.6 + 0.01


def delays(seed, failures=7, **options):
    retry, flaky, fake = make(seed=seed, attempts=failures + 1, first_delay=0.1, max_delay=0.5, **options)
    flaky.script["quota"] = ["fail"] * failures
    retry.quota()
    return fake.sleeps


def test_backoff_is_capped_exponential_with_seeded_full_jitter():
    state = random.getstate()
    first = delays(7)
    assert random.getstate() == state  # the jitter has a Random of its own
    assert delays(7) == first and delays(8) != first
    caps = [min(0.5, 0.1 * 2**i) for i in range(7)]
    runs = [delays(seed) for seed in range(60)]
    for run in runs:
        assert len(run) == 7
        assert all(0 <= delay <= cap for delay, cap in zip(run, caps, strict=True))
    # the delays grow with the attempt: later ones go well past the first cap, up to max_delay
    assert max(run[0] for run in runs) <= 0.1
    assert max(run[5] for run in runs) > 0.4
    assert sum(run[5] for run in runs) > 2 * sum(run[0] for run in runs)


def test_close_is_tried_once():
    retry, flaky, fake = make()
    flaky.script["close"] = ["fail"]
    with pytest.raises(BackendConnectionError):
        retry.close()
    assert flaky.calls["close"] == 1 and fake.sleeps == []


@pytest.mark.parametrize(
    "option, value",
    [
        ("attempts", 0),
        ("attempts", 2.5),
        ("attempts", True),
        ("first_delay", -1),
        ("first_delay", "0.1"),
        ("max_delay", 0.01),
        ("max_delay", float("nan")),
        ("budget", 0),
        ("budget", float("inf")),
        ("breaker_failures", -1),
        ("breaker_cooldown", -5),
        ("seed", 1.5),
        ("sleep", 3),
        ("clock", "now"),
    ],
)
def test_bad_options_are_refused_naming_them(option, value):
    with pytest.raises(ValueError, match=f"{option} .*{re.escape(repr(value))}"):
        RetryMiddleware(BackendAdapter(MemoryBackend()), **{option: value})
    with pytest.raises(ValueError, match=option):
        Store("memory:", config=CONFIG, middleware=[("retry", {option: value})])


# --- the circuit breaker ---


def test_breaker_opens_fails_fast_and_closes_after_a_good_trial():
    retry, flaky, fake = make(attempts=2, breaker_failures=3, breaker_cooldown=10.0)
    retry.store("data/a", b"value")
    flaky.script["load"] = ["fail"] * 3
    with pytest.raises(BackendConnectionError, match="no attempts left"):
        retry.load("data/a")
    with pytest.raises(BackendConnectionError, match="circuit breaker opened") as raised:
        retry.load("data/a")  # the third failure in a row opens it: this call stops too
    assert type(raised.value) is BackendConnectionError
    calls = sum(flaky.calls.values())
    with pytest.raises(CircuitOpen) as refused:
        retry.info("data/a")
    assert sum(flaky.calls.values()) == calls  # refused without a call
    message = str(refused.value)
    assert "after 3 consecutive failed attempts" in message and "in 10.0 s" in message
    assert "open since" in message and "connection reset by peer" in message
    assert refused.value.temporary and isinstance(refused.value, BackendUnavailable)
    fake.now += 9.9
    with pytest.raises(CircuitOpen):
        retry.store("data/b", b"x")
    fake.now += 0.1
    assert retry.load("data/a") == b"value"  # the trial: the breaker closes
    assert retry.info("data/a").exists and flaky.calls["info"] == 1
    counted = stats(retry)
    assert counted["retry_breaker_opened"] == 1 and counted["retry_fast_failures"] == 2
    assert counted["retry_giveups"] == 2


def test_a_failed_trial_opens_the_breaker_again():
    retry, flaky, fake = make(attempts=5, breaker_failures=2, breaker_cooldown=5.0)
    flaky.script["quota"] = ["fail"] * 3
    with pytest.raises(BackendConnectionError):
        retry.quota()
    assert flaky.calls["quota"] == 2
    fake.now += 5.0
    with pytest.raises(BackendConnectionError, match="1 try.*circuit breaker opened"):
        retry.quota()  # the trial fails: open again at once, no retry
    assert flaky.calls["quota"] == 3
    with pytest.raises(CircuitOpen, match="in 5.0 s"):
        retry.quota()
    assert stats(retry)["retry_breaker_opened"] == 2
    fake.now += 5.0
    assert retry.quota() == {"limit": -1, "usage": -1}


def test_while_the_trial_is_under_way_other_calls_fail_fast():
    retry, flaky, fake = make(attempts=1, breaker_failures=1, breaker_cooldown=1.0)
    retry.store("data/a", b"value")
    flaky.script["info"] = ["fail"]
    with pytest.raises(BackendConnectionError):
        retry.info("data/a")
    fake.now += 1.0
    entered, release = threading.Event(), threading.Event()

    def hold():
        entered.set()
        assert release.wait(10)

    flaky.hook["load"] = hold
    results = []
    trial = threading.Thread(target=lambda: results.append(retry.load("data/a")))
    trial.start()
    assert entered.wait(10)
    with pytest.raises(CircuitOpen, match="trial call under way"):
        retry.info("data/a")
    release.set()
    trial.join(10)
    assert results == [b"value"]
    assert retry.info("data/a").exists  # closed by the trial's success


def test_threads_retrying_at_once_are_all_counted():
    # enough attempts that no call gives up, however the failures fall among the threads
    retry, flaky, _ = make(breaker_failures=0, attempts=41, max_delay=0.1, budget=1e6)
    retry.store("data/a", b"value")
    flaky.script["load"] = ["fail"] * 40
    results = []

    def work():
        results.extend(retry.load("data/a") for _ in range(20))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [b"value"] * 160
    assert stats(retry)["retry_attempts"] == 40 and flaky.calls["load"] == 200


def test_an_answer_from_the_storage_resets_the_count():
    retry, flaky, _ = make(attempts=1, breaker_failures=2)
    for action in ("fail", "deny", "fail", "ok", "fail"):
        flaky.script["quota"] = [action]
        try:
            retry.quota()
        except BackendError:
            pass
    assert stats(retry)["retry_breaker_opened"] == 0
    retry.quota()


def test_breaker_failures_zero_disables_the_breaker():
    retry, flaky, _ = make(attempts=2, breaker_failures=0)
    for _ in range(10):
        flaky.script["quota"] = ["fail", "fail"]
        with pytest.raises(BackendConnectionError, match="no attempts left"):
            retry.quota()
    assert retry.quota() == {"limit": -1, "usage": -1}
    assert stats(retry)["retry_breaker_opened"] == 0 and stats(retry)["retry_fast_failures"] == 0


# --- lost replies resolved by looking ---


def test_delete_whose_reply_was_lost_is_done():
    retry, flaky, _ = make()
    retry.store("data/a", b"value")
    flaky.script["delete"] = ["lost"]
    retry.delete("data/a")
    assert not retry.info("data/a").exists
    assert flaky.calls["delete"] == 2 and stats(retry)["retry_resolved"] == 1


def test_delete_retried_without_a_lost_reply_still_reports_missing():
    retry, flaky, _ = make()
    retry.store("data/a", b"value")
    flaky.script["delete"] = ["fail"]
    retry.delete("data/a")
    flaky.script["delete"] = ["fail"]
    with pytest.raises(ObjectNotFound):
        retry.delete("data/a")
    assert stats(retry)["retry_resolved"] == 0


def test_move_whose_reply_was_lost_is_not_moved_again():
    retry, flaky, _ = make()
    retry.store("data/a", b"value")
    flaky.script["move"] = ["lost"]
    retry.move("data/a", "data/b")
    assert flaky.calls["move"] == 1  # resolved by looking: a gone, b there
    assert retry.load("data/b") == b"value" and not retry.info("data/a").exists
    assert stats(retry)["retry_resolved"] == 1


def test_move_lost_before_it_was_applied_moves_again():
    retry, flaky, _ = make()
    retry.store("data/a", b"value")
    retry.store("data/b", b"older")
    flaky.script["move"] = ["lost-before"]
    retry.move("data/a", "data/b")
    assert flaky.calls["move"] == 2 and flaky.calls["info"] == 1  # looked at the source only
    assert retry.load("data/b") == b"value" and not retry.info("data/a").exists
    assert stats(retry)["retry_resolved"] == 0


def test_move_lost_with_both_names_gone_reports_the_source_missing():
    retry, flaky, _ = make()
    retry.store("data/a", b"value")
    flaky.hook["move"] = lambda: flaky.inner.delete("data/b")  # someone removed the target
    flaky.script["move"] = ["lost"]
    with pytest.raises(ObjectNotFound, match="data/a"):
        retry.move("data/a", "data/b")
    assert flaky.calls["move"] == 1


def test_store_new_whose_reply_was_lost_is_done():
    retry, flaky, _ = make()
    flaky.script["store_new"] = ["lost"]
    retry.store_new("data/a", b"value")
    assert flaky.calls["store_new"] == 1 and retry.load("data/a") == b"value"
    assert stats(retry)["retry_resolved"] == 1


def test_store_new_lost_finding_other_content_raises_already_exists():
    retry, flaky, _ = make()
    retry.store("data/a", b"other")
    flaky.script["store_new"] = ["lost-before"]
    with pytest.raises(ObjectAlreadyExists):
        retry.store_new("data/a", b"value")
    retry.store("data/b", b"12345")  # the same size, other bytes: the content decides
    flaky.script["store_new"] = ["lost-before"]
    with pytest.raises(ObjectAlreadyExists):
        retry.store_new("data/b", b"54321")
    assert flaky.calls["store_new"] == 2 and retry.load("data/a") == b"other"


def test_store_new_lost_before_writing_writes_again():
    retry, flaky, _ = make()
    flaky.script["store_new"] = ["lost-before"]
    retry.store_new("data/a", b"value")
    assert flaky.calls["store_new"] == 2 and retry.load("data/a") == b"value"
    with pytest.raises(ObjectAlreadyExists):
        retry.store_new("data/a", b"value")  # without a lost reply, an existing item is reported


def test_rmdir_and_destroy_whose_replies_were_lost_are_done():
    retry, flaky, _ = make()
    retry.mkdir("empty")
    flaky.script["rmdir"] = ["lost"]
    retry.rmdir("empty")
    assert not retry.info("empty").exists and flaky.calls["rmdir"] == 2
    retry.close()
    flaky.script["destroy"] = ["lost"]
    retry.destroy()
    with pytest.raises(BackendDoesNotExist):
        retry.open()
    assert flaky.calls["destroy"] == 2 and stats(retry)["retry_resolved"] == 2


def test_idempotent_mutations_are_repeated_after_a_lost_reply():
    retry, flaky, _ = make()
    flaky.script["store"] = ["lost"]
    flaky.script["mkdir"] = ["lost"]
    retry.store("data/a", b"value")
    retry.mkdir("dir/sub")
    assert flaky.calls["store"] == 2 and flaky.calls["mkdir"] == 2
    assert retry.load("data/a") == b"value" and retry.info("dir/sub").directory
    assert stats(retry)["retry_resolved"] == 0


# --- listings ---


def fill(link, count=12):
    names = [f"data/{i:02x}/{i:04x}" for i in range(count)]
    for name in names:
        link.store(name, name.encode())
    return names


def test_a_torn_list_is_resumed_without_repeats_or_gaps():
    retry, flaky, _ = make()
    for i in range(10):
        retry.store(f"data/{i:04x}", b"x")
    expected = [item.name for item in flaky.inner.list("data")]
    flaky.tear["list"] = [3, 0, 5]
    assert [item.name for item in retry.list("data")] == expected
    assert flaky.calls["list"] == 4 and stats(retry)["retry_attempts"] == 3


def test_a_torn_list_tree_is_resumed_without_repeats_or_gaps():
    retry, flaky, _ = make()
    names = fill(retry)
    flaky.tear["list_tree"] = [0, 4, 4, 11]
    assert ["data/" + item.name for item in retry.list_tree("data")] == names
    assert flaky.calls["list_tree"] == 5


def test_a_torn_list_temp_is_resumed_without_repeats_or_gaps():
    retry, flaky, _ = make()
    for i in range(6):
        retry.store(f"data/{i % 2}/{i}.tmp", b"x")
    expected = [item.name for item in flaky.inner.list_temp("data")]
    assert expected != sorted(expected)  # no order to rely on
    flaky.tear["list_temp"] = [2, 4]
    assert [item.name for item in retry.list_temp("data")] == expected


def test_a_listing_that_makes_progress_starts_its_count_afresh():
    retry, flaky, _ = make(attempts=2)
    names = fill(retry)
    flaky.tear["list_tree"] = [2, 4, 6, 8, 10]  # five failures, each after new items
    assert len(list(retry.list_tree("data"))) == len(names)
    flaky.tear["list_tree"] = [2, 2, 2]  # no progress after the first failure
    with pytest.raises(BackendConnectionError, match="2 tries"):
        list(retry.list_tree("data"))


def test_a_permanent_error_in_a_listing_propagates():
    retry, flaky, fake = make()
    fill(retry)
    flaky.tear["list"] = [("deny", 2)]
    listed = []
    with pytest.raises(PermissionDenied):
        for item in retry.list("data"):
            listed.append(item)
    assert len(listed) == 2 and flaky.calls["list"] == 1 and fake.sleeps == []


def test_a_missing_directory_is_reported_at_once():
    retry, flaky, _ = make()
    with pytest.raises(ObjectNotFound):
        list(retry.list("nothing"))
    assert flaky.calls["list"] == 1


def test_a_refused_listing_fails_fast():
    retry, flaky, _ = make(attempts=1, breaker_failures=1)
    fill(retry)
    flaky.tear["list"] = [0]
    with pytest.raises(BackendConnectionError):
        list(retry.list("data"))
    with pytest.raises(CircuitOpen):
        list(retry.list("data"))
    assert flaky.calls["list"] == 1


# --- optional operations, logging, stats, the default chain ---


@pytest.mark.parametrize("backend", [MemoryBackend(list_tree=False), MemoryBackend(), MemoryWithNew()])
def test_optional_operations_exist_exactly_where_the_inner_link_has_them(backend):
    inner = BackendAdapter(backend)
    retry = RetryMiddleware(inner)
    for op in OPTIONAL_OPERATIONS:
        assert hasattr(retry, op) == hasattr(inner, op), op
    if hasattr(inner, "list_tree"):
        backend.create()
        retry.open()
        retry.store("data/x", b"1")
        assert [item.name for item in retry.list_tree("data")] == ["x"]
    else:
        with pytest.raises(AttributeError, match="list_tree"):
            retry.list_tree  # noqa: B018 (the lookup is what is tested)


def test_each_retry_is_logged_without_the_url(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake = FakeTime()
    flaky = Flaky(BackendAdapter(MemoryWithNew("retry-log-test")), fake)
    options = {"attempts": 2, "breaker_failures": 2, "sleep": fake.sleep, "clock": fake.clock}
    store = Store(backend=flaky, config=CONFIG, middleware=[("retry", options)])
    store.create()
    with store:
        store.store("data/0123", b"value")
        flaky.script["load"] = ["fail", "fail"]
        with pytest.raises(BackendConnectionError):
            store.load("data/0123")
        fake.now += 30.0
        assert store.load("data/0123") == b"value"
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    retried, opened, gave_up, closed = records
    assert retried[0] == "WARNING" and "load 'data/0123' failed (attempt 1 of 2)" in retried[1]
    assert "BackendConnectionError: load: connection reset by peer" in retried[1]
    assert gave_up[0] == "ERROR" and "load 'data/0123' gave up after 2 tries" in gave_up[1]
    assert opened[0] == "WARNING" and "circuit breaker opened after 2" in opened[1]
    assert closed[0] == "INFO" and "closed" in closed[1]
    assert not [message for level, message in records if "memory:" in message or "retry-log-test" in message]


def test_store_stats_count_retries():
    fake = FakeTime()
    flaky = Flaky(BackendAdapter(MemoryWithNew()), fake)
    options = {"attempts": 2, "sleep": fake.sleep, "clock": fake.clock}
    store = Store(backend=flaky, config=CONFIG, middleware=["stats", ("retry", options)])
    store.create()
    with store:
        flaky.script["store"] = ["fail"]
        store.store("data/0123", b"value")
        flaky.script["move"] = ["lost"]
        store.move("data/0123", delete=True)
        flaky.script["load"] = ["fail", "fail"]
        with pytest.raises(BackendConnectionError):
            store.load("data/0123", deleted=True)
        counted = store.stats
    # one retry each for store and move, one for load before it gave up
    assert counted["retry_attempts"] == 3 and counted["retry_giveups"] == 1 and counted["retry_resolved"] == 1
    assert counted["retry_breaker_opened"] == 0 and counted["retry_fast_failures"] == 0
    assert counted["store_calls"] == 1  # stats outside retry counts what the application asked
    plain = Store("memory:", config=CONFIG).stats
    assert all(plain[key] == 0 for key in counted if key.startswith("retry_"))


class NetworkishMemory(MemoryBackend):
    """A memory backend declaring transient errors, as a network backend does."""

    def __init__(self, name=""):
        super().__init__(name)
        self.capabilities = dataclasses.replace(self.capabilities, transient_errors=True)


def test_default_chain_has_retry_for_a_backend_with_transient_errors(monkeypatch):
    monkeypatch.delenv("BORGSTORE_LATENCY", raising=False)
    monkeypatch.delenv("BORGSTORE_BANDWIDTH", raising=False)
    assert "retry" not in default_middleware(backend=MemoryBackend())
    assert "retry" not in default_middleware()
    assert default_middleware(backend=NetworkishMemory()) == ["stats", "retry"]
    monkeypatch.setenv("BORGSTORE_LATENCY", "1")
    chain = default_middleware({"": "lrwWD"}, 100, backend=NetworkishMemory())
    names = [entry if isinstance(entry, str) else entry[0] for entry in chain]
    assert names == ["stats", "permissions", "quota", "retry", "emulate"]
    monkeypatch.delenv("BORGSTORE_LATENCY")
    assert Store(backend=NetworkishMemory(), config=CONFIG).middleware == ("stats", "retry")
    assert Store(backend=MemoryBackend(), config=CONFIG).middleware == ("stats",)
    assert Store(backend=NetworkishMemory(), config=CONFIG, middleware=["stats"]).middleware == ("stats",)


def test_retry_by_name_in_a_chain():
    link = build_chain(MemoryBackend(), [("retry", {"attempts": 3, "seed": 1})])
    assert isinstance(link, RetryMiddleware) and link.name == "retry" and link.attempts == 3
