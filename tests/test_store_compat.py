"""The Store as COMPAT.md describes it, point by point, on the memory and the file backend."""

import threading

import pytest

from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    NoBackendGiven,
    ObjectNotFound,
    ReadRangeError,
)
from borgstore.store import ItemInfo, Store, get_backend

CONFIG = {"": {"levels": [0]}, "config/": {"levels": [0]}, "data/": {"levels": [1]}}
KEY = "0123456789abcdef0123456789abcdef"
KEY2 = "fedcba9876543210fedcba9876543210"


@pytest.fixture(params=["config", "levels"])
def store(url, request):
    """An open, empty store, built with the config= form and with the older levels= form."""
    if request.param == "config":
        s = Store(url, config=CONFIG)
    else:
        s = Store(url, levels={ns: entry["levels"] for ns, entry in CONFIG.items()})
    s.create()
    s.open()
    yield s
    s.close()
    s.destroy()


# --- import paths ---


def test_import_paths():
    """Every import path of COMPAT.md works and ObjectNotFound is one class."""
    import borgstore
    import borgstore.backends.errors as errors
    import borgstore.store as store_module
    from borgstore.backends._base import BackendBase, ItemInfo as BaseItemInfo  # noqa: F401
    from borgstore.constants import DEL_SUFFIX, HID_SUFFIX, MAX_NAME_LENGTH, ROOTNS, TMP_SUFFIX

    assert isinstance(borgstore.__version__, str) and borgstore.__version__
    assert store_module.ObjectNotFound is errors.ObjectNotFound
    assert store_module.ItemInfo is BaseItemInfo
    assert (ROOTNS, DEL_SUFFIX, TMP_SUFFIX, HID_SUFFIX, MAX_NAME_LENGTH) == ("", ".del", ".tmp", ".hid", 100)
    from borgstore.constants import QUOTA_PERSIST_DELTA, QUOTA_PERSIST_INTERVAL, QUOTA_STORE_NAME

    assert (QUOTA_STORE_NAME, QUOTA_PERSIST_DELTA, QUOTA_PERSIST_INTERVAL) == ("quota.hid", 10_000_000, 300)
    for name in (
        "BackendConnectionError BackendURLInvalid NoBackendGiven BackendAlreadyExists BackendDoesNotExist "
        "BackendMustBeOpen BackendMustNotBeOpen ObjectNotFound PermissionDenied QuotaExceeded ReadRangeError"
    ).split():
        assert issubclass(getattr(errors, name), errors.BackendError), name


def test_item_info_defaults():
    """ItemInfo has name, exists, size, directory and atime/mtime defaulting to 0."""
    info = ItemInfo("k", True, 3, False)
    assert (info.atime, info.mtime) == (0, 0)
    assert info._fields == ("name", "exists", "size", "directory", "atime", "mtime")


# --- construction ---


def test_neither_url_nor_backend():
    """Store() without url or backend raises NoBackendGiven."""
    with pytest.raises(NoBackendGiven):
        Store(config=CONFIG)


@pytest.mark.parametrize("url", ["gopher://x/y", "nonsense", "", "1abc:foo"])
def test_unknown_url(url):
    """An unknown or malformed URL raises BackendURLInvalid naming it."""
    with pytest.raises(BackendURLInvalid) as exc:
        Store(url, config=CONFIG)
    assert repr(url) in str(exc.value) or url in str(exc.value)


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        [],
        {"data/": [1]},
        {"data/": {"levels": []}},
        {"data/": {"levels": [-1]}},
        {"data/": {"levels": ["1"]}},
        {"data/": {"levels": [1, 1]}},
        {"data/": {}},
        {"data/": {"levels": [1], "colour": "red"}},
        {"data": {"levels": [1]}},
        {"Data/": {"levels": [1]}},
        {"data/": {"levels": [1], "nesting": "nope"}},
        {"data/": {"levels": [1], "cache": "sometimes"}},
    ],
)
def test_invalid_config(config):
    """No or an invalid config raises ValueError."""
    with pytest.raises(ValueError):
        Store("memory:", config=config)


def test_levels_form_equals_config_form(url):
    """The older levels= form lays out items exactly like the config= form."""
    a = Store(url, levels={"data/": [2], "config/": [0]})
    a.create()
    with a:
        a.store("data/" + KEY, b"x")
        assert a.find("data/" + KEY) == f"data/01/23/{KEY}"
    b = Store(url, config={"data/": {"levels": [2]}, "config/": {"levels": [0]}})
    with b:
        assert b.load("data/" + KEY) == b"x"
        assert b.find("data/" + KEY) == f"data/01/23/{KEY}"
    with pytest.raises(ValueError):
        Store(url, config=CONFIG, levels={"data/": [1]})


def test_get_backend(tmp_path):
    """get_backend returns an unopened backend for a URL, None for an unknown one."""
    backend = get_backend("memory:")
    assert backend is not None and not backend.opened
    assert get_backend("gopher://nowhere/x") is None


# --- lifecycle ---


def test_create_refuses_non_empty(url):
    """create() on a non-empty store raises BackendAlreadyExists and keeps the data."""
    s = Store(url, config=CONFIG)
    s.create()
    with s:
        s.store("config/a", b"keep")
    with pytest.raises(BackendAlreadyExists):
        s.create()
    with s:
        assert s.load("config/a") == b"keep"


def test_open_missing_and_destroy_missing(url):
    """open() and destroy() of a missing store raise BackendDoesNotExist."""
    s = Store(url, config=CONFIG)
    with pytest.raises(BackendDoesNotExist):
        s.open()
    with pytest.raises(BackendDoesNotExist):
        s.destroy()


def test_open_state_rules(url):
    """create/destroy refuse while open; operations refuse while closed."""
    s = Store(url, config=CONFIG)
    s.create()
    with pytest.raises(BackendMustBeOpen):
        s.store("config/a", b"x")
    with pytest.raises(BackendMustBeOpen):
        s.list("data")
    with s:
        with pytest.raises(BackendMustNotBeOpen):
            s.create()
        with pytest.raises(BackendMustNotBeOpen):
            s.destroy()
        with pytest.raises(BackendMustNotBeOpen):
            s.open()
    with pytest.raises(BackendMustBeOpen):
        s.load("config/a")
    s.destroy()
    with pytest.raises(BackendDoesNotExist):
        s.open()


# --- names ---

INVALID_NAMES = [
    "",
    "Data/" + KEY,
    "data/ABC",
    "data/a b",
    "data/a\\b",
    "data/../x",
    "../x",
    "/data/x",
    "data/x/",
    "data/sub/x",
    "data//x",
    "data/x.tmp",
    "data/x.del",
    "data/x.hid",
    "data/" + "a" * 96,
    "data/é",
    "data/a\tb",
    "data/.",
    "./x",
    b"data/x",
    None,
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names_touch_nothing(store, name):
    """Every operation rejects an invalid name with ValueError naming it, before any storage access."""
    before = store.stats
    for op in (
        lambda: store.store(name, b"x"),
        lambda: store.load(name),
        lambda: store.info(name),
        lambda: store.delete(name),
        lambda: store.move(name, delete=True),
        lambda: store.move("config/ok", name) if name is not None else store.move(name, "config/ok"),
        lambda: store.hash(name),
        lambda: store.find(name),
    ):
        with pytest.raises(ValueError) as exc:
            op()
        assert repr(name) in str(exc.value)
    after = store.stats
    assert {k: v for k, v in after.items() if k.endswith("_calls")} == {
        k: v for k, v in before.items() if k.endswith("_calls")
    }


def test_longest_valid_name(store):
    """A name of exactly 100 characters is valid."""
    name = "config/" + "a" * 93
    store.store(name, b"x")
    assert store.load(name) == b"x"


def test_root_namespace(store):
    """Names without a namespace live in the root namespace and list there."""
    store.store("rootitem", b"r")
    store.store("config/c", b"c")
    assert [i.name for i in store.list("")] == ["rootitem"]


# --- operations ---


def test_store_load_overwrite(store):
    """store overwrites; load returns the last value; bytes, bytearray and memoryview work."""
    store.store("data/" + KEY, b"one")
    store.store("data/" + KEY, bytearray(b"two"))
    assert store.load("data/" + KEY) == b"two"
    store.store("data/" + KEY, memoryview(b"three"))
    assert store.load("data/" + KEY) == b"three"
    import array

    store.store("data/" + KEY2, memoryview(array.array("I", [1, 2])))
    assert store.load("data/" + KEY2) == array.array("I", [1, 2]).tobytes()


def test_store_rejects_bad_values(store):
    """Values that are not bytes-like or not C-contiguous raise ValueError and store nothing."""
    with pytest.raises(ValueError):
        store.store("config/a", "text")
    with pytest.raises(ValueError):
        store.store("config/a", memoryview(b"abcdef")[::2])
    assert not store.info("config/a").exists


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, b"0123456789"),
        ({"offset": 3}, b"3456789"),
        ({"offset": 3, "size": 4}, b"3456"),
        ({"size": 0}, b""),
        ({"offset": -3}, b"789"),
        ({"offset": -3, "size": 2}, b"78"),
        ({"offset": -30}, b"0123456789"),
        ({"offset": 8, "size": 10}, b"89"),
        ({"offset": 20}, b""),
    ],
)
def test_partial_loads(store, kwargs, expected):
    """load honours offset (negative from the end) and size; past the end gives fewer bytes."""
    store.store("config/digits", b"0123456789")
    assert store.load("config/digits", **kwargs) == expected


def test_missing_items(store):
    """load/delete/move of a missing item raise ObjectNotFound; info says exists=False."""
    name = "data/" + KEY
    with pytest.raises(ObjectNotFound):
        store.load(name)
    with pytest.raises(ObjectNotFound):
        store.delete(name)
    with pytest.raises(ObjectNotFound):
        store.move(name, "data/" + KEY2)
    with pytest.raises(ObjectNotFound):
        store.move(name, delete=True)
    info = store.info(name)
    assert not info.exists and not info.directory


def test_info(store):
    """info tells existence, size and that an item is no directory."""
    store.store("data/" + KEY, b"12345")
    info = store.info("data/" + KEY)
    assert (info.name, info.exists, info.size, info.directory) == (KEY, True, 5, False)


def test_delete(store):
    """delete removes an item for good (not even soft-deleted remains)."""
    store.store("data/" + KEY, b"x")
    store.delete("data/" + KEY)
    assert not store.info("data/" + KEY).exists
    assert list(store.list("data", deleted=True)) == []


def test_move_rename_replaces_target(store):
    """move to new_name renames and replaces an existing target."""
    store.store("config/a", b"A")
    store.store("config/b", b"B")
    store.move("config/a", "config/b")
    assert store.load("config/b") == b"A"
    assert not store.info("config/a").exists


def test_move_argument_rules(store):
    """move needs exactly one of new_name, delete, undelete, change_level."""
    store.store("config/a", b"A")
    for kwargs in ({}, {"new_name": "config/b", "delete": True}, {"delete": True, "undelete": True}):
        with pytest.raises(ValueError):
            store.move("config/a", **kwargs)
    assert store.load("config/a") == b"A"


def test_list_sorted_flat_lazy(store):
    """list yields the keys of one namespace, sorted, without nesting directories, lazily."""
    keys = sorted(f"{i:02x}" + KEY[2:] for i in (255, 0, 17, 16, 1))
    for key in reversed(keys):
        store.store("data/" + key, key.encode())
    store.store("config/x", b"x")
    items = store.list("data")
    calls = store.stats["list_calls"]
    assert store.stats["list_calls"] == calls  # nothing happened yet
    infos = list(items)
    assert [i.name for i in infos] == keys
    assert all(i.exists and not i.directory and i.size == 32 for i in infos)


def test_soft_deletion(store):
    """move(delete=True) hides an item from live listings; deleted=True sees it; undelete restores."""
    name = "data/" + KEY
    store.store(name, b"x")
    store.move(name, delete=True)
    assert not store.info(name).exists
    assert store.info(name, deleted=True).exists
    assert [i.name for i in store.list("data")] == []
    assert [i.name for i in store.list("data", deleted=True)] == [KEY]
    assert store.load(name, deleted=True) == b"x"
    with pytest.raises(ObjectNotFound):
        store.load(name)
    store.move(name, undelete=True)
    assert store.load(name) == b"x"
    store.move(name, delete=True)
    store.delete(name, deleted=True)
    assert list(store.list("data", deleted=True)) == []


def test_soft_deleted_sorted_with_awkward_names(store):
    """deleted listings stay sorted even where the '.del' suffix would change the order."""
    for key in ("a", "a-b", "a0"):
        store.store("config/" + key, b"x")
        store.move("config/" + key, delete=True)
    assert [i.name for i in store.list("config", deleted=True)] == ["a", "a-b", "a0"]


def test_hash(store):
    """hash returns the hex digest with any hashlib algorithm; unknown ones raise ValueError."""
    import hashlib

    store.store("config/a", b"hello")
    assert store.hash("config/a") == hashlib.sha256(b"hello").hexdigest()
    assert store.hash("config/a", "md5") == hashlib.md5(b"hello").hexdigest()
    with pytest.raises(ValueError, match=r"^Unsupported hash algorithm: nope"):
        store.hash("config/a", "nope")
    with pytest.raises(ValueError, match=r"^Unsupported hash algorithm: nope"):
        store.defrag([("config/a", 0, 1)], algorithm="nope")


def test_hash_blake3(store):
    """blake3 works as an algorithm when the optional blake3 package is installed."""
    blake3 = pytest.importorskip("blake3")
    store.store("config/a", b"hello")
    assert store.hash("config/a", "blake3") == blake3.blake3(b"hello").hexdigest()
    key = store.defrag([("a", 0, 5)], algorithm="blake3", namespace="config")
    assert key == blake3.blake3(b"hello").hexdigest()


def test_gather_and_defrag(store):
    """gather concatenates ranges (short ones raise ReadRangeError); defrag stores them as one item."""
    import hashlib

    store.store("data/" + KEY, b"0123456789")
    store.store("data/" + KEY2, b"abcdef")
    sources = [(KEY, 2, 3), (KEY2, 0, 2), (KEY, -2, 2)]
    assert store.gather(sources, namespace="data") == b"234ab89"
    assert store.gather([("data/" + KEY, 0, 1)]) == b"0"
    with pytest.raises(ReadRangeError, match=r"^Read range error from \S*" + KEY2):
        store.gather([(KEY2, 4, 5)], namespace="data")
    with pytest.raises(ReadRangeError, match=r"^Read range error from "):
        store.defrag([(KEY2, 4, 5)], target="short", namespace="data")
    key = store.defrag(sources, algorithm="sha256", namespace="data")
    assert key == hashlib.sha256(b"234ab89").hexdigest()
    assert store.load("data/" + key) == b"234ab89"
    assert store.defrag(sources, target="combined", namespace="data") == "combined"
    assert store.load("data/combined") == b"234ab89"
    with pytest.raises(ValueError):
        store.defrag(sources, namespace="data")


def test_quota_untracked(store):
    """quota() without a quota gives -1 for limit and usage."""
    assert store.quota() == {"limit": -1, "usage": -1}


def test_stats_keys(store):
    """stats has calls and time for each operation, volume and throughput for load and store."""
    store.store("config/a", b"12345")
    store.load("config/a")
    store.load("config/a", size=2)
    store.info("config/a")
    list(store.list("config"))
    store.move("config/a", "config/b")
    store.delete("config/b")
    stats = store.stats
    for op in ("info", "load", "store", "delete", "move", "list"):
        assert stats[f"{op}_calls"] >= 1, op
        assert isinstance(stats[f"{op}_time"], float) and stats[f"{op}_time"] >= 0
    assert stats["store_calls"] == 1 and stats["load_calls"] == 2
    assert stats["store_volume"] == 5 and stats["load_volume"] == 7
    assert stats["load_throughput"] > 0 and stats["store_throughput"] > 0


# --- nesting ---


def test_nesting_levels(url):
    """Levels n > 0 store a key under n directories of two characters each; level 0 flat."""
    s = Store(url, config={"a/": {"levels": [0]}, "b/": {"levels": [1]}, "c/": {"levels": [3]}})
    s.create()
    with s:
        for ns in "abc":
            s.store(f"{ns}/{KEY}", b"x")
        assert s.find("a/" + KEY) == f"a/{KEY}"
        assert s.find("b/" + KEY) == f"b/01/{KEY}"
        assert s.find("c/" + KEY) == f"c/01/23/45/{KEY}"
        assert [i.name for i in s.backend.list("c/01/23/45")] == [KEY]
        assert [i.name for i in s.list("c")] == [KEY]


def test_several_levels_while_converting(url):
    """With levels [0, 1], reads look at both, new writes and change_level use the last."""
    old = Store(url, config={"data/": {"levels": [0]}})
    old.create()
    with old:
        old.store("data/" + KEY, b"old")
        old.store("data/" + KEY2, b"old2")
        old.move("data/" + KEY2, delete=True)
    s = Store(url, config={"data/": {"levels": [0, 1]}})
    with s:
        assert s.load("data/" + KEY) == b"old"
        assert s.find("data/" + KEY) == f"data/{KEY}"
        new_key = "aa" + KEY[2:]
        s.store("data/" + new_key, b"new")
        assert s.find("data/" + new_key) == f"data/aa/{new_key}"
        assert [i.name for i in s.list("data")] == sorted([KEY, new_key])
        s.move("data/" + KEY, change_level=True)
        assert s.find("data/" + KEY) == f"data/01/{KEY}"
        assert s.load("data/" + KEY) == b"old"
        s.move("data/" + KEY2, change_level=True, deleted=True)
        assert s.find("data/" + KEY2, deleted=True) == f"data/fe/{KEY2}"
        assert [i.name for i in s.list("data", deleted=True)] == [KEY2]
        assert s.backend.info(f"data/fe/{KEY2}.del").exists
    new = Store(url, config={"data/": {"levels": [1]}})
    with new:
        assert sorted(i.name for i in new.list("data")) == sorted([KEY, new_key])


def test_set_levels_and_create_levels(url):
    """set_levels(create=True) pre-creates every nesting directory of the last level."""
    s = Store(url, config={"data/": {"levels": [0]}})
    s.create()
    s.set_levels({"data/": [1]}, create=True)
    with s:
        dirs = [i.name for i in s.backend.list("data")]
        assert len(dirs) == 256 and dirs[0] == "00" and dirs[-1] == "ff"
        s.store("data/" + KEY, b"x")
        assert s.find("data/" + KEY) == f"data/01/{KEY}"
    with pytest.raises(ValueError):
        s.set_levels({})


def test_hash_nesting_for_any_key(url):
    """The 'hash' strategy nests keys that are not hex, and listings stay sorted."""
    s = Store(url, config={"archives/": {"levels": [2], "nesting": "hash"}})
    s.create()
    names = [f"archive-2026-11-{day:02d}" for day in range(1, 20)]
    with s:
        for name in reversed(names):
            s.store("archives/" + name, name.encode())
        nested = s.find("archives/" + names[0])
        assert nested.count("/") == 3 and nested.endswith("/" + names[0])
        assert [i.name for i in s.list("archives")] == names
        s.move("archives/" + names[0], delete=True)
        assert [i.name for i in s.list("archives", deleted=True)] == [names[0]]
        assert s.backend.info(nested + ".del").exists


def test_hex_nesting_rejects_short_keys(store):
    """A key too short for its level raises ValueError naming it and stores nothing."""
    with pytest.raises(ValueError, match="'a'"):
        store.store("data/a", b"x")
    assert list(store.backend.list("")) == []


def test_list_missing_namespace(store):
    """Listing a namespace that was never written raises ObjectNotFound, as in the PyPI borgstore."""
    with pytest.raises(ObjectNotFound):
        list(store.list("data"))


# --- threads ---


def test_one_store_many_threads(store):
    """One Store shared by several threads keeps every item and counts every call."""
    errors = []

    def work(t):
        try:
            for i in range(50):
                key = f"{t:02x}{i:030x}"
                store.store("data/" + key, key.encode())
                assert store.load("data/" + key) == key.encode()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(store.list("data"))) == 300
    assert store.stats["store_calls"] == 300 and store.stats["load_calls"] == 300


def test_errors_are_backend_errors(store):
    """Errors raised on purpose are BackendError subclasses."""
    with pytest.raises(BackendError):
        store.load("config/missing")


@pytest.mark.parametrize("nesting", ["hex", "hash"])
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_nester_matches_nest(nesting, level):
    """The fast nesting function of each strategy gives exactly what nest() gives."""
    from borgstore._plugins import nesting_strategy

    strategy = nesting_strategy(nesting)
    fast = strategy.nester(level)
    for name in ("data/" + KEY, KEY, "ns/abcdef", "x/" + "9" * 6):
        assert fast(name) == strategy.nest(name, level)
    if nesting == "hex" and level:
        with pytest.raises(ValueError, match="'a'"):
            fast("data/a")


def test_set_levels_keeps_the_nesting_strategy(url):
    """set_levels changes the levels of a namespace but not its nesting strategy."""
    s = Store(url, config={"archives/": {"levels": [1], "nesting": "hash"}})
    s.create()
    with s:
        s.store("archives/config", b"x")
        where = s.find("archives/config")
        s.set_levels({"archives/": [1]})
        assert s.find("archives/config") == where
        assert s.load("archives/config") == b"x"


def test_root_key_cannot_shadow_a_namespace(store):
    """A root item named like a namespace is refused: it would be that namespace's directory."""
    with pytest.raises(ValueError, match="'data'"):
        store.store("data", b"x")
    store.store("datum", b"x")
    assert store.load("datum") == b"x"
