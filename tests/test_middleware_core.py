"""stats and emulate, soft deletion as the Store does it, and the default chain."""

import pytest

from borgstore import build_chain, default_middleware
from borgstore.backends.errors import BackendError, ObjectNotFound
from borgstore.backends.memory import MemoryBackend
from borgstore.backends._base import Capabilities
from borgstore.middleware import BackendAdapter, Middleware
from borgstore.middleware._base import OPTIONAL_OPERATIONS
from borgstore.middleware.emulate import EmulateMiddleware
from borgstore.middleware.quota import QuotaMiddleware
from borgstore.middleware.stats import StatsMiddleware
from borgstore.store import Store

CONFIG = {"data/": {"levels": [1]}, "": {"levels": [0]}}
KEY = "ab" * 16


def open_chain(middleware):
    chain = build_chain(MemoryBackend(), middleware)
    chain.create()
    chain.open()
    return chain


def test_default_chain_reproduces_compat():
    """Without middleware=, a Store gets stats, plus permissions/quota when asked."""
    assert Store("memory:", config=CONFIG).middleware == ("stats",)
    s = Store("memory:", config=CONFIG, permissions={"": "lrwWD"}, quota=100)
    assert s.middleware == ("stats", "permissions", "quota")


def test_environment_adds_emulation(monkeypatch):
    """BORGSTORE_LATENCY (µs) and BORGSTORE_BANDWIDTH (bit/s) put emulate innermost in the default chain."""
    monkeypatch.setenv("BORGSTORE_LATENCY", "2500")
    monkeypatch.setenv("BORGSTORE_BANDWIDTH", "8000000")
    s = Store("memory:", config=CONFIG)
    assert s.middleware == ("stats", "emulate")
    emulate = s.chain.find_layer(EmulateMiddleware)
    assert emulate.latency == pytest.approx(0.0025) and emulate.bandwidth == 8_000_000


@pytest.mark.parametrize("value", ["fast", "-1"])
def test_bad_environment_is_named(monkeypatch, value):
    """A malformed BORGSTORE_LATENCY raises ValueError naming the variable."""
    monkeypatch.setenv("BORGSTORE_LATENCY", value)
    with pytest.raises(ValueError, match="BORGSTORE_LATENCY"):
        Store("memory:", config=CONFIG)


@pytest.mark.parametrize("options", [{"latency": -1}, {"bandwidth": "x"}, {"latency": True}])
def test_bad_emulate_options(options):
    """Invalid emulate options raise ValueError naming the option."""
    with pytest.raises(ValueError, match=next(iter(options))):
        build_chain(MemoryBackend(), [("emulate", options)])


def test_emulate_sleeps_for_latency_and_volume(monkeypatch):
    """emulate sleeps latency + volume/bandwidth minus the time the backend took, per call."""
    slept = []
    monkeypatch.setattr("borgstore.middleware.emulate.time.sleep", slept.append)
    chain = open_chain([("emulate", {"latency": 0.5, "bandwidth": 8000})])
    assert len(slept) == 2  # create() and open() are backend calls too
    slept.clear()
    chain.store("x", b"a" * 1000)  # 1000 bytes at 1000 bytes/s: 1 s, plus 0.5 s latency
    chain.info("x")
    assert slept[0] == pytest.approx(1.5, abs=0.01)
    assert slept[1] == pytest.approx(0.5, abs=0.01)
    assert isinstance(chain.find_layer(EmulateMiddleware), EmulateMiddleware)


def test_stats_counts_every_call_and_directory():
    """stats counts each call that reaches it, failed ones too, and one list per directory."""
    s = Store("memory:", config=CONFIG, backend_options={"list_tree": False})
    s.create()
    with s:
        s.store("data/" + KEY, b"12345")
        s.store("data/" + "cd" * 16, b"1")
        with pytest.raises(ObjectNotFound):
            s.load("data/" + "ef" * 16)
        list(s.list("data"))
        stats = s.stats
    assert stats["store_calls"] == 2 and stats["store_volume"] == 6
    assert stats["load_calls"] == 1 and stats["load_volume"] == 0
    assert stats["list_calls"] == 3  # data/, data/ab, data/cd
    # without a cache, what reached the backend is what passed the stats layer
    assert stats["backend_store_calls"] == 2 and stats["backend_store_volume"] == 6
    assert stats["backend_load_calls"] == 1


def test_stats_counts_one_list_for_a_tree_listing():
    """On a backend with list_tree, listing a nested namespace is one list call."""
    s = Store("memory:", config=CONFIG)
    s.create()
    with s:
        for i in range(20):
            s.store(f"data/{i:02x}" + KEY[2:], b"x")
        assert len(list(s.list("data"))) == 20
        assert s.stats["list_calls"] == 1


def test_every_compat_stats_key_is_always_there():
    """Store.stats has every key COMPAT lists, also without a stats or cache layer."""
    keys = {
        f"{op}_{what}"
        for op in ("info", "load", "store", "delete", "move", "list", "gather")
        for what in ("calls", "time")
    }
    keys |= {f"{op}_{what}" for op in ("load", "store", "gather") for what in ("volume", "throughput")}
    keys |= {f"backend_{op}_calls" for op in ("load", "gather", "store", "delete")}
    keys |= {f"backend_{op}_volume" for op in ("load", "gather", "store")}
    keys |= {"cache_disabled", "cache_hits", "cache_misses", "cache_hit_ratio", "cache_errors", "cache_load_calls"}
    keys |= {"cache_store_calls", "cache_delete_calls", "cache_load_volume", "cache_store_volume"}
    for middleware in (None, [], ["emulate"]):
        stats = Store("memory:", config=CONFIG, middleware=middleware).stats
        assert keys <= set(stats), keys - set(stats)
        assert stats["cache_disabled"] is False and stats["backend_delete_calls"] == 0


def test_soft_deletion_is_a_move_every_layer_sees():
    """The Store soft-deletes by a move to <name>.del in the same directory; layers see that move."""
    calls = []

    class Recorder(Middleware):
        def move(self, curr_name, new_name):
            calls.append((curr_name, new_name))
            return self.inner.move(curr_name, new_name)

    backend = MemoryBackend()
    s = Store(backend=Recorder(BackendAdapter(backend)), config=CONFIG)
    s.create()
    with s:
        s.store("data/" + KEY, b"x")
        s.move("data/" + KEY, delete=True)
        assert [i.name for i in backend.list("data/ab")] == [KEY + ".del"]
        assert [i.name for i in s.list("data")] == []
        assert [i.name for i in s.list("data", deleted=True)] == [KEY]
        assert s.load("data/" + KEY, deleted=True) == b"x"
        s.move("data/" + KEY, undelete=True)
        assert [i.name for i in backend.list("data/ab")] == [KEY]
    assert calls == [(f"data/ab/{KEY}", f"data/ab/{KEY}.del"), (f"data/ab/{KEY}.del", f"data/ab/{KEY}")]


def test_softdelete_in_a_middleware_list_is_refused():
    """Naming the former softdelete middleware raises ValueError saying that the Store does it."""
    with pytest.raises(ValueError, match="soft deletion is part of the Store"):
        Store("memory:", config=CONFIG, middleware=["stats", "softdelete"])


def test_middleware_is_found_by_type():
    """find_layer takes a class: no layer is found by a name string."""
    s = Store("memory:", config=CONFIG, quota=10)
    assert isinstance(s.chain.find_layer(QuotaMiddleware), QuotaMiddleware)
    assert s.chain.find_layer(EmulateMiddleware) is None


def test_default_middleware_is_a_list_of_names():
    """default_middleware() tells the default chain as data the application can edit."""
    assert default_middleware() == ["stats"]


def test_cache_sits_outside_emulation(monkeypatch):
    """A cached namespace puts the cache just outside emulate, so cache hits are not slowed."""
    monkeypatch.setenv("BORGSTORE_LATENCY", "1")
    s = Store("memory:", config={"data/": {"levels": [1], "cache": "writethrough"}}, cache_url="memory:")
    assert s.middleware == ("stats", "cache", "emulate")
    assert "cache_hits" in s.stats


def test_stats_list_time_counted_when_abandoned_and_reset():
    """A listing stopped early still adds its time; reset() starts from zero."""
    s = Store("memory:", config=CONFIG)
    s.create()
    with s:
        for i in range(3):
            s.store(f"data/{i:02x}" + KEY[2:], b"x")
        items = s.list("data")
        next(items)
        items.close()
        stats = s.stats
        assert stats["list_calls"] >= 1 and stats["list_time"] > 0
        s.chain.find_layer(StatsMiddleware).reset()
        assert all(not value for value in s.stats.values())


def test_a_key_ending_in_a_dot_can_be_soft_deleted():
    """The valid key '0.' soft-deleted is '0..del' on the backend: '..' inside a component is fine."""
    s = Store("memory:", config={"data/": {"levels": [0]}})
    s.create()
    with s:
        s.store("data/0.", b"dot")
        s.move("data/0.", delete=True)
        assert s.find("data/0.", deleted=True) == "data/0." and s.backend.info("data/0..del").exists
        assert s.load("data/0.", deleted=True) == b"dot"
        s.move("data/0.", undelete=True)
        assert s.load("data/0.") == b"dot"


def test_cache_named_twice_is_refused():
    """A config asking for a cache and a middleware list naming 'cache' too: ValueError."""
    with pytest.raises(ValueError, match="cache"):
        Store(
            "memory:",
            config={"data/": {"levels": [1], "cache": "mirror"}},
            cache_url="memory:",
            middleware=["stats", "cache"],
        )


def test_memory_tells_a_directory_from_a_missing_item():
    """load/delete of a directory find no item (ObjectNotFound saying so); rmdir of an item is a
    conflict (BackendError, nothing removed)."""
    backend = MemoryBackend()
    backend.create()
    with backend:
        backend.store("dir/item", b"x")
        for call in (lambda: backend.load("dir"), lambda: backend.delete("dir")):
            with pytest.raises(ObjectNotFound, match="a directory"):
                call()
        with pytest.raises(BackendError) as excinfo:
            backend.rmdir("dir/item")
        assert not isinstance(excinfo.value, ObjectNotFound)
        with pytest.raises(ObjectNotFound):
            backend.load("dir/item/below")
        assert backend.load("dir/item") == b"x"


def _shipped_middleware_classes() -> dict:
    """name -> class of every middleware the borgstore distribution registers."""
    from borgstore import _plugins

    return {
        name: _plugins.middleware_factory(name)
        for name, provided in _plugins.middlewares().items()
        if provided.distribution == "borgstore"
    }


def test_every_middleware_that_overrides_store_overrides_store_new():
    """A store_new passed straight through would bypass what the layer does to a store (the
    quota's count, the cache's copy, the permissions' check): each shipped middleware that
    overrides store overrides store_new too, and likewise list_temp where it overrides list."""
    classes = _shipped_middleware_classes()
    assert {"stats", "permissions", "quota", "cache", "emulate", "readonly"} <= set(classes)
    for name, cls in classes.items():
        if cls.store is not Middleware.store:
            assert cls.store_new is not Middleware.store_new, f"{name} overrides store but not store_new"
        if cls.list is not Middleware.list:
            assert cls.list_temp is not Middleware.list_temp, f"{name} overrides list but not list_temp"


class _NoOptionalOperations(MemoryBackend):
    """A backend with neither store_new nor list_temp nor list_tree (as one written for the
    PyPI package)."""

    def __init__(self):
        super().__init__(list_tree=False)
        self.capabilities = Capabilities(thread_safe=True)

    def __getattribute__(self, name):
        if name in ("store_new", "list_temp"):
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.mark.parametrize("name", ["stats", "permissions", "emulate"])
def test_an_optional_operation_exists_on_a_link_only_where_the_next_link_has_it(name):
    """hasattr(chain, "list_temp") is how the Store learns whether the backend can list temp
    items: a middleware that overrides an optional operation has it only where the backend does."""
    options = {"permissions": {"permissions": {"": "lrw"}}}.get(name, {})
    cls = _shipped_middleware_classes()[name]
    assert all(getattr(cls, op) is not getattr(Middleware, op) for op in OPTIONAL_OPERATIONS)
    without = build_chain(_NoOptionalOperations(), [(name, options)])
    assert [op for op in OPTIONAL_OPERATIONS if hasattr(without, op)] == []
    with_them = build_chain(MemoryBackend(), [(name, options)])
    assert [op for op in OPTIONAL_OPERATIONS if hasattr(with_them, op)] == list(OPTIONAL_OPERATIONS)
    with_them.create()
    with_them.open()
    with_them.store_new("data/x.tmp", b"left behind")
    assert [info.name for info in with_them.list_temp("")] == ["data/x.tmp"]


def test_optional_overrides_of_quota_and_cache_follow_the_backend():
    """quota and cache override store_new only: without it in the backend they have none either."""
    cache = {"cache": MemoryBackend(), "policies": {}}
    for name, options in (("quota", {"limit": 100}), ("cache", cache)):
        assert not hasattr(build_chain(_NoOptionalOperations(), [(name, options)]), "store_new"), name
        assert hasattr(build_chain(MemoryBackend(), [(name, options)]), "store_new"), name
