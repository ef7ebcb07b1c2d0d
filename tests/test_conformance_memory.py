"""The memory backend, alone and inside every shipped middleware, passes the conformance kit (and
its state machines under the faults profile); the middleware that changes behaviour on purpose
is checked for exactly that change."""

import time
import uuid

import pytest

from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware
from borgstore.store import Store, build_chain
from borgstore.testing import TRANSPARENT_MIDDLEWARE, BackendTests, StoreTests, store_chain_with
from borgstore.testing._settings import example_profile


def _memory_url():
    return f"memory:conformance-{uuid.uuid4().hex}"


@pytest.fixture(params=[True, False], ids=["list_tree", "per-directory"])
def list_tree(request):
    """The memory backend both ways: with list_tree (as an object store) and without (as posix)."""
    return request.param


class TestMemoryBackend(BackendTests):
    @pytest.fixture
    def backend(self, list_tree):
        return MemoryBackend(list_tree=list_tree)


class TestMemoryStore(StoreTests):
    """Store.list() takes the list_tree stream on one, the walk per directory on the other."""

    @pytest.fixture
    def store_location(self, list_tree):
        name = _memory_url().partition(":")[2]
        return lambda: MemoryBackend(name, list_tree=list_tree)


def test_state_machines_under_faults(list_tree):
    """Under the faults profile (the retry middleware around injected faults), the backend and
    Store state machines pass, run through the test classes' profile switch."""

    class BackendUnderFaults(BackendTests):
        conformance_profile = "faults"
        quick_overrides = {"max_examples": 25}

    class StoreUnderFaults(StoreTests):
        conformance_profile = "faults"
        quick_overrides = {"max_examples": 25}

    BackendUnderFaults().test_state_machine(MemoryBackend(list_tree=list_tree))
    name = _memory_url().partition(":")[2]
    StoreUnderFaults().test_store_state_machine(lambda: MemoryBackend(name, list_tree=list_tree), {})
    # the example checks have no faults: they run as in the quick profile
    assert example_profile("faults") == "quick"


@pytest.fixture(params=sorted(TRANSPARENT_MIDDLEWARE))
def middleware(request):
    return request.param, TRANSPARENT_MIDDLEWARE[request.param]


class TestMiddlewareOnMemoryBackend(BackendTests):
    """Each middleware, alone around the memory backend, keeps the backend contract."""

    @pytest.fixture
    def backend(self, middleware):
        return build_chain(MemoryBackend(), [middleware])


class TestMiddlewareOnMemoryStore(StoreTests):
    """Each middleware in a Store's chain (inside stats, as the default chain has it) keeps the
    Store contract."""

    @pytest.fixture
    def store_location(self):
        return _memory_url()

    @pytest.fixture
    def store_kwargs(self, middleware):
        return {"middleware": store_chain_with(*middleware)}


@pytest.mark.parametrize("mode", ["mirror", "writethrough"])
class TestCacheOnMemoryStore(StoreTests):
    """A store whose every namespace is cached in a second memory store keeps the Store contract."""

    @pytest.fixture
    def store_location(self):
        return _memory_url()

    @pytest.fixture
    def store_kwargs(self, mode):
        return {"namespace_options": {"cache": mode}, "cache_url": _memory_url()}


def test_all_shipped_middleware_is_checked():
    """Every middleware the core registers is in a transparency run (cache: TestCacheOnMemoryStore),
    except readonly, which refuses writes on purpose (tests/test_middleware_readonly.py)."""
    from borgstore import _plugins

    shipped = {name for name, provided in _plugins.middlewares().items() if provided.distribution == "borgstore"}
    assert shipped - {"cache", "readonly"} == set(TRANSPARENT_MIDDLEWARE)
    assert {"cache", "readonly"} <= shipped


# --- middleware that changes behaviour on purpose ---


def _open_store(middleware):
    store = Store(_memory_url(), config={"data/": {"levels": [1]}}, middleware=middleware)
    store.create()
    store.open()
    return store


def test_stats_counts_each_call_and_volume():
    """stats counts one call per Store operation and the exact bytes stored and loaded."""
    store = _open_store(["stats"])
    try:
        for i in range(5):
            store.store(f"data/{i:02x}aaaa", bytes(100 * i))
        for i in range(3):
            store.load(f"data/{i:02x}aaaa")
        store.load("data/04aaaa", offset=10, size=7)
        store.info("data/00aaaa")
        store.move("data/00aaaa", delete=True)
        store.delete("data/01aaaa")
        assert [info.name for info in store.list("data")] == ["02aaaa", "03aaaa", "04aaaa"]
        stats = store.stats
        assert (stats["store_calls"], stats["store_volume"]) == (5, 1000)
        assert (stats["load_calls"], stats["load_volume"]) == (4, 0 + 100 + 200 + 7)
        assert (stats["info_calls"], stats["move_calls"], stats["delete_calls"]) == (1, 1, 1)
        assert stats["list_calls"] >= 1
    finally:
        store.close()


def test_emulate_adds_at_least_the_latency_to_each_call():
    """emulate makes each call take at least its latency (a lower bound; no upper bound is asserted)."""
    latency = 0.02
    store = _open_store(["stats", ("emulate", {"latency": latency})])
    try:
        calls = 0
        started = time.perf_counter()
        for i in range(5):
            store.store(f"data/{i:02x}bbbb", b"x")
            store.load(f"data/{i:02x}bbbb")
            store.info(f"data/{i:02x}bbbb")
            calls += 3
        elapsed = time.perf_counter() - started
        assert elapsed >= calls * latency
        # the stats layer sits outside emulate, so it sees the added time in every call it counts
        assert store.stats["store_time"] >= 5 * latency
    finally:
        store.close()


def test_writethrough_cache_serves_repeated_loads():
    """A writethrough cache answers a repeated load itself: the hit is counted, the value is the same."""
    store = Store(_memory_url(), config={"data/": {"levels": [1], "cache": "writethrough"}}, cache_url=_memory_url())
    store.create()
    with store:
        store.store("data/00dddd", b"cached value")
        assert store.load("data/00dddd") == b"cached value"
        hits = store.stats["cache_hits"]
        assert store.load("data/00dddd", offset=7) == b"value"
        assert store.stats["cache_hits"] == hits + 1


def test_emulate_limits_bandwidth():
    """emulate makes moving N bytes take at least N*8/bandwidth seconds."""
    bandwidth = 8 * 1024 * 1024  # bits per second: 1 MiB/s
    store = _open_store([("emulate", {"bandwidth": bandwidth})])
    try:
        value = bytes(100 * 1024)
        started = time.perf_counter()
        store.store("data/00cccc", value)
        assert store.load("data/00cccc") == value
        assert time.perf_counter() - started >= 2 * len(value) * 8 / bandwidth
    finally:
        store.close()


class PrivateReadCache(Middleware):
    """Keeps every value it loaded or stored: right for one Store object, blind to another one's writes."""

    def __init__(self, inner):
        super().__init__(inner)
        self.values = {}

    def load(self, name, *, size=None, offset=0):
        if name not in self.values:
            self.values[name] = self.inner.load(name)
        value = self.values[name]
        start = max(len(value) + offset, 0) if offset < 0 else offset
        return value[start:] if size is None else value[start : start + size]

    def store(self, name, value):
        self.inner.store(name, value)
        self.values[name] = bytes(value)

    def delete(self, name):
        self.values.pop(name, None)
        self.inner.delete(name)

    def move(self, curr_name, new_name):
        self.values.pop(curr_name, None)
        self.values.pop(new_name, None)
        self.inner.move(curr_name, new_name)


def test_waived_rules_skip_with_the_reason_and_keep_the_machine_to_one_store():
    """A chain with a private cache per Store object cannot keep store-two-instances; waiving it
    (with the reason) skips that check and store-two-writers, and the state machine, kept to one
    Store object, passes."""

    def private_cache_location():
        name = _memory_url().partition(":")[2]
        return lambda: PrivateReadCache(build_chain(MemoryBackend(name)))

    class PrivateCache(StoreTests):
        waived_rules = {"store-two-instances": "each Store object has a cache of its own"}
        quick_overrides = {"max_examples": 20}

    with pytest.raises(AssertionError, match="store-two-instances"):
        StoreTests().test_store_two_instances(private_cache_location(), {})
    outcomes = {}
    for name in ("test_store_two_instances", "test_store_two_writers", "test_store_state_machine"):
        try:
            getattr(PrivateCache(), name)(private_cache_location(), {})
            outcomes[name] = "passed"
        except pytest.skip.Exception as skip:
            outcomes[name] = str(skip)
    assert outcomes["test_store_state_machine"] == "passed"
    for name in ("test_store_two_instances", "test_store_two_writers"):
        assert "waived" in outcomes[name] and "a cache of its own" in outcomes[name]


def test_kit_hostile_names_rule_through_get_backend():
    """The kit's names-stay-inside-root rule holds for the raw backend get_backend() returns."""
    from borgstore.store import get_backend
    from borgstore.testing._backend_checks import BACKEND_CHECKS

    BACKEND_CHECKS["names-stay-inside-root"](get_backend("memory:"), None)
