"""The quota middleware: the limit, the usage count and its quota.hid file."""

import threading
import uuid

import pytest

from borgstore.backends.errors import QuotaExceeded
from borgstore.backends.memory import MemoryBackend
from borgstore.constants import QUOTA_STORE_NAME
from borgstore.middleware import OPERATIONS
from borgstore.middleware.quota import QuotaMiddleware
from borgstore.store import Store, build_chain

CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [1]}}


def memory_url():
    return f"memory:quota-{uuid.uuid4().hex}"


def raw(url):
    """An open view of the memory store *url* without any middleware."""
    backend = MemoryBackend(url.split(":", 1)[1])
    backend.open()
    return backend


def new_store(url, **kwargs):
    store = Store(url, config=CONFIG, **kwargs)
    store.create()
    return store


# --- options ---


@pytest.mark.parametrize("limit", [-1, 1.5, "10", True])
def test_bad_limit_is_rejected(limit):
    """A limit that is not an int >= 0 raises ValueError naming it, when the Store is made."""
    with pytest.raises(ValueError, match="limit"):
        Store("memory:", config=CONFIG, quota=limit)


def test_limit_is_required():
    with pytest.raises(TypeError):
        QuotaMiddleware(build_chain(MemoryBackend()))


# --- the limit ---


def test_store_up_to_the_limit_and_not_beyond():
    """Reaching the limit exactly is allowed; one byte more raises QuotaExceeded naming usage and limit."""
    store = new_store(memory_url(), quota=10)
    with store:
        store.store("data/aa", b"123456")
        store.store("data/bb", b"1234")
        assert store.quota() == {"limit": 10, "usage": 10}
        with pytest.raises(QuotaExceeded) as excinfo:
            store.store("data/cc", b"1")
        assert "10" in str(excinfo.value) and "11" in str(excinfo.value)
        assert not store.info("data/cc").exists
        assert store.quota()["usage"] == 10


def test_over_quota_store_leaves_the_store_unchanged():
    url = memory_url()
    store = new_store(url, quota=8)
    with store:
        store.store("data/aa", b"12345")
        with pytest.raises(QuotaExceeded):
            store.store("data/aa", b"123456789")  # an overwrite counts its growth: 5 -> 9
        assert store.load("data/aa") == b"12345"
        assert store.quota()["usage"] == 5
    assert raw(url).load("data/aa/aa") == b"12345"


def test_overwrite_counts_the_difference():
    store = new_store(memory_url(), quota=100)
    with store:
        store.store("data/aa", b"x" * 40)
        store.store("data/aa", b"x" * 70)
        assert store.quota()["usage"] == 70
        store.store("data/aa", b"x" * 10)
        assert store.quota()["usage"] == 10


def test_shrinking_overwrite_is_allowed_above_the_limit():
    """A store that would not grow the usage passes even if the usage is above the limit."""
    url = memory_url()
    with new_store(url) as store:
        store.store("data/aa", b"x" * 50)
    with Store(url, config=CONFIG, quota=20) as store:
        assert store.quota() == {"limit": 20, "usage": 50}
        store.store("data/aa", b"x" * 30)
        assert store.quota()["usage"] == 30
        with pytest.raises(QuotaExceeded):
            store.store("data/bb", b"x")


def test_delete_frees_its_bytes():
    store = new_store(memory_url(), quota=10)
    with store:
        store.store("data/aa", b"x" * 10)
        store.delete("data/aa")
        assert store.quota()["usage"] == 0
        store.store("data/bb", b"x" * 10)


def test_soft_delete_keeps_the_bytes_and_deleting_the_del_item_frees_them():
    store = new_store(memory_url(), quota=10)
    with store:
        store.store("data/aa", b"x" * 6)
        store.move("data/aa", delete=True)
        assert store.quota()["usage"] == 6
        with pytest.raises(QuotaExceeded):
            store.store("data/bb", b"x" * 5)
        store.delete("data/aa", deleted=True)
        assert store.quota()["usage"] == 0
        store.store("data/bb", b"x" * 10)


def test_move_replacing_a_target_frees_the_target():
    store = new_store(memory_url(), quota=100)
    with store:
        store.store("data/aa", b"x" * 10)
        store.store("data/bb", b"x" * 30)
        store.move("data/aa", "data/bb")
        assert store.quota()["usage"] == 10
        store.move("data/bb", "data/cc")  # to a new name: nothing changes
        assert store.quota()["usage"] == 10


def test_soft_delete_and_undelete_replacing_an_item_free_it():
    store = new_store(memory_url(), quota=100)
    with store:
        store.store("data/aa", b"x" * 10)
        store.move("data/aa", delete=True)
        store.store("data/aa", b"x" * 20)
        assert store.quota()["usage"] == 30
        store.move("data/aa", undelete=True)  # the 10-byte item replaces the 20-byte one
        assert store.quota()["usage"] == 10
        store.store("data/aa", b"x" * 5)  # replaces the 10 bytes: 5 in all
        store.store("data/bb", b"x" * 7)
        store.move("data/bb", delete=True)
        store.move("data/aa", "data/bb")
        store.move("data/bb", delete=True)  # the 5 bytes replace the older 7-byte bb.del
        assert store.quota()["usage"] == 5


def test_concurrent_stores_cannot_pass_the_limit_together():
    store = new_store(memory_url(), quota=1000)
    errors = []

    def writer(index):
        for i in range(30):
            try:
                store.store(f"data/{index:02x}{i:02x}", b"x" * 10)
            except QuotaExceeded as exc:
                errors.append(exc)

    with store:
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = sum(1 for _ in store.list("data"))
        assert stored == 100 and len(errors) == 50
        assert store.quota()["usage"] == 1000


# --- the quota file ---


def test_usage_survives_a_reopen(url):
    store = new_store(url, quota=10**6)
    with store:
        store.store("data/aa", b"x" * 123)
        store.store("config/c", b"x" * 7)
    with Store(url, config=CONFIG, quota=10**6) as store:
        assert store.quota()["usage"] == 130
        store.delete("config/c")
    with Store(url, config=CONFIG, quota=10**6) as store:
        assert store.quota()["usage"] == 123


def test_quota_file_is_written_as_the_pypi_posixfs_writes_it():
    """quota.hid in the root holds the usage as ASCII digits, no newline."""
    url = memory_url()
    store = new_store(url, quota=1000)
    with store:
        store.store("data/aa", b"x" * 40)
    assert raw(url).load(QUOTA_STORE_NAME) == b"40"


def test_quota_file_is_read_not_recomputed():
    """A valid quota.hid is trusted: its value is the usage, even if the items add up differently."""
    url = memory_url()
    with new_store(url) as store:
        store.store("data/aa", b"x" * 10)
    raw(url).store(QUOTA_STORE_NAME, b"777")
    with Store(url, config=CONFIG, quota=10**6) as store:
        assert store.quota()["usage"] == 777


@pytest.mark.parametrize("content", [None, b"", b"garbage", b"-5", b"12x"])
def test_missing_or_invalid_quota_file_triggers_a_rescan(content):
    """The rescan counts every item, soft-deleted ones and nested ones, but not quota.hid itself."""
    url = memory_url()
    with new_store(url) as store:
        store.store("data/aa", b"x" * 10)
        store.store("data/bb", b"x" * 20)
        store.move("data/bb", delete=True)
        store.store("config/c", b"x" * 3)
    if content is not None:
        raw(url).store(QUOTA_STORE_NAME, content)
    with Store(url, config=CONFIG, quota=10**6) as store:
        assert store.quota()["usage"] == 33
    assert raw(url).load(QUOTA_STORE_NAME) == b"33"


def test_rescan_without_soft_deletion_in_the_chain():
    """A chain without softdelete lists .del items plainly; they are counted once."""
    backend = MemoryBackend()
    backend.create()
    backend.open()
    backend.store("data/aa", b"x" * 4)
    backend.store("data/bb.del", b"x" * 5)
    backend.close()
    chain = build_chain(backend, [("quota", {"limit": 100})])
    chain.open()
    assert chain.quota() == {"limit": 100, "usage": 9}


def test_store_without_quota_leaves_the_quota_file_alone_and_rescan_recounts():
    """A session without quota makes no quota call (quota.hid stays as it was); rescan=True counts
    what such a session changed."""
    url = memory_url()
    with new_store(url, quota=1000) as store:
        store.store("data/aa", b"x" * 10)
    assert raw(url).load(QUOTA_STORE_NAME) == b"10"
    with Store(url, config=CONFIG) as store:
        store.store("data/bb", b"x" * 20)
    assert raw(url).load(QUOTA_STORE_NAME) == b"10"
    with Store(url, config=CONFIG, quota=1000) as store:
        assert store.quota()["usage"] == 10  # the file's figure: the untracked 20 bytes are missing
    with Store(url, config=CONFIG, middleware=[("quota", {"limit": 1000, "rescan": True})]) as store:
        assert store.quota()["usage"] == 30
    assert raw(url).load(QUOTA_STORE_NAME) == b"30"


def test_open_without_quota_makes_no_storage_call_beyond_the_backend_open():
    """Store.open() on a store without a quota calls the backend's open() and nothing else."""
    calls = []

    def recorded(op):
        def call(self, *args, **kwargs):
            calls.append(op)
            return getattr(MemoryBackend, op)(self, *args, **kwargs)

        return call

    # every operation of the contract but those that make or remove a store
    operations = [op for op in OPERATIONS if op not in ("create", "destroy")]
    Recording = type("Recording", (MemoryBackend,), {op: recorded(op) for op in operations})

    backend = Recording(memory_url().partition(":")[2])
    Store(backend=MemoryBackend(backend.name), config=CONFIG).create()
    store = Store(backend=backend, config=CONFIG)
    calls.clear()
    store.open()
    assert calls == ["open"]
    store.close()


def test_changes_are_persisted_at_flush_and_close_not_on_every_write():
    url = memory_url()
    with new_store(url, quota=10**6) as store:
        store.store("data/aa", b"x" * 10)
        assert raw(url).load(QUOTA_STORE_NAME) == b"0"  # written at open, not after each store
        store.flush()
        assert raw(url).load(QUOTA_STORE_NAME) == b"10"
        store.store("data/bb", b"x" * 5)
    assert raw(url).load(QUOTA_STORE_NAME) == b"15"


def test_changes_are_persisted_when_the_delta_threshold_is_reached():
    url = memory_url()
    store = new_store(url, middleware=["stats", ("quota", {"limit": 10**6, "persist_delta": 100})])
    with store:
        store.store("data/aa", b"x" * 60)
        assert raw(url).load(QUOTA_STORE_NAME) == b"0"
        store.store("data/bb", b"x" * 40)
        assert raw(url).load(QUOTA_STORE_NAME) == b"100"
        store.delete("data/aa")
        store.delete("data/bb")
        assert raw(url).load(QUOTA_STORE_NAME) == b"0"  # a large decrease counts as well


def test_changes_are_persisted_when_the_interval_passed(monkeypatch):
    import borgstore.middleware.quota as quota_module

    now = [1000.0]
    monkeypatch.setattr(quota_module.time, "monotonic", lambda: now[0])
    url = memory_url()
    with new_store(url, quota=10**6) as store:
        store.store("data/aa", b"x" * 10)
        assert raw(url).load(QUOTA_STORE_NAME) == b"0"
        now[0] += 299
        store.store("data/bb", b"x" * 10)
        assert raw(url).load(QUOTA_STORE_NAME) == b"0"
        now[0] += 1
        store.store("data/cc", b"x" * 10)
        assert raw(url).load(QUOTA_STORE_NAME) == b"30"


def test_sessions_sharing_a_store_add_up_their_changes():
    """Persisting applies this session's change to the file's value, so no session's writes are lost."""
    url = memory_url()
    new_store(url)
    first = Store(url, config=CONFIG, quota=10**6)
    second = Store(url, config=CONFIG, quota=10**6)
    with first, second:
        first.store("data/aa", b"x" * 10)
        second.store("data/bb", b"x" * 20)
        first.flush()
        second.flush()
        assert second.quota()["usage"] == 30
    assert raw(url).load(QUOTA_STORE_NAME) == b"30"


def test_quota_file_is_invisible_to_listings():
    url = memory_url()
    new_store(url)
    with Store(url, config={"": {"levels": [0]}, **CONFIG}, quota=1000) as store:
        store.store("top", b"1")
        assert [info.name for info in store.list("")] == ["top"]


def test_get_backend_with_quota_wraps_any_backend():
    from borgstore.store import get_backend

    chain = get_backend("memory:", quota=5)
    chain.create()
    chain.open()
    chain.store("data/a", b"12345")
    with pytest.raises(QuotaExceeded):
        chain.store("data/b", b"1")
    assert chain.quota() == {"limit": 5, "usage": 5}


def test_a_backend_that_reserves_hid_names_is_refused_at_open():
    """The quota keeps quota.hid in the store: over a backend whose storage refuses .hid names
    (a REST server of the PyPI protocol) it cannot work, and says so at open instead of failing
    at the first write; the backend is left closed."""
    import dataclasses

    from borgstore.backends.errors import BackendError

    class ReservesHid(MemoryBackend):
        def open(self):
            super().open()
            self.capabilities = dataclasses.replace(self.capabilities, reserved_suffixes=frozenset({".hid"}))

    backend = ReservesHid(f"quota-{uuid.uuid4().hex}")
    backend.create()
    chain = build_chain(backend, [("quota", {"limit": 100})])
    with pytest.raises(BackendError, match=r"quota\.hid.*set the quota on the server"):
        chain.open()
    assert not backend.opened
