"""store_new (write only where no item exists, atomically) and list_temp through every
middleware, the permissions that use store_new for "write new, never overwrite" (w without W),
and writers racing on one new name: in threads on memory and posixfs, in processes on posixfs
(each its own Store), exactly one succeeds."""

import dataclasses
import multiprocessing
import sys
import threading
import uuid

import pytest

from borgstore.backends.errors import ObjectAlreadyExists, PermissionDenied, QuotaExceeded
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware
from borgstore.middleware.quota import QuotaMiddleware
from borgstore.middleware.stats import StatsMiddleware
from borgstore.store import Store, build_chain
from borgstore.testing import _backend_atomic
from borgstore.testing._backend_checks import BACKEND_CHECKS
from borgstore.testing._rules import ConformanceFailure, NotApplicable

CONFIG = {"data/": {"levels": [0]}}
WRITE_NEW = {"": "lrw"}  # borg's append-only mode: add items, never overwrite or delete one
THREADS = 8
PROCESSES = 4
# the bigger the value, the longer the old look-then-store left between its look and its rename:
# on the old code about 1 round in 3 (threads on posixfs) or 4 (processes) had several winners,
# and 1 in 20 on memory, whose window is a few bytecodes wide
THREAD_VALUE, PROCESS_VALUE = 64 * 1024, 1024 * 1024


def open_chain(middleware, backend=None):
    chain = build_chain(backend or MemoryBackend(), middleware)
    chain.create()
    chain.open()
    return chain


# --- the backends ---


@pytest.mark.parametrize("middleware", [[], ["stats", "emulate"]])
def test_store_new_stores_once_and_then_refuses(url, middleware):
    """A new name is stored; the same name again raises ObjectAlreadyExists and keeps the value."""
    from borgstore._plugins import backend_for_url

    chain = open_chain(middleware, backend_for_url(url, {}) if url.startswith("file:") else MemoryBackend())
    assert chain.capabilities.store_new is True
    chain.store_new("data/00/item", b"first")
    with pytest.raises(ObjectAlreadyExists, match="data/00/item"):
        chain.store_new("data/00/item", b"second")
    assert chain.load("data/00/item") == b"first"
    assert list(chain.list_temp("")) == []
    chain.close()


# --- every middleware ---


def test_stats_counts_store_new_as_store_and_list_temp_as_list():
    chain = open_chain(["stats"])
    chain.store_new("data/a", b"12345")
    with pytest.raises(ObjectAlreadyExists):
        chain.store_new("data/a", b"123")
    chain.store("data/b.tmp", b"xx")
    assert [info.name for info in chain.list_temp("data")] == ["b.tmp"]
    counted = chain.find_layer(StatsMiddleware).snapshot()
    assert counted["store_calls"] == 3  # the refused store_new too, as a failed store is counted
    assert counted["store_volume"] == 5 + 2  # only what was stored
    assert counted["list_calls"] == 1


def test_quota_counts_store_new_and_refunds_a_refused_one():
    """store_new reserves and counts like a store of a new item; ObjectAlreadyExists releases the
    reservation and counts nothing; one that would pass the limit raises QuotaExceeded."""
    chain = open_chain([("quota", {"limit": 10})])
    quota = chain.find_layer(QuotaMiddleware)
    chain.store_new("data/a", b"123456")
    assert chain.quota() == {"limit": 10, "usage": 6}
    with pytest.raises(ObjectAlreadyExists):
        chain.store_new("data/a", b"1234")
    assert chain.quota() == {"limit": 10, "usage": 6}
    assert quota._reserved == 0
    with pytest.raises(QuotaExceeded):
        chain.store_new("data/b", b"12345")
    assert not chain.info("data/b").exists
    chain.store_new("data/b", b"1234")
    assert chain.quota() == {"limit": 10, "usage": 10}
    assert quota._reserved == 0


def test_emulate_paces_store_new_like_store(monkeypatch):
    slept = []
    monkeypatch.setattr("borgstore.middleware.emulate.time.sleep", slept.append)
    chain = open_chain([("emulate", {"latency": 0.5, "bandwidth": 8000})])
    slept.clear()
    chain.store_new("x", b"a" * 1000)  # 1000 bytes at 1000 bytes/s, plus the latency
    list(chain.list_temp(""))
    assert slept[0] == pytest.approx(1.5, abs=0.01)
    assert slept[1] == pytest.approx(0.5, abs=0.01)


# --- permissions ---


def test_store_new_needs_w_or_W():
    backend = MemoryBackend()
    backend.create()
    chain = build_chain(backend, [("permissions", {"permissions": {"w": "w", "W": "W", "ro": "lr"}})])
    chain.open()
    chain.store_new("w/a", b"1")
    chain.store_new("W/a", b"1")
    with pytest.raises(PermissionDenied, match=r"store_new: permission 'w' or 'W' required for 'ro/a'"):
        chain.store_new("ro/a", b"1")
    assert not backend.info("ro/a").exists
    # store_new never overwrites, whatever the letters: the backend's answer passes unchanged
    for name in ("w/a", "W/a"):
        with pytest.raises(ObjectAlreadyExists):
            chain.store_new(name, b"2")


def test_write_new_is_one_atomic_store_new_without_a_look_up():
    """With w (not W) on a backend with store_new, a store is a store_new: no info call, and an
    existing item is refused with the overwrite message."""
    backend = MemoryBackend()
    looked_up, created = [], []
    original_info, original_store_new = backend.info, backend.store_new
    backend.info = lambda name: looked_up.append(name) or original_info(name)
    backend.store_new = lambda name, value: created.append(name) or original_store_new(name, value)
    chain = open_chain([("permissions", {"permissions": WRITE_NEW})], backend)
    chain.store("data/a", b"1")
    with pytest.raises(PermissionDenied, match=r"^store: permission 'W' required for 'data/a', not granted$"):
        chain.store("data/a", b"2")
    assert backend.load("data/a") == b"1"
    assert looked_up == [] and created == ["data/a", "data/a"]


def test_write_new_without_store_new_looks_then_stores():
    """A backend without store_new: the permission is checked by a look-up before the store
    (documented as not atomic there)."""
    backend = MemoryBackend(store_new=False)
    looked_up = []
    original_info = backend.info
    backend.info = lambda name: looked_up.append(name) or original_info(name)
    chain = open_chain([("permissions", {"permissions": WRITE_NEW})], backend)
    assert not hasattr(chain, "store_new")
    chain.store("data/a", b"1")
    with pytest.raises(PermissionDenied, match="'W'"):
        chain.store("data/a", b"2")
    assert looked_up == ["data/a", "data/a"]
    assert backend.load("data/a") == b"1"


def test_list_temp_needs_l_on_the_directory_and_below():
    backend = MemoryBackend()
    chain = open_chain([("permissions", {"permissions": {"": "lrwW", "data/secret": "rw", "other": "rw"}})], backend)
    backend.store("data/a.tmp", b"x")
    backend.store("data/secret/b.tmp", b"x")
    assert [info.name for info in chain.list_temp("data/open")] == []
    with pytest.raises(PermissionDenied, match="'data/secret'"):
        chain.list_temp("data")
    with pytest.raises(PermissionDenied, match="'other'"):
        chain.list_temp("other")


# --- racing writers through the Store ---


def _name(round_number: int) -> str:
    return f"data/race{round_number:04d}"


def _value(racer: int, round_number: int, size: int) -> bytes:
    """*size* bytes, different for every racer and round."""
    text = f"racer {racer} round {round_number};".encode()
    return (text * (size // len(text) + 1))[:size]


def _attempt(store, name: str, value: bytes) -> str:
    """The outcome: "won", "refused" (PermissionDenied: the item exists), or the unexpected error."""
    try:
        store.store(name, value)
    except PermissionDenied:
        return "refused"
    except Exception as exc:  # reported by the assertion, with the round
        return f"{type(exc).__name__}: {exc}"
    return "won"


def _expect_one_winner_each(outcomes: dict, reader, size: int) -> None:
    """*outcomes*: round -> {racer: outcome}.  Each round: one winner, the rest refused, and the
    item holds the winner's value."""
    bad = {}
    for round_number, by_racer in sorted(outcomes.items()):
        winners = [racer for racer, outcome in by_racer.items() if outcome == "won"]
        others = {outcome for outcome in by_racer.values() if outcome != "won"}
        if len(winners) != 1 or others - {"refused"}:
            bad[round_number] = by_racer
        elif reader.load(_name(round_number)) != _value(winners[0], round_number, size):
            bad[round_number] = f"the item does not hold the winner's ({winners[0]}) value"
    shown = "; ".join(f"round {r}: {what}" for r, what in list(bad.items())[:5])
    assert not bad, f"{len(bad)} of {len(outcomes)} rounds did not have exactly one winner: {shown}"


def _race_in_threads(stores, rounds: int) -> dict:
    outcomes = {}
    # threads switch far more often than every 5 ms: racers interleave inside a call as
    # processes on several cores would
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for round_number in range(rounds):
            outcomes[round_number] = _race_round(stores, round_number)
    finally:
        sys.setswitchinterval(interval)
    return outcomes


def _race_round(stores, round_number: int) -> dict:
    barrier = threading.Barrier(len(stores), timeout=60)
    by_racer = {}
    name, values = _name(round_number), [_value(number, round_number, THREAD_VALUE) for number in range(len(stores))]

    def racer(number):
        barrier.wait()
        by_racer[number] = _attempt(stores[number], name, values[number])

    threads = [threading.Thread(target=racer, args=(number,)) for number in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return by_racer


def _new_store(url):
    store = Store(url, config=CONFIG, permissions=WRITE_NEW)
    store.create()
    return store


def test_write_new_writers_racing_in_threads_one_wins(url):
    """THREADS Stores on one location (memory and posixfs), with w but not W, store one new name
    at once, round after round: exactly one stores it, the others get PermissionDenied."""
    _new_store(url)
    stores = [Store(url, config=CONFIG, permissions=WRITE_NEW) for _ in range(THREADS)]
    for store in stores:
        store.open()
    try:
        outcomes = _race_in_threads(stores, rounds=300)
        _expect_one_winner_each(outcomes, stores[0], THREAD_VALUE)
    finally:
        for store in stores:
            store.close()


class LookThenStoreWindow(Middleware):
    """The chain before issue 9 (no store_new): permissions looks, then stores.  Its info() lets
    no racer go on until every racer has looked, so all of them find the name free: the race the
    old code lost, made certain instead of likely."""

    name = "look-window"

    def __init__(self, inner, racers):
        super().__init__(inner)
        self.racers = racers
        self.barrier = threading.Barrier(racers, timeout=60)

    @property
    def capabilities(self):
        return dataclasses.replace(self.inner.capabilities, store_new=False)

    def info(self, name):
        found = self.inner.info(name)
        self.barrier.wait()
        return found


def test_the_race_check_catches_look_then_store():
    """The check above has teeth: on the look-then-store path it reports rounds with several
    winners."""
    location = f"memory:race-{uuid.uuid4().hex}"
    window = LookThenStoreWindow(build_chain(MemoryBackend(location.partition(":")[2])), racers=THREADS)
    store = Store(backend=window, config=CONFIG, permissions=WRITE_NEW)
    store.create()
    with store:
        outcomes = _race_in_threads([store] * THREADS, rounds=3)
        with pytest.raises(AssertionError, match="3 of 3 rounds did not have exactly one winner"):
            _expect_one_winner_each(outcomes, store, THREAD_VALUE)
    assert all(list(by_racer.values()) == ["won"] * THREADS for by_racer in outcomes.values())


def _process_racer(url, number, rounds, barrier, results):
    """One racing process: its own Store on the shared location, one attempt per round."""
    store = Store(url, config=CONFIG, permissions=WRITE_NEW)
    store.open()
    try:
        for round_number in range(rounds):
            name, value = _name(round_number), _value(number, round_number, PROCESS_VALUE)
            barrier.wait()
            results.put((round_number, number, _attempt(store, name, value)))
    finally:
        store.close()


def test_write_new_writers_racing_in_processes_one_wins(file_backend, tmp_path):
    """PROCESSES processes (spawned, each its own Store on one posixfs directory), with w but not
    W, store one new name at once, round after round: exactly one stores it, the others get
    PermissionDenied."""
    url = f"file://{tmp_path}/store"
    _new_store(url)
    rounds = 100
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES, timeout=120)
    results = context.Queue()
    processes = [
        context.Process(target=_process_racer, args=(url, number, rounds, barrier, results))
        for number in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = {}
    try:
        for _ in range(rounds * PROCESSES):
            round_number, number, outcome = results.get(timeout=120)
            outcomes.setdefault(round_number, {})[number] = outcome
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    reader = Store(url, config=CONFIG)
    with reader:
        _expect_one_winner_each(outcomes, reader, PROCESS_VALUE)


# --- the kit's rules have teeth ---


class OverwritingStoreNew(MemoryBackend):
    """store_new that is a plain store."""

    def store_new(self, name, value):
        self.store(name, value)


class LookThenStoreNew(MemoryBackend):
    """store_new as a look and a store; every racer looks before any stores (the kit's racers
    all call it at once), so the race is lost for certain."""

    def __init__(self):
        super().__init__()
        self.looked = threading.Barrier(_backend_atomic.RACERS, timeout=60)

    def store_new(self, name, value):
        if self.info(name).exists:
            raise ObjectAlreadyExists(name)
        self.looked.wait()
        self.store(name, value)


class ShallowListTemp(MemoryBackend):
    """list_temp that looks into the directory itself only."""

    def list_temp(self, name):
        return (info for info in super().list_temp(name) if "/" not in info.name)


@pytest.mark.parametrize(
    "rule, broken",
    [
        ("store-new-creates", OverwritingStoreNew),
        ("store-new-races", LookThenStoreNew),
        ("list-temp-shows-temps", ShallowListTemp),
    ],
)
def test_the_kit_catches_a_broken_backend(rule, broken):
    with pytest.raises(ConformanceFailure) as excinfo:
        BACKEND_CHECKS[rule](broken(), "quick")
    assert excinfo.value.rule == rule


@pytest.mark.parametrize("rule", ["store-new-creates", "store-new-races", "list-temp-shows-temps"])
def test_the_rules_apply_only_where_the_operation_is(rule):
    """A backend without store_new (capability off) or without list_temp: not applicable."""

    class Without(MemoryBackend):
        def __getattribute__(self, name):
            if name == "list_temp":
                raise AttributeError(name)
            return super().__getattribute__(name)

    with pytest.raises(NotApplicable):
        BACKEND_CHECKS[rule](Without(store_new=False), "quick")
    BACKEND_CHECKS[rule](MemoryBackend(), "quick")
