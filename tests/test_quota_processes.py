"""The quota shared by writers in several processes on one posixfs store (docs/middleware.md
"quota": what holds between processes).

Each writer process opens its own Store with a quota on the same directory and stores equal
items until the quota has refused it several times; afterwards the bytes really stored are
compared with the limit, and ``quota.hid`` with the bytes really stored.
"""

import multiprocessing
import os
import threading
import time
import uuid

import pytest

from borgstore.backends.errors import BackendConnectionError, BackendError, QuotaExceeded
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware, optional_operation
from borgstore.middleware.quota import LOCK_NAME
from borgstore.store import Store, build_chain

CONFIG = {"data/": {"levels": [1]}}
ITEM = 1000  # bytes of every item: the largest item of the bound
LIMIT = 60 * ITEM
REFUSALS = 5  # a writer stops after this many QuotaExceeded
TIMEOUT = 120  # seconds for every writer to finish: only so that a hang fails instead of blocking


def writer(url, quota_options, number, start, results):
    """Store items until the quota refused REFUSALS times; put (number, items stored) on *results*."""
    store = Store(url, config=CONFIG, middleware=["stats", ("quota", quota_options)])
    stored = refused = 0
    with store:
        start.wait()
        while refused < REFUSALS:
            try:
                store.store(f"data/{number:02x}{stored + refused:06d}", b"x" * ITEM)
                stored += 1
            except QuotaExceeded:
                refused += 1
    results.put((number, stored))


def run_writers(tmp_path, processes, **quota_options):
    """Run *processes* writers on a fresh store; return (bytes stored, quota.hid, items per writer)."""
    url = f"file://{tmp_path}/store"
    Store(url, config=CONFIG).create()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    options = {"limit": LIMIT, **quota_options}
    workers = [context.Process(target=writer, args=(url, options, n, start, results)) for n in range(processes)]
    for worker in workers:
        worker.start()
    stored = dict(results.get(timeout=TIMEOUT) for _ in workers)
    for worker in workers:
        worker.join(timeout=TIMEOUT)
        assert worker.exitcode == 0
    reader = Store(url, config=CONFIG)
    with reader:
        total = sum(info.size for info in reader.list("data"))
    quota_file = int((tmp_path / "store" / "quota.hid").read_bytes())
    assert total == ITEM * sum(stored.values())  # every acknowledged store is there
    assert not (tmp_path / "store" / LOCK_NAME).exists()  # every lock was given back
    return total, quota_file, stored


@pytest.mark.parametrize("processes", [2, 4])
def test_persist_delta_0_writers_together_never_pass_the_limit(tmp_path, processes):
    """Each store reserves its bytes in quota.hid, under the store's lock, before writing them:
    the limit holds exactly, and the file counts exactly what is stored."""
    total, quota_file, stored = run_writers(tmp_path, processes, persist_delta=0)
    assert total == LIMIT  # not above; and equal items fill it completely
    assert quota_file == total


@pytest.mark.parametrize("processes", [2, 4])
def test_persist_delta_bounds_what_writers_add_unseen(tmp_path, processes):
    """Each writer adds at most persist_delta plus one item that the others have not seen: the
    store holds at most limit + (processes - 1) x (persist_delta + item), and quota.hid, updated
    under the lock, loses no writer's count."""
    persist_delta = 5 * ITEM
    total, quota_file, stored = run_writers(tmp_path, processes, persist_delta=persist_delta)
    assert total <= LIMIT + (processes - 1) * (persist_delta + ITEM)
    assert total >= LIMIT  # each writer went on until the quota refused it
    assert quota_file == total


# --- the lock in the store ---


def test_lock_left_by_a_dead_session_is_broken(tmp_path):
    """A lock item whose holder died stays unchanged; a session takes it as stale after
    lock_stale seconds of its own waiting, and goes on."""
    url = f"file://{tmp_path}/store"
    Store(url, config=CONFIG).create()
    (tmp_path / "store" / LOCK_NAME).write_bytes(b"4242 a-dead-session")
    store = Store(url, config=CONFIG, middleware=["stats", ("quota", {"limit": LIMIT, "lock_stale": 0.2})])
    started = time.monotonic()
    with store:
        store.store("data/00aa", b"x" * 10)
    assert time.monotonic() - started >= 0.2  # it did wait for the dead holder first
    assert not (tmp_path / "store" / LOCK_NAME).exists()
    assert (tmp_path / "store" / "quota.hid").read_bytes() == b"10"


def test_a_dead_sessions_lock_is_a_stale_temp(tmp_path):
    """The lock is a temp item: no listing shows it, and the stale temp clean-up removes it."""
    url = f"file://{tmp_path}/store"
    store = Store(url, config=CONFIG)
    store.create()
    lock = tmp_path / "store" / LOCK_NAME
    lock.write_bytes(b"4242 a-dead-session")
    an_hour_ago = time.time() - 3601
    os.utime(lock, (an_hour_ago, an_hour_ago))
    with store:
        assert LOCK_NAME not in [info.name for info in store.chain.list("")]
        assert store.remove_stale_temps() == 1
    assert not lock.exists()


def test_lock_stale_is_checked():
    with pytest.raises(ValueError, match="lock_stale"):
        Store("memory:", config=CONFIG, middleware=[("quota", {"limit": 1, "lock_stale": -1})])


# --- the same rules between sessions in one process, and the edges ---


def memory_url():
    return f"memory:quota-sessions-{uuid.uuid4().hex}"


def test_sessions_in_threads_with_persist_delta_0_keep_the_limit_exactly():
    """Four Stores on one memory store, one per thread: the memory backend has store_new, so
    the same lock and reservation apply."""
    url = memory_url()
    Store(url, config=CONFIG).create()
    stored = []

    def session(number):
        store = Store(url, config=CONFIG, middleware=[("quota", {"limit": 20 * ITEM, "persist_delta": 0})])
        count = refused = 0
        with store:
            while refused < REFUSALS:
                try:
                    store.store(f"data/{number:02x}{count + refused:06d}", b"x" * ITEM)
                    count += 1
                except QuotaExceeded:
                    refused += 1
        stored.append(count)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    raw = MemoryBackend(url.split(":", 1)[1])
    raw.open()
    assert sum(stored) == 20
    assert raw.load("quota.hid") == str(20 * ITEM).encode()


class FailsStores(Middleware):
    """Inside the quota: stores of names containing 'bad' fail after the quota reserved them."""

    def store(self, name, value):
        if "bad" in name:
            raise BackendError(f"store {name!r}: refused by the test")
        return self.inner.store(name, value)


def test_persist_delta_0_gives_a_failed_stores_reservation_back():
    url = memory_url()
    Store(url, config=CONFIG).create()
    backend = MemoryBackend(url.split(":", 1)[1])
    store = Store(
        backend=FailsStores(build_chain(backend)),
        config=CONFIG,
        middleware=[("quota", {"limit": 100, "persist_delta": 0})],
    )
    with store:
        store.store("data/00good", b"x" * 10)
        with pytest.raises(BackendError, match="refused by the test"):
            store.store("data/00bad", b"x" * 50)
        assert backend.load("quota.hid") == b"10"  # reserved as 60, given back to 10
        assert store.quota()["usage"] == 10
        store.store("data/00more", b"x" * 90)  # the 50 bytes are free again
        assert backend.load("quota.hid") == b"100"


def test_persist_delta_0_counts_anew_when_quota_hid_was_removed():
    """The PyPI Store removes quota.hid at open: the next reservation counts the store anew."""
    url = memory_url()
    store = Store(url, config=CONFIG, middleware=[("quota", {"limit": 100, "persist_delta": 0})])
    store.create()
    raw = MemoryBackend(url.split(":", 1)[1])
    raw.open()
    with store:
        store.store("data/00aa", b"x" * 30)
        raw.delete("quota.hid")
        store.store("data/00bb", b"x" * 20)
        assert raw.load("quota.hid") == b"50"
        with pytest.raises(QuotaExceeded):
            store.store("data/00cc", b"x" * 51)


class StoresWhileCounted(Middleware):
    """Inside the quota: once the quota's walk of the store has ended, *meanwhile* runs (another
    session's stores), before the walk's count is written."""

    def __init__(self, inner, meanwhile):
        super().__init__(inner)
        self.meanwhile = meanwhile

    @optional_operation
    def list_tree(self, name):
        yield from self.inner.list_tree(name)
        meanwhile, self.meanwhile = self.meanwhile, lambda: None
        meanwhile()


def fill(url, limit):
    """Store ITEM-sized items with a persist_delta=0 quota until it refuses one; return the count."""
    store = Store(url, config=CONFIG, middleware=[("quota", {"limit": limit, "persist_delta": 0})])
    stored = 0
    with store:
        with pytest.raises(QuotaExceeded):
            while True:
                store.store(f"data/ff{stored:06d}", b"x" * ITEM)
                stored += 1
    return stored


@pytest.mark.parametrize("missing", ["absent", "invalid"])
def test_a_count_made_while_another_session_wrote_quota_hid_is_not_written_over_it(missing):
    """A session that finds no valid quota.hid walks the store outside the lock; another session
    that wrote the file and stored meanwhile must not lose its reservations to the stale count."""
    url = memory_url()
    Store(url, config=CONFIG).create()
    raw = MemoryBackend(url.split(":", 1)[1])
    if missing == "invalid":
        raw.open()
        raw.store("quota.hid", b"not a number")
        raw.close()
    others = []
    walker = StoresWhileCounted(build_chain(raw), lambda: others.append(fill(url, 5 * ITEM)))
    store = Store(backend=walker, config=CONFIG, middleware=[("quota", {"limit": 5 * ITEM, "persist_delta": 0})])
    with store:
        assert others == [5]  # the other session filled the store while this one counted
        assert store.quota()["usage"] == 5 * ITEM
        with pytest.raises(QuotaExceeded):
            store.store("data/00aa", b"x" * ITEM)
    raw.open()
    assert raw.load("quota.hid") == str(5 * ITEM).encode()


class Recorder(Middleware):
    def __init__(self, inner):
        super().__init__(inner)
        self.names = []

    def store(self, name, value):
        self.names.append(name)
        return self.inner.store(name, value)


def test_without_store_new_there_is_no_lock_and_the_quota_still_works():
    """No exclusive create, no lock item: the quota file is read and written as before (what
    holds between processes then: docs/middleware.md)."""
    url = memory_url()
    Store(url, config=CONFIG).create()
    backend = MemoryBackend(url.split(":", 1)[1], store_new=False)
    recorder = Recorder(build_chain(backend))
    store = Store(backend=recorder, config=CONFIG, middleware=[("quota", {"limit": 15, "persist_delta": 0})])
    with store:
        store.store("data/00aa", b"x" * 10)
        with pytest.raises(QuotaExceeded):
            store.store("data/00bb", b"x" * 6)
    assert LOCK_NAME not in recorder.names
    assert recorder.names.count("quota.hid") >= 2
    backend.open()
    assert backend.load("quota.hid") == b"10"


class LosesLockReplies(Middleware):
    """Inside the quota: the first store_new of the lock is done, and its reply lost."""

    def __init__(self, inner):
        super().__init__(inner)
        self.lost = 0

    def store_new(self, name, value):
        self.inner.store_new(name, value)
        if name == LOCK_NAME and not self.lost:
            self.lost += 1
            raise BackendConnectionError(f"store_new {name!r}: the reply was lost", maybe_applied=True)


def test_a_lost_reply_while_taking_the_lock_is_resolved_by_looking(caplog):
    """The lock holds this session's token: it is taken (not left for lock_stale to break)."""
    url = memory_url()
    Store(url, config=CONFIG).create()
    backend = MemoryBackend(url.split(":", 1)[1])
    losing = LosesLockReplies(build_chain(backend))
    store = Store(backend=losing, config=CONFIG, middleware=[("quota", {"limit": 100, "persist_delta": 0})])
    with caplog.at_level("WARNING"):
        with store:
            store.store("data/00aa", b"x" * 7)
    assert losing.lost == 1
    assert not [record for record in caplog.records if "lock" in record.getMessage()]
    backend.open()
    assert backend.load("quota.hid") == b"7"
    assert list(backend.list_temp("")) == []
