"""Example checks at the Store level: the rules a model expresses badly.

Each check gets ``make_store(config=None)``, which returns a new, unopened Store on one scratch
location (every call: a new Store object on the *same* location), and leaves the location destroyed.
"""

from typing import Callable, Union

from ..backends._base import BackendBase
from ..backends.errors import BackendAlreadyExists, BackendDoesNotExist, BackendMustBeOpen, ObjectNotFound
from ..middleware._base import OPERATIONS, Middleware
from ._backend_base import pattern, raise_thread_errors, run_threads, show_bytes, show_names
from ._backend_capabilities import expect_no_temporary_items
from ._rules import KitCheck, expect, expect_raises, no_error, require

CONFIG = {"": {"levels": [0]}, "config/": {"levels": [0]}, "data/": {"levels": [1]}}

#: where a Store of the kit lives: a URL, or a callable returning a new backend object for one
#: location on every call
StoreLocation = Union[str, Callable[[], BackendBase]]

#: rule id -> check(make_store, profile)
STORE_CHECKS: dict[str, KitCheck] = {}


def check(rule_id):
    def register(function):
        function.rule = rule_id
        STORE_CHECKS[rule_id] = function
        return function

    return register


def _destroy(store):
    try:
        store.close()
    except Exception:
        pass
    try:
        store.destroy()
    except Exception:
        pass


class _CallRecorder(Middleware):
    """Counts every call that reaches the storage side of the chain."""

    def __init__(self, inner):
        super().__init__(inner)
        self.calls = []
        for op in OPERATIONS:
            if hasattr(inner, op):  # list_tree only where the backend has it
                setattr(self, op, self._recording(op, getattr(inner, op)))

    def _recording(self, op, forward):
        def call(*args, **kwargs):
            self.calls.append(op)
            return forward(*args, **kwargs)

        return call


INVALID_NAMES = [
    "Data/abcd",
    "data/ABCD",
    "data/ab cd",
    "data\tx",
    "data\\abcd",
    "data/../config",
    "../x",
    "/data/x",
    "data/x/",
    "data//x",
    "",
    "data/x.tmp",
    "data/x.del",
    "x.hid",
    "a/b/c",
    "data/" + "0" * 96,
    "data/\u00e4",
    ".",
    "./x",
]


@check("names-invalid-rejected")
def check_invalid_names(make_store, profile):
    """An invalid name raises ValueError before any storage access, and nothing changes."""
    store = make_store(CONFIG, recorder=True)
    try:
        store.create()
        store.open()
        store.store("config/x", b"kept")
        recorder = store.chain.find_layer(_CallRecorder)
        recorder.calls.clear()
        for name in INVALID_NAMES:
            for what, op, args, kwargs in (
                ("store", store.store, (name, b"bad"), {}),
                ("load", store.load, (name,), {}),
                ("info", store.info, (name,), {}),
                ("delete", store.delete, (name,), {}),
                ("move from", store.move, (name, "config/x"), {}),
                ("move onto", store.move, ("config/x", name), {}),
                ("soft delete", store.move, (name,), {"delete": True}),
                ("hash", store.hash, (name,), {}),
                ("find", store.find, (name,), {}),
            ):
                with expect_raises("names-invalid-rejected", ValueError, f"{what} {name!r}"):
                    op(*args, **kwargs)
                expect(
                    "names-invalid-rejected",
                    not recorder.calls,
                    f"{what} {name!r} reached the storage ({recorder.calls}) before it was rejected",
                )
        expect("names-invalid-rejected", store.load("config/x") == b"kept", "an invalid name changed config/x")
    finally:
        _destroy(store)


@check("store-list-lazy")
def check_list_is_lazy(make_store, profile):
    """list() reads nothing from the storage before its first item is asked for."""
    store = make_store(CONFIG, recorder=True)
    try:
        store.create()
        store.open()
        store.store("data/0123abcd", b"x")
        recorder = store.chain.find_layer(_CallRecorder)
        recorder.calls.clear()
        listing = store.list("data")
        expect("store-list-lazy", not recorder.calls, f"list('data') called {recorder.calls} before the first item")
        expect("store-list-lazy", [info.name for info in listing] == ["0123abcd"], "list('data') after starting it")
    finally:
        _destroy(store)


@check("store-open-missing")
def check_open_missing(make_store, profile):
    """Opening a store that was never created raises BackendDoesNotExist."""
    store = make_store(CONFIG)
    with expect_raises("store-open-missing", BackendDoesNotExist, "Store.open() before create()"):
        store.open()
    _destroy(store)


@check("store-closed-raises")
def check_closed_store(make_store, profile):
    """Every item operation of a closed Store raises BackendMustBeOpen."""
    store = make_store(CONFIG)
    try:
        store.create()
        for what, op in (
            ("store", lambda: store.store("config/x", b"1")),
            ("load", lambda: store.load("config/x")),
            ("info", lambda: store.info("config/x")),
            ("delete", lambda: store.delete("config/x")),
            ("move", lambda: store.move("config/x", "config/y")),
            ("list", lambda: [*store.list("config")]),
            ("hash", lambda: store.hash("config/x")),
            ("gather", lambda: store.gather([("config/x", 0, 1)])),
            ("quota", lambda: store.quota()),
            ("close", lambda: store.close()),
        ):
            with expect_raises("store-closed-raises", BackendMustBeOpen, f"{what} on a closed Store"):
                op()
    finally:
        _destroy(store)


@check("store-create-non-empty")
def check_create_non_empty(make_store, profile):
    """create() on a location that holds a store raises BackendAlreadyExists and keeps its items."""
    store = make_store(CONFIG)
    try:
        store.create()
        with store:
            store.store("config/x", b"precious")
        with expect_raises("store-create-non-empty", BackendAlreadyExists, "a second Store.create()"):
            make_store(CONFIG).create()
        with store:
            expect(
                "store-create-non-empty", store.load("config/x") == b"precious", "the refused create() changed config/x"
            )
    finally:
        _destroy(store)


@check("store-destroy")
def check_destroy(make_store, profile):
    """destroy() removes the store: open() raises BackendDoesNotExist, and create() starts empty."""
    store = make_store(CONFIG)
    try:
        store.create()
        with store:
            store.store("config/x", b"gone soon")
        with no_error("store-destroy", "Store.destroy()"):
            store.destroy()
        with expect_raises("store-destroy", BackendDoesNotExist, "open() after destroy()"):
            store.open()
        store.create()
        with store:
            expect("store-destroy", not store.info("config/x").exists, "an item survived destroy()")
    finally:
        _destroy(store)


@check("store-two-instances")
def check_two_instances(make_store, profile):
    """Two Store objects on one location see each other's changes."""
    first = make_store(CONFIG)
    try:
        first.create()
        second = make_store(CONFIG)
        require(second is not first, "no second Store on the same location")
        with first, second:
            first.store("data/0123abcd", b"from the first")
            expect(
                "store-two-instances",
                second.load("data/0123abcd") == b"from the first",
                "the second Store does not see the first one's item",
            )
            # each Store lists before the other one changes something: a listing it kept from
            # then must not hide the change
            listed = {store: [i.name for i in store.list("data")] for store in (first, second)}
            same = listed[first] == listed[second] == ["0123abcd"]
            expect("store-two-instances", same, f"the listings differ: {listed}")
            second.move("data/0123abcd", delete=True)
            expect(
                "store-two-instances",
                not first.info("data/0123abcd").exists,
                "the first Store still sees an item the second one soft-deleted",
            )
            expect(
                "store-two-instances",
                [i.name for i in first.list("data")] == [],
                "the first Store still lists an item the second one soft-deleted",
            )
            expect(
                "store-two-instances",
                [i.name for i in first.list("data", deleted=True)] == ["0123abcd"],
                "the first Store does not list the second one's soft-deleted item",
            )
            first.store("data/4567abcd", b"from the first")
            expect(
                "store-two-instances",
                [i.name for i in second.list("data")] == ["4567abcd"],
                "the second Store does not list the first one's new item",
            )
            second.store("config/c", b"2")
            first.store("config/c", b"1")
            expect("store-two-instances", second.load("config/c") == b"1", "the last write did not win")
    finally:
        _destroy(first)


@check("store-threads")
def check_threads(make_store, profile):
    """One Store shared by several threads gives each thread correct results."""
    rounds = 30 if profile != "deep" else 300
    store = make_store(CONFIG)
    try:
        store.create()
        store.open()

        def worker(number):
            def work():
                for i in range(rounds):
                    key = f"{number:02x}{i:06x}"
                    value = bytes([number, i % 256]) * (50 + i)
                    store.store(f"data/{key}", value)
                    got = store.load(f"data/{key}")
                    shown = f"thread {number}: data/{key} loaded {show_bytes(got)}, expected {show_bytes(value)}"
                    expect("store-threads", got == value, shown)
                    if i % 4 == 0:
                        store.move(f"data/{key}", delete=True)
                listed = {info.name for info in store.list("data")}
                mine = {name for name in listed if name.startswith(f"{number:02x}")}
                wanted = {f"{number:02x}{i:06x}" for i in range(rounds) if i % 4}
                expect(
                    "store-threads",
                    mine == wanted,
                    f"thread {number}: list('data') is missing {show_names(wanted - mine)} "
                    f"and shows {show_names(mine - wanted)} that it should not",
                )

            return work

        raise_thread_errors("store-threads", run_threads([worker(n) for n in range(4)]))
        with expect_raises("store-threads", ObjectNotFound, "load of an item a thread soft-deleted"):
            store.load("data/00000000")
    finally:
        _destroy(store)


@check("store-two-writers")
def check_two_writers(make_store, profile):
    """Two Store objects storing one name at once: it ends with one writer's last value, whole; no temp item is left."""
    rule = "store-two-writers"
    rounds = 12 if profile != "deep" else 100
    first = make_store(CONFIG)
    try:
        first.create()
        second = make_store(CONFIG)
        require(second is not first, "no second Store on the same location")
        name = "data/0123abcd"
        values = {w: [pattern(256 * 1024 + 17 * i + w, 16 * w + i) for i in range(rounds)] for w in (1, 2)}
        with first, second:

            def writer(store, number):
                def work():
                    for value in values[number]:
                        store.store(name, value)

                return work

            raise_thread_errors(rule, run_threads([writer(first, 1), writer(second, 2)]))
            final = first.load(name)
            expect(
                rule,
                final in (values[1][-1], values[2][-1]),
                f"after two writers, load({name!r}) gave {show_bytes(final)}, neither writer's last value",
            )
            expect_no_temporary_items(rule, first.chain, first.find(name))
    finally:
        _destroy(first)


def store_factory(location, store_class=None, namespace_options=None, **store_options):
    """Return ``make_store(config, recorder=False)`` for *location*: a URL, or a callable returning
    a fresh backend object for one location (a new object on each call).

    *namespace_options* are added to every namespace's config (e.g. ``{"cache": "mirror"}``).

    With *recorder*, a link that records every call sits right above the backend, so a check can
    tell whether an operation reached the storage.
    """
    from .._plugins import backend_for_url
    from ..store import Store, build_chain

    store_class = store_class or Store

    def new_backend():
        if isinstance(location, str):
            return backend_for_url(location)
        return location()

    def make_store(config, recorder=False):
        if namespace_options:
            config = {namespace: {**entry, **namespace_options} for namespace, entry in config.items()}
        backend = new_backend()
        if recorder:
            backend = _CallRecorder(build_chain(backend))
            backend.name = "recorder"
        return store_class(backend=backend, config=config, **store_options)

    return make_store
