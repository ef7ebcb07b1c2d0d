"""Store.backend and Store.chain enforce the limits the Store was given (permissions, readonly,
quota): an application reaching backend operations through them is checked as through the Store."""

import uuid

import pytest

from borgstore.backends.errors import PermissionDenied, QuotaExceeded
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware
from borgstore.store import Store, build_chain

CONFIG = {"": {"levels": [0]}, "data/": {"levels": [1]}}
KEY = "0123abcd"
ITEM = f"data/01/{KEY}"  # the backend name of data/0123abcd


def filled(url):
    """Create the store *url* with an item in data/ and one in the root; return a raw view of it."""
    store = Store(url, config=CONFIG)
    store.create()
    with store:
        store.store("data/" + KEY, b"value")
        store.store("config", b"c")
    raw = MemoryBackend(url.split(":", 1)[1])
    raw.open()
    return raw


def contents(raw):
    return {info.name: raw.load(info.name) for info in raw.list_tree("")}


@pytest.fixture
def url():
    return f"memory:backend-permissions-{uuid.uuid4().hex}"


def test_backend_of_a_store_with_permissions_refuses_what_they_forbid(url):
    raw = filled(url)
    before = contents(raw)
    store = Store(url, config=CONFIG, permissions={"": "lr", "data": "lrw"})
    with store:
        backend = store.backend
        with pytest.raises(PermissionDenied, match="delete"):
            backend.delete(ITEM)
        with pytest.raises(PermissionDenied, match="store"):
            backend.store(ITEM, b"overwritten")  # 'w' writes new items only
        with pytest.raises(PermissionDenied, match="move"):
            backend.move(ITEM, ITEM + ".del")
        with pytest.raises(PermissionDenied, match="store"):
            backend.store("config", b"changed")  # the root grants no write at all
        # what is granted works
        assert backend.load(ITEM) == b"value"
        assert backend.info(ITEM).exists
        assert [info.name for info in backend.list("data/01")] == [KEY]
        backend.store("data/02/02new", b"new")
    after = contents(raw)
    assert after.pop("data/02/02new") == b"new"
    assert after == before


def test_store_chain_is_the_enforcing_chain_too(url):
    raw = filled(url)
    before = contents(raw)
    store = Store(url, config=CONFIG, permissions={"": "lr", "data": "lr"})
    with store:
        for op, args in (("delete", (ITEM,)), ("store", (ITEM, b"x")), ("move", (ITEM, ITEM + ".del"))):
            with pytest.raises(PermissionDenied):
                getattr(store.chain, op)(*args)
        assert store.chain.load(ITEM) == b"value"
    assert contents(raw) == before


def test_backend_of_a_read_only_chain_refuses_every_change(url):
    raw = filled(url)
    before = contents(raw)
    store = Store(url, config=CONFIG, middleware=["stats", "readonly"])
    with store:
        backend = store.backend
        for op, args in (
            ("delete", (ITEM,)),
            ("store", (ITEM, b"x")),
            ("move", (ITEM, ITEM + ".del")),
            ("mkdir", ("data/77",)),
        ):
            with pytest.raises(PermissionDenied, match="read-only"):
                getattr(backend, op)(*args)
        assert backend.load(ITEM) == b"value"
    assert contents(raw) == before


def test_backend_of_a_store_with_a_quota_counts_against_it(url):
    filled(url)
    store = Store(url, config=CONFIG, quota=10)
    with store:
        usage = store.quota()["usage"]
        with pytest.raises(QuotaExceeded):
            store.backend.store("data/02/02big", b"x" * 11)
        store.backend.store("data/02/02ok", b"x")
        assert store.quota()["usage"] == usage + 1


def test_outermost_limit_first_and_every_limit_inside_it(url):
    """With quota outside permissions, Store.backend starts at the quota and still passes the
    permissions."""
    filled(url)
    store = Store(
        url,
        config=CONFIG,
        # the root grants what the quota's own file needs
        middleware=["stats", ("quota", {"limit": 100}), ("permissions", {"permissions": {"": "lrwWD", "data": "lr"}})],
    )
    with store:
        assert store.backend.name == "quota"
        with pytest.raises(PermissionDenied):
            store.backend.delete(ITEM)


def test_without_limits_backend_is_the_backend_object(url):
    filled(url)
    store = Store(url, config=CONFIG)
    assert isinstance(store.backend, MemoryBackend)
    assert store.backend is store.chain.backend
    with store:
        store.backend.delete(ITEM)  # nothing limits it: the raw operation, as on the PyPI Store
        assert not store.info("data/" + KEY).exists


class Audit(Middleware):
    """A middleware that limits nothing (enforces_limits stays False)."""


def test_middleware_that_limits_nothing_does_not_stand_in_for_the_backend(url):
    filled(url)
    backend = MemoryBackend(url.split(":", 1)[1])
    store = Store(backend=Audit(build_chain(backend)), config=CONFIG)
    assert store.backend is backend


def test_repr_still_names_the_backend_class():
    store = Store(backend=MemoryBackend(), config=CONFIG, permissions={"": "lr"})
    assert "MemoryBackend" in repr(store)
