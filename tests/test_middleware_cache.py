"""The cache middleware: a second backend with copies of items, in mirror or writethrough mode."""

import logging
import threading
import uuid

import pytest

from borgstore.middleware.cache import CacheMiddleware
from borgstore.backends.errors import BackendError, ObjectNotFound, ReadRangeError
from borgstore.backends.memory import MemoryBackend
from borgstore.store import Store, build_chain

KEY = "0123456789abcdef"
KEY2 = "fedcba9876543210"
NESTED = f"data/01/{KEY}"  # where KEY lives at level 1, in the primary and in the cache
NESTED2 = f"data/fe/{KEY2}"


def memory_name():
    return f"cache-{uuid.uuid4().hex}"


def raw(location):
    """An open view of the memory store *location* without any middleware."""
    backend = MemoryBackend(location)
    backend.open()
    return backend


def config(mode="writethrough", **limits):
    return {"config/": {"levels": [0]}, "data/": {"levels": [1], "cache": mode, **limits}}


class Setup:
    """A store on memory:<primary> with its cache on memory:<cache>, created and open."""

    def __init__(self, mode="writethrough", **limits):
        self.primary_name, self.cache_name = memory_name(), memory_name()
        self.config = config(mode, **limits)
        self.store = self.new_store()
        self.store.create()
        self.store.open()
        self.primary = raw(self.primary_name)
        self.cache = raw(self.cache_name)

    def new_store(self, **kwargs):
        return Store(f"memory:{self.primary_name}", config=self.config, cache_url=f"memory:{self.cache_name}", **kwargs)

    @property
    def layer(self):
        return self.store.chain.find_layer(CacheMiddleware)

    def cached(self, name):
        return self.cache.load(name) if self.cache.info(name).exists else None


@pytest.fixture
def wt():
    setup = Setup("writethrough")
    yield setup
    setup.store.close()


@pytest.fixture
def mirror():
    setup = Setup("mirror")
    yield setup
    setup.store.close()


# --- set-up ---


def test_cache_is_innermost_and_only_for_configured_namespaces(wt):
    assert wt.store.middleware[-1] == "cache"
    wt.store.store("config/c", b"conf")
    wt.store.store(f"data/{KEY}", b"value")
    assert wt.cached("config/c") is None
    assert wt.cached(NESTED) == b"value"


def test_create_and_destroy_include_the_cache():
    setup = Setup()
    assert setup.cache.info("").exists
    setup.store.close()
    setup.store.destroy()
    for location in (setup.primary_name, setup.cache_name):
        with pytest.raises(BackendError):
            MemoryBackend(location).open()


def test_create_fails_before_touching_the_primary_if_the_cache_location_is_in_use():
    primary, cache = memory_name(), memory_name()
    used = MemoryBackend(cache)
    used.create()
    used.open()
    used.store("x", b"1")
    store = Store(f"memory:{primary}", config=config(), cache_url=f"memory:{cache}")
    with pytest.raises(BackendError):
        store.create()
    with pytest.raises(BackendError):
        MemoryBackend(primary).open()  # not created


def test_cache_open_failure_disables_the_cache_with_a_warning(caplog):
    primary, cache = memory_name(), memory_name()
    Store(f"memory:{primary}", config={"data/": {"levels": [1]}}).create()  # the cache location was never created
    store = Store(f"memory:{primary}", config=config(), cache_url=f"memory:{cache}")
    with caplog.at_level(logging.WARNING, logger="borgstore.middleware.cache"):
        store.open()
    assert "cannot open" in caplog.text
    layer = store.chain.find_layer(CacheMiddleware)
    assert layer.snapshot()["cache_disabled"] is True
    store.store(f"data/{KEY}", b"value")
    assert store.load(f"data/{KEY}") == b"value"
    assert layer.snapshot()["cache_store_calls"] == 0
    store.close()


def test_bad_policy_is_rejected():
    from borgstore._config import CachePolicy

    with pytest.raises(ValueError, match="mode"):
        build_chain(
            MemoryBackend(), [("cache", {"cache": MemoryBackend(), "policies": {"data": CachePolicy("off", 0, 0)}})]
        )
    with pytest.raises(ValueError, match="size"):
        build_chain(
            MemoryBackend(), [("cache", {"cache": MemoryBackend(), "policies": {"data": CachePolicy("mirror", 0, -1)}})]
        )


# --- mirroring changes ---


def test_store_delete_move_are_mirrored(wt):
    wt.store.store(f"data/{KEY}", b"value")
    assert wt.cached(NESTED) == b"value"
    wt.store.store(f"data/{KEY}", b"newer")
    assert wt.cached(NESTED) == b"newer"
    wt.store.move(f"data/{KEY}", f"data/{KEY2}")
    assert wt.cached(NESTED) is None and wt.cached(NESTED2) == b"newer"
    wt.store.delete(f"data/{KEY2}")
    assert wt.cached(NESTED2) is None


def test_store_new_is_cached_like_a_store_unless_the_item_exists(wt):
    """A store_new that stores fills the cache as a store does; one that finds an item
    (ObjectAlreadyExists) caches nothing: the cached copy stays the item's value."""
    from borgstore.backends.errors import ObjectAlreadyExists

    chain = wt.store.chain
    chain.store_new(NESTED, b"value")
    assert wt.cached(NESTED) == b"value"
    with pytest.raises(ObjectAlreadyExists):
        chain.store_new(NESTED, b"refused")
    assert wt.cached(NESTED) == b"value" and wt.primary.load(NESTED) == b"value"
    wt.primary.store(NESTED2, b"by another client")
    with pytest.raises(ObjectAlreadyExists):
        chain.store_new(NESTED2, b"refused")
    assert wt.cached(NESTED2) is None
    assert wt.layer.snapshot()["backend_store_calls"] == 1  # the store_new that stored


def test_move_onto_a_cached_target_drops_its_old_copy(wt):
    wt.store.store(f"data/{KEY2}", b"old target")
    wt.store.store("config/c", b"from elsewhere")
    wt.store.move("config/c", f"data/{KEY2}")
    assert wt.cached(NESTED2) is None
    assert wt.store.load(f"data/{KEY2}") == b"from elsewhere"


def test_soft_delete_and_undelete_are_mirrored_as_renames(wt):
    wt.store.store(f"data/{KEY}", b"value")
    wt.store.move(f"data/{KEY}", delete=True)
    assert wt.cached(NESTED) is None and wt.cached(NESTED + ".del") == b"value"
    wt.primary.store(NESTED + ".del", b"changed behind the cache's back")
    assert wt.store.load(f"data/{KEY}", deleted=True) == b"value"  # served by the cache
    wt.store.move(f"data/{KEY}", undelete=True)
    assert wt.cached(NESTED) == b"value" and wt.cached(NESTED + ".del") is None


def test_cache_errors_are_logged_and_counted_never_raised(wt, caplog):
    class Broken(Exception):
        pass

    def fail(*args, **kwargs):
        raise Broken("cache disk full")

    wt.store.store(f"data/{KEY2}", b"cached")
    cache_link = wt.layer.cache
    cache_link.store = fail
    cache_link.move = fail
    with caplog.at_level(logging.WARNING, logger="borgstore.middleware.cache"):
        wt.store.store(f"data/{KEY}", b"value")
        wt.store.move(f"data/{KEY2}", "data/cafe")
    assert wt.primary.load(NESTED) == b"value"
    assert wt.primary.load("data/ca/cafe") == b"cached"
    assert wt.layer.snapshot()["cache_errors"] == 2
    assert "cache disk full" in caplog.text
    # nothing stale stays behind: both items now come from the primary
    assert wt.store.load("data/cafe") == b"cached"
    assert wt.cached(NESTED2) is None


# --- loading ---


def test_writethrough_serves_hits_from_the_cache(wt):
    wt.store.store(f"data/{KEY}", b"0123456789")
    wt.primary.store(NESTED, b"CHANGED!!!")  # behind the cache's back, to see who answers
    assert wt.store.load(f"data/{KEY}") == b"0123456789"
    assert wt.store.load(f"data/{KEY}", offset=2, size=3) == b"234"
    assert wt.store.load(f"data/{KEY}", offset=-2) == b"89"
    stats = wt.layer.snapshot()
    assert stats["cache_hits"] == 3 and stats["cache_misses"] == 0 and stats["cache_hit_ratio"] == 1.0


def test_writethrough_miss_loads_all_from_the_primary_and_fills_the_cache(wt):
    wt.primary.store(NESTED, b"0123456789")
    assert wt.store.load(f"data/{KEY}", offset=3, size=4) == b"3456"
    assert wt.cached(NESTED) == b"0123456789"
    wt.primary.store(NESTED, b"CHANGED!!!")
    assert wt.store.load(f"data/{KEY}", offset=-3) == b"789"
    stats = wt.layer.snapshot()
    assert (stats["cache_misses"], stats["cache_hits"]) == (1, 1)


def test_store_stats_tell_what_reached_the_backend(wt):
    """Store.stats: load_calls counts every load, backend_load_calls only those the cache missed."""
    wt.store.store(f"data/{KEY}", b"0123456789")
    wt.store.load(f"data/{KEY}")
    wt.store.load(f"data/{KEY}", size=2)
    wt.store.delete(f"data/{KEY}")
    stats = wt.store.stats
    assert stats["load_calls"] == 2 and stats["backend_load_calls"] == 0 and stats["cache_hits"] == 2
    assert stats["backend_store_calls"] == 1 and stats["backend_store_volume"] == 10
    assert stats["backend_delete_calls"] == 1 and stats["store_calls"] == 1
    wt.primary.store(NESTED, b"abc")  # a miss goes to the backend
    assert wt.store.load(f"data/{KEY}") == b"abc"
    stats = wt.store.stats
    assert stats["backend_load_calls"] == 1 and stats["backend_load_volume"] == 3


def test_writethrough_miss_of_a_missing_item_raises_and_caches_nothing(wt):
    with pytest.raises(ObjectNotFound):
        wt.store.load(f"data/{KEY}")
    assert wt.cached(NESTED) is None


def test_writethrough_copes_with_an_item_gone_from_the_cache(wt):
    wt.store.store(f"data/{KEY}", b"value")
    wt.cache.delete(NESTED)
    assert wt.store.load(f"data/{KEY}") == b"value"
    assert wt.cached(NESTED) == b"value"


def test_mirror_never_reads_the_cache_but_fills_it(mirror):
    mirror.store.store(f"data/{KEY}", b"value")
    assert mirror.cached(NESTED) == b"value"
    mirror.primary.store(NESTED, b"primary!")
    assert mirror.store.load(f"data/{KEY}", offset=1, size=3) == b"rim"
    assert mirror.cached(NESTED) == b"primary!"
    assert mirror.layer.snapshot()["cache_load_calls"] == 0


def test_gather_reads_ranges_through_the_cache(wt):
    wt.store.store(f"data/{KEY}", b"0123456789")
    wt.primary.store(NESTED, b"CHANGED!!!")
    assert wt.store.gather([(KEY, 0, 2), (KEY, 8, 2), (KEY, 5, 0)], namespace="data") == b"0189"
    with pytest.raises(ReadRangeError):
        wt.store.gather([(KEY, 8, 5)], namespace="data")


def test_list_info_and_hash_bypass_the_cache(wt):
    wt.store.store(f"data/{KEY}", b"value")
    wt.cache.store(NESTED2, b"only in the cache")
    wt.primary.store(NESTED, b"changed")
    assert [info.name for info in wt.store.list("data")] == [KEY]
    assert wt.store.info(f"data/{KEY}").size == 7
    import hashlib

    assert wt.store.hash(f"data/{KEY}") == hashlib.sha256(b"changed").hexdigest()


# --- limits ---


def test_size_limit_evicts_the_least_recently_used():
    setup = Setup(size=25)
    store = setup.store
    for key in ("aa01", "bb01"):
        store.store(f"data/{key}", b"x" * 10)
    store.load("data/aa01")  # aa01 is now the most recently used
    store.store("data/cc01", b"x" * 10)
    assert setup.cached("data/bb/bb01") is None
    assert setup.cached("data/aa/aa01") is not None and setup.cached("data/cc/cc01") is not None
    assert setup.layer.usage()["data"] == (2, 20)
    store.close()


def test_an_item_larger_than_the_size_limit_is_not_cached():
    setup = Setup(size=8)
    setup.store.store(f"data/{KEY}", b"small")
    setup.store.store(f"data/{KEY}", b"much too large")
    assert setup.cached(NESTED) is None  # the older small copy went as well
    assert setup.store.load(f"data/{KEY}") == b"much too large"
    setup.store.close()


def test_max_age_expires_items_not_used_for_longer(monkeypatch):
    import borgstore.middleware.cache as cache_module

    now = [1_000_000.0]
    monkeypatch.setattr(cache_module.time, "time", lambda: now[0])
    setup = Setup(max_age=60)
    setup.store.store(f"data/{KEY}", b"value")
    setup.primary.store(NESTED, b"newer")
    now[0] += 50
    assert setup.store.load(f"data/{KEY}") == b"value"  # used 50 s ago: still fresh
    now[0] += 59
    assert setup.store.load(f"data/{KEY}") == b"value"  # the last use counts, not the store
    now[0] += 61
    assert setup.store.load(f"data/{KEY}") == b"newer"  # expired: loaded again from the primary
    assert setup.cached(NESTED) == b"newer"
    setup.store.close()


def test_the_cache_contents_survive_a_reopen():
    setup = Setup()
    setup.store.store(f"data/{KEY}", b"value")
    setup.store.close()
    setup.primary.store(NESTED, b"changed")
    with setup.new_store() as store:
        assert store.load(f"data/{KEY}") == b"value"
        assert store.chain.find_layer(CacheMiddleware).snapshot()["cache_hits"] == 1


def test_reopen_applies_the_size_limit_to_what_it_finds():
    setup = Setup()
    for key in ("aa01", "bb01", "cc01"):
        setup.store.store(f"data/{key}", b"x" * 10)
    setup.store.close()
    setup.config = config(size=20)
    with setup.new_store() as store:
        assert store.chain.find_layer(CacheMiddleware).usage()["data"] == (2, 20)
    assert setup.cached("data/aa/aa01") is None  # the oldest went


def test_invalidate_drops_items():
    setup = Setup()
    setup.store.store(f"data/{KEY}", b"value")
    setup.store.store(f"data/{KEY2}", b"value2")
    setup.layer.invalidate(NESTED)
    assert setup.cached(NESTED) is None and setup.cached(NESTED2) == b"value2"
    setup.layer.invalidate("data")
    assert setup.cached(NESTED2) is None
    setup.store.close()


# --- chains and threads ---


def test_a_chain_can_be_the_cache():
    """The cache may itself be a chain, e.g. with its own middleware."""
    from borgstore._config import CachePolicy

    cache_backend = MemoryBackend()
    cache_chain = build_chain(cache_backend, ["stats"])
    primary = MemoryBackend()
    chain = build_chain(
        primary, [("cache", {"cache": cache_chain, "policies": {"data": CachePolicy("writethrough", 0, 0)}})]
    )
    chain.create()
    chain.open()
    chain.store("data/aa", b"value")
    assert chain.load("data/aa") == b"value"
    assert cache_chain.snapshot()["store_calls"] == 1 and cache_chain.snapshot()["load_calls"] == 1
    chain.close()


def test_concurrent_writers_and_readers_leave_the_cache_equal_to_the_primary(wt):
    keys = [f"{i:02x}00" for i in range(4)]

    def work(worker):
        for round in range(25):
            for key in keys:
                if (round + worker) % 2:
                    wt.store.store(f"data/{key}", f"{worker}-{round}".encode())
                else:
                    try:
                        wt.store.load(f"data/{key}")
                    except ObjectNotFound:
                        pass

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key in keys:
        nested = f"data/{key[:2]}/{key}"
        assert wt.cached(nested) == wt.primary.load(nested)


def test_a_slow_load_cannot_put_an_older_value_into_the_cache_than_a_concurrent_store():
    """A load that read the old value before a store of the same item must not fill the cache
    with it after the store filled in the new value."""
    loaded, resume = threading.Event(), threading.Event()

    class PausingBackend(MemoryBackend):
        pause = False

        def load(self, name, **kwargs):
            data = super().load(name, **kwargs)
            if self.pause:
                self.pause = False
                loaded.set()
                resume.wait(5)
            return data

    primary = PausingBackend()
    store = Store(backend=primary, config=config(), cache_backend=MemoryBackend())
    store.create()
    with store:
        store.store(f"data/{KEY}", b"old")
        store.chain.find_layer(CacheMiddleware).invalidate()
        primary.pause = True
        reader = threading.Thread(target=store.load, args=(f"data/{KEY}",))
        reader.start()
        assert loaded.wait(5)
        writer = threading.Thread(target=store.store, args=(f"data/{KEY}", b"new"))
        writer.start()
        writer.join(0.2)  # with the item's lock held by the reader, the writer waits
        resume.set()
        reader.join()
        writer.join()
        assert store.load(f"data/{KEY}") == b"new"
        assert store.chain.find_layer(CacheMiddleware).cache.load(NESTED) == b"new"


def test_refused_stores_never_reach_the_cache():
    """A store refused by quota or permissions (outside the cache) leaves the cache as it was."""
    from borgstore.backends.errors import PermissionDenied, QuotaExceeded

    setup = Setup()
    setup.store.store(f"data/{KEY}", b"value")
    setup.store.close()
    limited = setup.new_store(quota=8, permissions={"": "lrwW", "data/fe": "lr"})
    with limited:
        with pytest.raises(QuotaExceeded):
            limited.store(f"data/{KEY}", b"much more than eight bytes")
        with pytest.raises(PermissionDenied):
            limited.store(f"data/{KEY2}", b"x")
    assert setup.cached(NESTED) == b"value" and setup.cached(NESTED2) is None


def test_cache_on_each_backend_kind_survives_a_reopen(url):
    """The cache location may be any backend; what it holds is found again at the next open."""
    primary = memory_name()
    store = Store(f"memory:{primary}", config=config(), cache_url=url)
    store.create()
    with store:
        store.store(f"data/{KEY}", b"value")
        store.move(f"data/{KEY}", delete=True)
        store.store(f"data/{KEY2}", b"value2")
    raw(primary).store(NESTED2, b"changed")
    with Store(f"memory:{primary}", config=config(), cache_url=url) as store:
        layer = store.chain.find_layer(CacheMiddleware)
        assert layer.usage()["data"] == (2, 11)  # data/fe/fedc... and data/01/0123....del
        assert store.load(f"data/{KEY2}") == b"value2"
        assert store.load(f"data/{KEY}", deleted=True) == b"value"
        assert layer.snapshot()["cache_hits"] == 2


def test_items_being_written_are_never_served_from_the_cache(wt):
    """A ``.tmp`` item (a lock or a write in progress of another session) is read from the primary
    every time: a stale copy of another session's lock would be taken for the current one."""
    temp = f"data/01/{KEY}.lock.tmp"
    wt.store.chain.store(temp, b"token one")
    assert wt.cached(temp) is None
    wt.primary.store(temp, b"token two")  # another session replaced it
    assert wt.store.chain.load(temp) == b"token two"
