"""The permissions middleware: the PyPI posixfs rules, on every backend."""

import uuid

import pytest

from borgstore.backends.errors import PermissionDenied
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware.permissions import PermissionsMiddleware
from borgstore.store import Store, build_chain

KEY = "0123456789abcdef"
CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [1]}}


def unique(prefix):
    """A memory store name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex}"


def chain_with(permissions, items=()):
    """An open chain (permissions over memory) holding *items* (backend names)."""
    backend = MemoryBackend()
    backend.create()
    backend.open()
    for name in items:
        backend.store(name, b"x" * 5)
    chain = build_chain(backend, [("permissions", {"permissions": permissions})])
    return chain, backend


def snapshot(backend, directory=""):
    """Every item below *directory* with its content, to show that nothing changed."""
    result = {}
    for info in backend.list(directory):
        name = f"{directory}/{info.name}" if directory else info.name
        result.update(snapshot(backend, name) if info.directory else {name: backend.load(name)})
    return result


# --- validation ---


@pytest.mark.parametrize(
    "permissions, fragment",
    [
        ({"data": "rx"}, "'x'"),
        ({"data": "read"}, "'ade'"),
        ({"data/": "r"}, "'data/'"),
        ({"/data": "r"}, "'/data'"),
        ({1: "r"}, "1"),
        ({"data": 7}, "7"),
        (["data"], "list"),
    ],
)
def test_bad_permissions_are_rejected_naming_the_problem(permissions, fragment):
    """A bad key or letter raises ValueError naming it, when the middleware is made."""
    with pytest.raises(ValueError) as excinfo:
        PermissionsMiddleware(build_chain(MemoryBackend()), permissions=permissions)
    assert fragment in str(excinfo.value)


def test_bad_permissions_fail_at_store_construction():
    """Store(permissions=...) checks the dict at once, before any storage access."""
    with pytest.raises(ValueError, match="'q'"):
        Store("memory:", config=CONFIG, permissions={"": "lrq"})


# --- the matching rule ---


def test_empty_or_no_permissions_allow_everything():
    """{} and None grant every operation."""
    for permissions in ({}, None):
        chain, backend = chain_with(permissions, ["data/a"])
        chain.store("data/b", b"1")
        chain.store("data/a", b"2")
        chain.move("data/a", "data/c")
        chain.delete("data/b")
        assert sorted(snapshot(backend)) == ["data/c"]


def test_name_under_no_prefix_is_denied():
    """No key matching the name or any parent: denied."""
    chain, _ = chain_with({"config": "lrwWD"}, ["data/a", "config/x"])
    assert chain.load("config/x") == b"xxxxx"
    with pytest.raises(PermissionDenied):
        chain.load("data/a")
    with pytest.raises(PermissionDenied):
        chain.list("")  # the root is not under "config" either


def test_most_specific_prefix_decides_without_fallback():
    """A deeper key decides alone: the root's letters are not consulted for it."""
    chain, _ = chain_with({"": "lrwWD", "data": "l"}, ["data/a", "config/a"])
    assert chain.load("config/a") == b"xxxxx"  # root grants r
    assert [i.name for i in chain.list("data")] == ["a"]
    with pytest.raises(PermissionDenied):
        chain.load("data/a")  # "data" decides and has no r, even though "" grants it


def test_an_empty_grant_denies_without_fallback():
    """A key with no letters still decides: it shuts its subtree off from the root's grant."""
    chain, backend = chain_with({"": "lrwWD", "config": ""}, ["config/a"])
    for call in (lambda: chain.load("config/a"), lambda: chain.store("config/b", b""), lambda: chain.list("config")):
        with pytest.raises(PermissionDenied):
            call()
    assert not backend.info("config/b").exists


def test_matching_is_per_component_not_per_string_prefix():
    """'data' covers 'data/x' but not 'database/x'."""
    chain, _ = chain_with({"data": "r"}, ["data/x", "database/x"])
    assert chain.load("data/x") == b"xxxxx"
    with pytest.raises(PermissionDenied):
        chain.load("database/x")


def test_prefix_is_matched_against_the_nested_name():
    """Permissions name backend (nested) names: 'data/01' covers the items nested under it."""
    url = "memory:" + unique("perm-nested")
    Store(url, config=CONFIG).create()
    store = Store(url, config=CONFIG, permissions={"": "lr", "data/01": "lrw"})
    with store:
        store.store(f"data/{KEY}", b"v")  # lands in data/01/0123...: allowed
        with pytest.raises(PermissionDenied):
            store.store("data/ffee", b"v")  # data/ff/ffee: only the root's lr applies
        with pytest.raises(PermissionDenied):
            store.store("config/c", b"v")


def test_denial_names_op_name_and_letters():
    """The message tells the operation, the name and the letters that would allow it."""
    chain, _ = chain_with({"": "r"}, ["data/a"])
    with pytest.raises(PermissionDenied) as excinfo:
        chain.delete("data/a")
    message = str(excinfo.value)
    assert "delete" in message and "'data/a'" in message and "'D'" in message


# --- each operation's letters ---


def test_create_needs_w_or_W_on_root():
    for letters, allowed in (("w", True), ("W", True), ("lrD", False)):
        store = Store("memory:", config=CONFIG, permissions={"": letters})
        if allowed:
            store.create()
        else:
            with pytest.raises(PermissionDenied):
                store.create()
            with pytest.raises(Exception):  # nothing was created
                store.open()


def test_destroy_needs_D_on_root():
    name = "memory:" + unique("perm-destroy")
    Store(name, config=CONFIG).create()
    with pytest.raises(PermissionDenied):
        Store(name, config=CONFIG, permissions={"": "lrwW"}).destroy()
    Store(name, config=CONFIG).open()  # still there
    Store(name, config=CONFIG, permissions={"": "D"}).destroy()


def test_mkdir_needs_w_and_rmdir_needs_w_or_D():
    chain, backend = chain_with({"": "lr", "a": "w", "b": "D", "c": "W"})
    chain.mkdir("a/x")
    with pytest.raises(PermissionDenied):
        chain.mkdir("c/x")  # W is not enough for mkdir
    backend.mkdir("b/x")
    backend.mkdir("c/y")
    chain.rmdir("a/x")
    chain.rmdir("b/x")
    with pytest.raises(PermissionDenied):
        chain.rmdir("c/y")
    assert backend.info("c/y").directory


def test_info_needs_l_or_r():
    chain, _ = chain_with({"a": "l", "b": "r", "c": "wWD"}, ["a/x", "b/x", "c/x"])
    assert chain.info("a/x").exists and chain.info("b/x").exists
    with pytest.raises(PermissionDenied):
        chain.info("c/x")


def test_load_hash_gather_need_r():
    chain, _ = chain_with({"a": "r", "b": "lwWD"}, ["a/x", "b/x"])
    assert chain.load("a/x", size=2) == b"xx"
    assert chain.hash("a/x") and chain.gather([("a/x", 0, 1)]) == b"x"
    for call in (
        lambda: chain.load("b/x"),
        lambda: chain.hash("b/x"),
        lambda: chain.gather([("b/x", 0, 1)]),
    ):
        with pytest.raises(PermissionDenied):
            call()


def test_gather_checks_every_source_before_reading_any():
    """A denied source late in the list stops the gather before the first source is read."""
    backend = MemoryBackend()
    backend.create()
    backend.open()
    backend.store("a/x", b"12345")
    backend.store("b/x", b"12345")
    reads = []
    original = backend.load

    def counting_load(name, **kwargs):
        reads.append(name)
        return original(name, **kwargs)

    backend.load = counting_load
    chain = build_chain(backend, [("permissions", {"permissions": {"a": "r"}})])
    with pytest.raises(PermissionDenied, match="'b/x'"):
        chain.gather([("a/x", 0, 2), ("a/x", 2, 2), ("b/x", 0, 1)])
    assert reads == []


def test_list_needs_l():
    chain, _ = chain_with({"a": "l", "b": "rwWD"}, ["a/x", "b/x"])
    assert [i.name for i in chain.list("a")] == ["x"]
    with pytest.raises(PermissionDenied):
        chain.list("b")


def test_store_new_needs_w_or_W_and_overwrite_needs_W():
    chain, backend = chain_with({"w": "w", "big": "W", "none": "lrD"}, ["w/old", "big/old"])
    chain.store("w/new", b"n")
    chain.store("big/new", b"n")
    chain.store("big/old", b"o")
    with pytest.raises(PermissionDenied, match="'W'"):
        chain.store("w/old", b"o")
    with pytest.raises(PermissionDenied):
        chain.store("none/new", b"n")
    assert backend.load("w/old") == b"xxxxx"
    assert backend.load("big/old") == b"o"
    assert not backend.info("none/new").exists


def test_store_with_W_does_not_look_up_existence():
    """With W granted the outcome cannot depend on existence, so no info call is made; with w
    only, a backend with store_new decides atomically, without a look-up either (one without
    it: tests/test_store_new.py)."""
    backend = MemoryBackend()
    backend.create()
    backend.open()
    looked_up = []
    original = backend.info
    backend.info = lambda name: looked_up.append(name) or original(name)
    chain = build_chain(backend, [("permissions", {"permissions": {"": "W"}})])
    chain.store("data/a", b"1")
    chain.store("data/a", b"2")
    assert looked_up == []
    only_w = build_chain(backend, [("permissions", {"permissions": {"": "w"}})])
    only_w.store("data/b", b"1")
    with pytest.raises(PermissionDenied, match="'W'"):
        only_w.store("data/b", b"2")
    assert looked_up == []
    assert backend.load("data/b") == b"1"


def test_delete_needs_D():
    chain, backend = chain_with({"a": "D", "b": "lrwW"}, ["a/x", "b/x"])
    chain.delete("a/x")
    with pytest.raises(PermissionDenied):
        chain.delete("b/x")
    assert not backend.info("a/x").exists and backend.info("b/x").exists


def test_move_needs_D_on_source_and_w_or_W_on_a_new_target():
    chain, backend = chain_with({"src": "D", "new": "w", "ro": "lr"}, ["src/a", "src/b", "ro/c"])
    chain.move("src/a", "new/a")
    assert backend.load("new/a") == b"xxxxx"
    with pytest.raises(PermissionDenied):
        chain.move("src/b", "ro/b")  # target without w/W
    with pytest.raises(PermissionDenied):
        chain.move("ro/c", "new/c")  # source without D
    assert sorted(snapshot(backend)) == ["new/a", "ro/c", "src/b"]


def test_move_onto_an_existing_target_needs_W():
    chain, backend = chain_with({"src": "D", "new": "w", "over": "W"}, ["src/a", "new/a", "over/a"])
    with pytest.raises(PermissionDenied, match="'W'"):
        chain.move("src/a", "new/a")
    chain.move("src/a", "over/a")
    assert sorted(snapshot(backend)) == ["new/a", "over/a"]


def test_soft_delete_is_a_move_to_the_del_name():
    """Soft deletion (the Store's move to name.del) needs D on the item and w/W on name.del
    (W if name.del exists)."""
    chain, backend = chain_with(
        {"data": "lrD", "data/x.del": "w", "data/y.del": "w"}, ["data/x", "data/y", "data/y.del"]
    )
    chain.move("data/x", "data/x.del")
    assert backend.info("data/x.del").exists and not backend.info("data/x").exists
    with pytest.raises(PermissionDenied, match="'W'"):
        chain.move("data/y", "data/y.del")  # would replace data/y.del
    only_d = chain_with({"data": "lrD"}, ["data/z"])[0]
    with pytest.raises(PermissionDenied, match="'data/z.del'"):
        only_d.move("data/z", "data/z.del")  # no w/W on the .del name


def test_undelete_needs_D_on_the_del_name_and_write_on_the_live_name():
    chain, backend = chain_with({"data": "lrw", "data/x.del": "D"}, ["data/x.del", "data/y.del"])
    chain.move("data/x.del", "data/x")
    assert backend.info("data/x").exists
    with pytest.raises(PermissionDenied, match="'data/y.del'"):
        chain.move("data/y.del", "data/y")
    assert backend.info("data/y.del").exists


def test_deleted_calls_check_the_del_name():
    """Through a Store, deleted=True calls are checked against the name.del entry."""
    raw = MemoryBackend(unique("deleted"))
    raw.create()
    raw.open()
    raw.store(f"data/01/{KEY}.del", b"xxxxx")
    raw.store(f"data/01/{KEY}", b"xxxxx")
    raw.close()
    store = Store(backend=MemoryBackend(raw.name), config=CONFIG, permissions={"data": "l", f"data/01/{KEY}.del": "rD"})
    name = "data/" + KEY
    with store:
        assert store.load(name, deleted=True) == b"xxxxx"
        assert store.info(name, deleted=True).exists
        assert store.hash(name, deleted=True)
        assert store.gather([(name, 0, 1)], deleted=True) == b"x"
        with pytest.raises(PermissionDenied):
            store.load(name)  # the live item is not readable
        store.delete(name, deleted=True)
        with pytest.raises(PermissionDenied):
            store.delete(name)


def test_a_tree_listing_needs_l_on_every_prefix_below():
    """One list_tree stream covers the directories below: each granted prefix there needs 'l'."""
    chain, _ = chain_with({"data": "lr", "data/01": "r"}, ["data/01/a", "data/02/b"])
    with pytest.raises(PermissionDenied, match="'data/01'"):
        list(chain.list_tree("data"))
    open_chain, _ = chain_with({"data": "lr"}, ["data/01/a", "data/02/b"])
    assert [i.name for i in open_chain.list_tree("data")] == ["01/a", "02/b"]


def test_open_close_flush_quota_need_nothing():
    chain, _ = chain_with({"": ""})
    chain.flush()
    assert chain.quota() == {"limit": -1, "usage": -1}
    chain.close()
    chain.open()


# --- through the Store ---


def test_read_only_store_lists_and_loads_but_changes_nothing():
    """A client with lr reads everything; each write kind is denied and leaves the store as it was."""
    location = unique("perm-readonly")
    name = "memory:" + location
    writer = Store(name, config=CONFIG)
    writer.create()
    with writer:
        writer.store(f"data/{KEY}", b"value")
        writer.store("config/c", b"conf")
        writer.move("config/c", delete=True)
        writer.store("config/c", b"conf2")
    backend = MemoryBackend(location)
    backend.open()
    before = snapshot(backend)
    reader = Store(name, config=CONFIG, permissions={"": "lr"})
    with reader:
        assert reader.load(f"data/{KEY}") == b"value"
        assert [i.name for i in reader.list("data")] == [KEY]
        assert [i.name for i in reader.list("config", deleted=True)] == ["c"]
        for call in (
            lambda: reader.store("data/ffff", b"new"),
            lambda: reader.store(f"data/{KEY}", b"over"),
            lambda: reader.delete(f"data/{KEY}"),
            lambda: reader.move(f"data/{KEY}", delete=True),
            lambda: reader.move("config/c", undelete=True),
            lambda: reader.move("config/c", "config/d"),
            lambda: reader.delete("config/c", deleted=True),
            lambda: reader.defrag([(KEY, 0, 2)], target="cafe", namespace="data"),
        ):
            with pytest.raises(PermissionDenied):
                call()
    assert snapshot(backend) == before


def test_append_only_client_can_add_but_not_overwrite_or_delete():
    """The borg 'append-only' style: lrw everywhere, nothing else."""
    store = Store("memory:", config=CONFIG, permissions={"": "lrw"})
    store.create()
    with store:
        store.store(f"data/{KEY}", b"first")
        with pytest.raises(PermissionDenied):
            store.store(f"data/{KEY}", b"second")
        with pytest.raises(PermissionDenied):
            store.move(f"data/{KEY}", delete=True)
        assert store.load(f"data/{KEY}") == b"first"


def test_get_backend_with_permissions_wraps_any_backend():
    from borgstore.store import get_backend

    chain = get_backend("memory:", permissions={"": "w"})
    chain.create()
    chain.open()
    chain.store("data/a", b"1")
    with pytest.raises(PermissionDenied):
        chain.load("data/a")


def test_denied_store_is_not_counted_by_the_quota():
    """permissions sits outside quota: a refused store reserves nothing."""
    url = "memory:" + unique("perm-quota")
    Store(url, config=CONFIG).create()
    with Store(url, config=CONFIG, permissions={"": "lr", "data": "lrw"}, quota=100) as store:
        store.store(f"data/{KEY}", b"x" * 10)
        with pytest.raises(PermissionDenied):
            store.store("config/c", b"x" * 50)
        assert store.quota()["usage"] == 10
