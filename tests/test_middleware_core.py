"""stats, softdelete and emulate: what each adds to a chain, and the default chain."""

import pytest

from borgstore import build_chain, default_middleware
from borgstore.backends.errors import ObjectNotFound
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware.emulate import EmulateMiddleware
from borgstore.store import Store

CONFIG = {"data/": {"levels": [1]}, "": {"levels": [0]}}
KEY = "ab" * 16


def open_chain(middleware):
    chain = build_chain(MemoryBackend(), middleware)
    chain.create()
    chain.open()
    return chain


def test_default_chain_reproduces_compat():
    """Without middleware=, a Store gets stats and softdelete, plus permissions/quota when asked."""
    assert Store("memory:", config=CONFIG).middleware == ("stats", "softdelete")
    s = Store("memory:", config=CONFIG, permissions={"": "lrwWD"}, quota=100)
    assert s.middleware == ("stats", "permissions", "quota", "softdelete")


def test_environment_adds_emulation(monkeypatch):
    """BORGSTORE_LATENCY (µs) and BORGSTORE_BANDWIDTH (bit/s) put emulate innermost in the default chain."""
    monkeypatch.setenv("BORGSTORE_LATENCY", "2500")
    monkeypatch.setenv("BORGSTORE_BANDWIDTH", "8000000")
    s = Store("memory:", config=CONFIG)
    assert s.middleware == ("stats", "softdelete", "emulate")
    emulate = s.chain.find_layer("emulate")
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
    assert isinstance(chain.find_layer("emulate"), EmulateMiddleware)


def test_stats_counts_every_call_and_directory():
    """stats counts each call that reaches it, failed ones too, and one list per directory."""
    s = Store("memory:", config=CONFIG)
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


def test_soft_deletion_needs_its_middleware():
    """Without softdelete in the chain, soft deletion raises ValueError and changes nothing."""
    s = Store("memory:", config=CONFIG, middleware=["stats"])
    s.create()
    with s:
        s.store("data/" + KEY, b"x")
        with pytest.raises(ValueError, match="softdelete"):
            s.move("data/" + KEY, delete=True)
        with pytest.raises(ValueError, match="softdelete"):
            s.load("data/" + KEY, deleted=True)
        assert s.load("data/" + KEY) == b"x"


def test_softdelete_renames_in_place():
    """softdelete moves an item to <name>.del in the same directory and back."""
    chain = open_chain(["softdelete"])
    chain.store("data/ab/" + KEY, b"x")
    chain.soft_delete("data/ab/" + KEY)
    assert [i.name for i in chain.backend.list("data/ab")] == [KEY + ".del"]
    assert [i.name for i in chain.list("data/ab")] == []
    assert [i.name for i in chain.list("data/ab", deleted=True)] == [KEY]
    chain.undelete("data/ab/" + KEY)
    assert [i.name for i in chain.backend.list("data/ab")] == [KEY]


def test_default_middleware_is_a_list_of_names():
    """default_middleware() tells the default chain as data the application can edit."""
    assert default_middleware() == ["stats", "softdelete"]


def test_cache_sits_outside_emulation(monkeypatch):
    """A cached namespace puts the cache just outside emulate, so cache hits are not slowed."""
    monkeypatch.setenv("BORGSTORE_LATENCY", "1")
    s = Store("memory:", config={"data/": {"levels": [1], "cache": "writethrough"}}, cache_url="memory:")
    assert s.middleware == ("stats", "softdelete", "cache", "emulate")
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
        assert stats["list_calls"] >= 2 and stats["list_time"] > 0
        s.chain.find_layer("stats").reset()
        assert all(value == 0 for value in s.stats.values())
