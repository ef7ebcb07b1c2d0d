"""Store.remove_stale_temps(): the clean-up of temp items that writers which died left behind."""

import math
import os
import time
import uuid

import pytest

from borgstore.backends.errors import BackendError, BackendMustBeOpen, PermissionDenied
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware
from borgstore.store import Store, build_chain

CONFIG = {"": {"levels": [0]}, "data/": {"levels": [2]}}
KEY = "0123456789abcdef"
HOUR = 3600


def file_store(tmp_path, **kwargs):
    store = Store(f"file://{tmp_path}/store", config=CONFIG, **kwargs)
    if not (tmp_path / "store").exists():
        store.create()
    return store


def leave_temp(tmp_path, name, age, data=b"partial"):
    """A temp file as a writer leaves it (a complete or a partial value), last changed *age* s ago."""
    path = tmp_path / "store" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def temps_on_disk(tmp_path):
    root = tmp_path / "store"
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.tmp"))


# --- arguments and state ---


@pytest.mark.parametrize("older_than", [-1, -0.5, "3600", None, True, math.nan, math.inf, [1]])
def test_bad_age_is_rejected_naming_it(older_than):
    store = Store("memory:", config=CONFIG)
    store.create()
    with store:
        with pytest.raises(ValueError, match="older_than"):
            store.remove_stale_temps(older_than)


def test_needs_an_open_store():
    store = Store("memory:", config=CONFIG)
    store.create()
    with pytest.raises(BackendMustBeOpen):
        store.remove_stale_temps()


def test_stats_key_is_there_and_zero_without_a_clean_up():
    """Also without the stats middleware: every key of Store.stats is always present."""
    for middleware in (None, []):
        store = Store("memory:", config=CONFIG, middleware=middleware)
        assert store.stats["stale_temps_removed"] == 0


# --- posixfs: what is removed and what stays ---


def test_old_temps_go_young_temps_and_items_stay(tmp_path):
    store = file_store(tmp_path)
    with store:
        store.store("data/" + KEY, b"value")
        store.store("config", b"c")
    old = [
        leave_temp(tmp_path, "config.4f3a.tmp", 2 * HOUR),
        leave_temp(tmp_path, f"data/01/23/{KEY}.99a0.tmp", 2 * HOUR),
        leave_temp(tmp_path, "data/ff/dead.1.tmp", 2 * HOUR, data=b""),
    ]
    young = leave_temp(tmp_path, f"data/01/23/{KEY}.77b1.tmp", 10)  # a writer at work
    with store:
        assert store.remove_stale_temps() == 3
        assert store.stats["stale_temps_removed"] == 3
        assert not any(path.exists() for path in old)
        assert young.exists()
        assert store.load("data/" + KEY) == b"value" and store.load("config") == b"c"
        assert store.remove_stale_temps() == 0  # nothing old is left
        assert store.stats["stale_temps_removed"] == 3
    assert temps_on_disk(tmp_path) == [f"data/01/23/{KEY}.77b1.tmp"]


def test_age_threshold_is_the_argument(tmp_path):
    store = file_store(tmp_path)
    leave_temp(tmp_path, "a.1.tmp", 100)
    leave_temp(tmp_path, "b.1.tmp", 10)
    with store:
        assert store.remove_stale_temps(older_than=50) == 1
        assert temps_on_disk(tmp_path) == ["b.1.tmp"]
        assert store.remove_stale_temps(older_than=0) == 1  # everything, in-progress writes too
        assert temps_on_disk(tmp_path) == []
        assert store.stats["stale_temps_removed"] == 2


def test_removing_temps_leaves_the_quota_usage_alone(tmp_path):
    """A temp was never counted, so removing it frees nothing."""
    store = file_store(tmp_path, quota=10**6)
    with store:
        store.store("data/" + KEY, b"12345")
        leave_temp(tmp_path, f"data/01/23/{KEY}.5.tmp", 2 * HOUR, data=b"x" * 1000)
        assert store.remove_stale_temps() == 1
        assert store.quota()["usage"] == 5
    with store:
        assert store.quota()["usage"] == 5
    assert (tmp_path / "store" / "quota.hid").read_bytes() == b"5"


# --- the chain: permissions, races, backends without list_temp ---


def test_permissions_apply_and_a_refusal_is_reported_after_the_others(tmp_path):
    """Temps the permissions let it delete are removed; the refused ones stay and are reported."""
    file_store(tmp_path)  # created with every permission
    leave_temp(tmp_path, "config.1.tmp", 2 * HOUR)  # the root grants no D
    leave_temp(tmp_path, "data/00/aa.1.tmp", 2 * HOUR)
    leave_temp(tmp_path, "data/ff/bb.1.tmp", 2 * HOUR)
    store = file_store(tmp_path, permissions={"": "lr", "data": "lrwWD"})
    with store:
        with pytest.raises(PermissionDenied) as excinfo:
            store.remove_stale_temps()
        assert excinfo.value.removed == 2
        assert "config.1.tmp" in str(excinfo.value) and "removed 2" in str(excinfo.value)
        assert store.stats["stale_temps_removed"] == 2
    assert temps_on_disk(tmp_path) == ["config.1.tmp"]


def test_a_read_only_chain_removes_nothing(tmp_path):
    file_store(tmp_path)
    leave_temp(tmp_path, "data/00/aa.1.tmp", 2 * HOUR)
    store = file_store(tmp_path, middleware=["stats", "readonly"])
    with store:
        with pytest.raises(PermissionDenied) as excinfo:
            store.remove_stale_temps()
        assert excinfo.value.removed == 0
        assert store.stats["stale_temps_removed"] == 0
    assert temps_on_disk(tmp_path) == ["data/00/aa.1.tmp"]


class WriterFinishes(Middleware):
    """After listing them, the writers of the temps named ``*.done.tmp`` finish: each temp is
    renamed into place before the clean-up reaches it."""

    def list_temp(self, name):
        found = list(self.inner.list_temp(name))
        yield from found
        for info in found:
            if info.name.endswith(".done.tmp"):
                self.inner.move(info.name, info.name.split(".")[0])


def test_a_temp_whose_writer_finishes_meanwhile_is_skipped_and_not_counted():
    backend = MemoryBackend(f"finishing-{uuid.uuid4().hex}")
    backend.create()
    backend.open()
    backend.store("data/aa/aa.done.tmp", b"complete")  # level 1: data/aa/aa
    backend.store("data/bb/bb.dead.tmp", b"partial")
    backend.close()
    store = Store(backend=WriterFinishes(build_chain(backend)), config={"data/": {"levels": [1]}})
    with store:
        assert store.remove_stale_temps(older_than=0) == 1
        assert store.stats["stale_temps_removed"] == 1
        assert store.load("data/aa") == b"complete"
        assert list(store.chain.list_temp("")) == []


def test_memory_backend_temps_are_removed():
    url = f"memory:temps-{uuid.uuid4().hex}"
    store = Store(url, config=CONFIG)
    store.create()
    with store:
        store.store("data/" + KEY, b"v")
    raw = MemoryBackend(url.split(":", 1)[1])
    raw.open()
    raw.store(f"data/01/23/{KEY}.1.tmp", b"partial")
    with store:
        assert store.remove_stale_temps() == 0  # it was written just now: a live writer's
        assert store.remove_stale_temps(older_than=0) == 1
        assert store.load("data/" + KEY) == b"v"
    assert list(raw.list_temp("")) == []


class NoTempListing(MemoryBackend):
    """A backend without the optional list_temp, as one written for the PyPI package."""

    def __getattribute__(self, name):
        if name == "list_temp":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_backend_without_list_temp_says_so():
    store = Store(backend=NoTempListing(), config=CONFIG)
    store.create()
    with store:
        with pytest.raises(BackendError, match="list_temp") as excinfo:
            store.remove_stale_temps()
        assert "NoTempListing" in str(excinfo.value)
        assert store.stats["stale_temps_removed"] == 0


def test_open_removes_nothing(tmp_path):
    """The clean-up is a maintenance call: opening a store leaves even old temps alone."""
    file_store(tmp_path)
    leave_temp(tmp_path, "data/00/aa.1.tmp", 2 * HOUR)
    store = file_store(tmp_path)
    with store:
        pass
    assert temps_on_disk(tmp_path) == ["data/00/aa.1.tmp"]
    assert store.stats["stale_temps_removed"] == 0


def test_permissions_that_forbid_listing_the_store_stop_it_before_anything(tmp_path):
    file_store(tmp_path)
    leave_temp(tmp_path, "data/00/aa.1.tmp", 2 * HOUR)
    store = file_store(tmp_path, permissions={"": "r", "data": "lrwWD"})  # the root may not be listed
    with store:
        with pytest.raises(PermissionDenied, match="list") as excinfo:
            store.remove_stale_temps()
        assert excinfo.value.removed == 0
    assert temps_on_disk(tmp_path) == ["data/00/aa.1.tmp"]


def test_the_command_line_removes_old_temps_and_says_how_many(tmp_path, capsys):
    from borgstore.__main__ import main

    store = file_store(tmp_path)
    with store:
        store.store("data/" + KEY, b"value")
    old = leave_temp(tmp_path, f"data/01/23/{KEY}.99a0.tmp", 2 * HOUR)
    young = leave_temp(tmp_path, f"data/01/23/{KEY}.77b1.tmp", 10)
    url = f"file://{tmp_path}/store"
    assert main(["clean-temps", url]) == 0
    assert capsys.readouterr().out == f"removed 1 stale temp item(s) older than 3600 s from {url}\n"
    assert not old.exists() and young.exists()
    assert main(["clean-temps", url, "--older-than", "0"]) == 0
    assert "removed 1 stale temp item(s) older than 0 s" in capsys.readouterr().out
    assert temps_on_disk(tmp_path) == []
    assert main(["clean-temps", url, "--older-than", "-1"]) == 2
    assert "older_than" in capsys.readouterr().err
