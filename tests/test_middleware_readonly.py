"""The readonly middleware: every change refused before any I/O, every read passed through."""

import dataclasses
import hashlib
import uuid

import pytest

from borgstore import _plugins
from borgstore.backends.errors import PermissionDenied
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import OPERATIONS, Middleware
from borgstore.middleware.readonly import PASSED_THROUGH, REFUSED, ReadOnlyMiddleware
from borgstore.store import Store, build_chain

KEY = "0123456789abcdef"
OTHER = "fedcba9876543210"
# the writer puts data items at level 0; the reader's write level is 1, so change_level would move
WRITER_CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [0]}}
READER_CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [0, 1]}}
CHAIN = ["stats", "readonly"]


def snapshot(backend, directory=""):
    """Every directory and item below *directory*, items with their content."""
    result = {}
    for info in backend.list(directory):
        name = f"{directory}/{info.name}" if directory else info.name
        if info.directory:
            result[name + "/"] = None
            result.update(snapshot(backend, name))
        else:
            result[name] = backend.load(name)
    return result


def raw_snapshot(url):
    backend = _plugins.backend_for_url(url)
    backend.open()
    try:
        return snapshot(backend)
    finally:
        backend.close()


def fill(url):
    """Create the store at *url* without readonly: live items, a soft-deleted one."""
    writer = Store(url, config=WRITER_CONFIG)
    writer.create()
    with writer:
        writer.store(f"data/{KEY}", b"value")
        writer.store("config/settings", b"conf")
        writer.store("config/old", b"gone")
        writer.move("config/old", delete=True)


class Recorder(Middleware):
    """Records the name of every operation that reaches it, then passes it on."""

    name = "recorder"

    def __init__(self, inner):
        super().__init__(inner)
        self.calls = []
        for op in OPERATIONS:
            if hasattr(inner, op):
                setattr(self, op, self._recording(op, getattr(inner, op)))

    def _recording(self, op, method):
        def recorded(*args, **kwargs):
            self.calls.append(op)
            return method(*args, **kwargs)

        return recorded


def recorded_store(location):
    """A Store with readonly over a recorder over the memory store *location*."""
    recorder = Recorder(build_chain(MemoryBackend(location)))
    return Store(backend=recorder, config=READER_CONFIG, middleware=CHAIN), recorder


def store_mutations(store):
    """Every Store-level call that changes the store, by what it is."""
    return {
        "store new": lambda: store.store(f"data/{OTHER}", b"new"),
        "store over": lambda: store.store(f"data/{KEY}", b"over"),
        "delete": lambda: store.delete(f"data/{KEY}"),
        "delete deleted": lambda: store.delete("config/old", deleted=True),
        "move to new name": lambda: store.move("config/settings", "config/renamed"),
        "soft delete": lambda: store.move(f"data/{KEY}", delete=True),
        "undelete": lambda: store.move("config/old", undelete=True),
        "change_level": lambda: store.move(f"data/{KEY}", change_level=True),
        "defrag": lambda: store.defrag([(KEY, 0, 2)], target=OTHER, namespace="data"),
        "create_levels": store.create_levels,
    }


# --- the enumeration ---


def test_refused_and_passed_through_are_exactly_the_link_contract():
    """Each operation of the contract is decided: refused or passed through, never both, none
    left out.  An operation added to OPERATIONS fails here until it is put in one of them."""
    assert len(set(REFUSED)) == len(REFUSED) and len(set(PASSED_THROUGH)) == len(PASSED_THROUGH)
    assert not set(REFUSED) & set(PASSED_THROUGH)
    assert sorted(REFUSED + PASSED_THROUGH) == sorted(OPERATIONS)


def test_every_refused_operation_is_its_own_method_and_no_read_is_overridden():
    """The refusals are written out in the class; reads are the next link's own bound methods."""
    for op in REFUSED:
        assert op in vars(ReadOnlyMiddleware), op
    for op in PASSED_THROUGH:
        assert op not in vars(ReadOnlyMiddleware), op
    inner = build_chain(MemoryBackend())
    layer = ReadOnlyMiddleware(inner)
    for op in PASSED_THROUGH:
        assert getattr(layer, op) == getattr(inner, op), op


# --- the chain directly ---


def refused_calls(chain):
    return {
        "create": chain.create,
        "destroy": chain.destroy,
        "mkdir": lambda: chain.mkdir("data/00"),
        "rmdir": lambda: chain.rmdir("data"),
        "store": lambda: chain.store(f"data/{KEY}", b"x"),
        "store_new": lambda: chain.store_new(f"data/{OTHER}", b"x"),
        "delete": lambda: chain.delete(f"data/{KEY}"),
        "move": lambda: chain.move(f"data/{KEY}", f"data/{KEY}.del"),
    }


def test_refused_operations_reach_nothing_and_name_operation_and_names():
    """Each refusal is PermissionDenied naming the operation and its name(s); no call at all
    (not even a look-up) reaches the link inside."""
    backend = MemoryBackend()
    backend.create()
    backend.open()
    backend.store(f"data/{KEY}", b"value")
    recorder = Recorder(build_chain(backend))
    chain = build_chain(recorder, ["readonly"])
    before = snapshot(backend)
    calls = refused_calls(chain)
    assert sorted(calls) == sorted(REFUSED)
    for op, call in calls.items():
        with pytest.raises(PermissionDenied) as excinfo:
            call()
        message = str(excinfo.value)
        assert message.startswith(op) and "read-only" in message, message
    assert f"'data/{KEY}' -> 'data/{KEY}.del'" in str(pytest.raises(PermissionDenied, calls["move"]).value)
    assert "'data/00'" in str(pytest.raises(PermissionDenied, calls["mkdir"]).value)
    assert recorder.calls == []
    assert snapshot(backend) == before


def test_reads_pass_through_to_the_backend():
    backend = MemoryBackend()
    backend.create()
    backend.open()
    backend.store(f"data/{KEY}", b"value")
    recorder = Recorder(build_chain(backend))
    chain = build_chain(recorder, ["readonly"])
    assert chain.load(f"data/{KEY}", size=3, offset=1) == b"alu"
    assert chain.info(f"data/{KEY}").size == 5
    assert [i.name for i in chain.list("data")] == [KEY]
    assert [i.name for i in chain.list_tree("")] == [f"data/{KEY}"]
    assert chain.hash(f"data/{KEY}") == hashlib.sha256(b"value").hexdigest()
    assert chain.gather([(f"data/{KEY}", 0, 2), (f"data/{KEY}", 3, 2)]) == b"vaue"
    assert chain.quota() == {"limit": -1, "usage": -1}
    chain.flush()
    chain.close()
    chain.open()
    assert recorder.calls == ["load", "info", "list", "list_tree", "hash", "gather", "quota", "flush", "close", "open"]


def test_capabilities_say_the_chain_does_not_write():
    backend = MemoryBackend()
    chain = build_chain(backend, ["readonly"])
    assert chain.capabilities.write is False
    assert chain.capabilities.store_new is False
    assert dataclasses.replace(chain.capabilities, write=True, store_new=True) == backend.capabilities


# --- through the Store ---


def test_registered_under_its_name_without_options():
    assert _plugins.middleware_factory("readonly") is ReadOnlyMiddleware
    store = Store("memory:", config=READER_CONFIG, middleware=CHAIN)
    assert store.middleware == ("stats", "readonly")
    with pytest.raises(ValueError, match="'readonly'"):
        Store("memory:", config=READER_CONFIG, middleware=["stats", ("readonly", {"mode": "strict"})])


def test_store_mutations_are_refused_and_change_nothing(url):
    """Every Store call that changes the store raises PermissionDenied, and the store's items,
    directories and values are exactly as before; create and destroy too."""
    fill(url)
    before = raw_snapshot(url)
    reader = Store(url, config=READER_CONFIG, middleware=CHAIN)
    with pytest.raises(PermissionDenied):
        reader.create()
    with pytest.raises(PermissionDenied):
        reader.destroy()
    with reader:
        for what, call in store_mutations(reader).items():
            with pytest.raises(PermissionDenied):
                call()
            assert raw_snapshot(url) == before, what
    assert raw_snapshot(url) == before


def test_store_reads_work(url):
    fill(url)
    reader = Store(url, config=READER_CONFIG, middleware=CHAIN)
    with reader:
        assert reader.load(f"data/{KEY}") == b"value"
        assert reader.load("config/old", deleted=True) == b"gone"
        info = reader.info(f"data/{KEY}")
        assert info.exists and info.size == 5
        assert [i.name for i in reader.list("data")] == [KEY]
        assert [i.name for i in reader.list("config")] == ["settings"]
        assert [i.name for i in reader.list("config", deleted=True)] == ["old"]
        assert reader.hash("config/settings") == hashlib.sha256(b"conf").hexdigest()
        assert reader.gather([(KEY, 1, 3)], namespace="data") == b"alu"
        assert reader.gather([(f"data/{KEY}", 0, 1), ("config/settings", 0, 4)]) == b"vconf"
        assert reader.quota() == {"limit": -1, "usage": -1}
        reader.flush()
        assert reader.stats["load_calls"] >= 2


def test_no_refused_store_call_reaches_the_backend():
    """A recorder inside readonly sees the reads the Store makes to find an item, never a change."""
    location = f"readonly-{uuid.uuid4().hex}"
    fill("memory:" + location)
    reader, recorder = recorded_store(location)
    with reader:
        for what, call in store_mutations(reader).items():
            recorder.calls.clear()
            with pytest.raises(PermissionDenied):
                call()
            changes = [op for op in recorder.calls if op in REFUSED]
            assert changes == [], what
            assert set(recorder.calls) <= {"info", "load", "gather"}, (what, recorder.calls)
