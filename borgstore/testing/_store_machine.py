"""The Store-level state machine: the Store API over several namespaces and nesting levels, with
soft deletion, level changes, gather/defrag/hash and the stats counters, checked against the
model of :mod:`._store_model`.  Rule ids are in :data:`STORE_MACHINE_RULES`.
"""

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Optional

import hypothesis
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from ..backends.errors import ObjectNotFound, ReadRangeError
from ..nesting import HashNesting, HexNesting
from ._machine_rules import STORE_MACHINE_RULES  # noqa: F401  (imported from here by callers)
from ._rules import capabilities_of, expect, expect_raises, no_error, require
from ._settings import kit_settings
from ._store_model import HEX_NAMESPACES, StoreModel, config_key, full_name, invalid_names
from ._strategies import HEX, values

if TYPE_CHECKING:
    from ..backends._base import Capabilities
    from ..store import Store

#: what create_store() draws (a subclass adding a draw of its own repeats these)
STORE_SETUP: dict[str, Any] = dict(
    data_level=st.sampled_from([0, 1]),
    index_levels=st.sampled_from([[0], [1], [0, 1], [1, 0]]),
    nesting=st.sampled_from(["hex", "hex", "hash"]),
    precreate=st.sampled_from([False, False, True]),
    two_stores=st.booleans(),
    items=st.lists(
        st.tuples(
            st.sampled_from(["", "config", "data", "index"]),
            st.integers(0, 999),
            st.integers(0, 300),
            st.sampled_from([False, False, True]),  # soft-deleted at once
        ),
        max_size=12,
    ),
)


class StoreMachine(StoreModel, RuleBasedStateMachine):
    def __init__(self, make_store: Callable[..., "Store"], allow_two_stores: bool = True):
        super().__init__()
        self.make_store = make_store
        self.allow_two_stores = allow_two_stores
        self.store = None

    @initialize(**STORE_SETUP)
    def create_store(
        self,
        data_level: int,
        index_levels: list[int],
        nesting: str,
        precreate: bool,
        two_stores: bool,
        items: list[tuple[str, int, int, bool]],
    ) -> None:
        self.nesting = nesting
        self.levels = {"": [0], "config": [0], "data": [data_level], "index": list(index_levels)}
        config: dict[str, dict[str, Any]] = {
            config_key(ns): {"levels": list(levels)} for ns, levels in self.levels.items()
        }
        config["data/"]["nesting"] = nesting
        # with two_stores, a second Store object on the same location takes turns with the first
        # (rule switch_store): each must see every change the other made
        self.stores = [self.make_store(config) for _ in range(2 if two_stores and self.allow_two_stores else 1)]
        self.current = 0
        self.store = self.stores[0]
        self.opened = [False] * len(self.stores)
        # live/deleted: namespace -> key -> {level: value}
        self.live = {ns: {} for ns in self.levels}
        self.deleted = {ns: {} for ns in self.levels}
        # what each Store's stats must show
        self.expected = [({"store": 0, "delete": 0, "move": 0}, {"store": 0, "load": 0}) for _ in self.stores]
        with no_error("store-lifecycle", "Store.create()"):
            self.store.create()
        # namespaces whose directory exists: listing one that does not raises ObjectNotFound
        self.touched = {""}
        if precreate:
            with no_error("store-lifecycle", "Store.create_levels()"):
                self.store.create_levels()
            self.touched.update(self.levels)
        for index in reversed(range(len(self.stores))):
            self.current, self.store = index, self.stores[index]
            self._open()
        self._store_first_items(items)

    def _store_first_items(self, items: list[tuple[str, int, int, bool]]) -> None:
        """A few items to start with, so that short runs read, move and delete something real."""
        for ns, seed, size, soft_deleted in items:
            key = hashlib.sha256(str(seed).encode()).hexdigest()[: 8 + seed % 50]
            if ns not in HEX_NAMESPACES:
                key = f"item-{seed}"
            value = (hashlib.sha256(key.encode()).digest() * (size // 32 + 1))[:size]
            name = full_name(ns, key)
            with no_error("store-load", f"store({name!r}, {len(value)} bytes)"):
                self.store.store(name, value)
            self.touched.add(ns)
            self._put(ns, key, self._find(ns, key, False), value)
            self.expected_calls["store"] += 1
            self.expected_volume["store"] += len(value)
            if soft_deleted:
                level = self._find(ns, key, False)
                with no_error("store-soft-delete", f"move({name!r}, delete=True)"):
                    self.store.move(name, delete=True)
                self._put(ns, key, level, self._take(ns, key, level), deleted=True)
                self.expected_calls["move"] += 1
                if self._value(ns, key) is None:
                    self._expect_gone("store-soft-delete", name, False, f"move({name!r}, delete=True)")

    def _open(self) -> None:
        with no_error("store-reopen", "Store.open()"):
            self.store.open()
        self.opened[self.current] = True

    def teardown(self) -> None:
        if self.store is None:
            return
        for store, opened in zip(self.stores, self.opened, strict=True):
            if opened:
                store.close()
        with no_error("store-lifecycle", "Store.destroy() at the end of an example"):
            self.stores[0].destroy()

    @precondition(lambda self: self.store is not None and len(self.stores) > 1)
    @rule()
    def switch_store(self) -> None:
        self.current = 1 - self.current
        self.store = self.stores[self.current]

    # --- rules ---
    @rule(data=st.data())
    def store_item(self, data: st.DataObject) -> None:
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key")
        self._store_item(data, ns, key, data.draw(values(), label="value"))

    def _store_item(self, data: st.DataObject, ns: str, key: str, value: bytes) -> None:
        with no_error("store-load", f"store({full_name(ns, key)!r}, {len(value)} bytes)"):
            self.store.store(full_name(ns, key), value)
        self.touched.add(ns)
        self._put(ns, key, self._find(ns, key, False), value)
        self.expected_calls["store"] += 1
        self.expected_volume["store"] += len(value)

    @rule(data=st.data(), deleted=st.booleans())
    def load_item(self, data: st.DataObject, deleted: bool) -> None:
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted)
        name = full_name(ns, key)
        value = self._value(ns, key, deleted)
        if value is None:
            with expect_raises("store-missing", ObjectNotFound, f"load({name!r}, deleted={deleted}) of a missing item"):
                self.store.load(name, deleted=deleted)
            return
        n = len(value)
        offset = data.draw(st.integers(-n - 2, n + 2), label="offset")
        size = data.draw(st.one_of(st.none(), st.integers(0, n + 2)), label="size")
        start = max(n + offset, 0) if offset < 0 else offset
        expected = value[start:] if size is None else value[start : start + size]
        with no_error("store-load", f"load({name!r}, size={size}, offset={offset}, deleted={deleted})"):
            got = self.store.load(name, size=size, offset=offset, deleted=deleted)
        self.expected_volume["load"] += len(got)
        expect(
            "store-load",
            got == expected,
            f"load({name!r}, size={size}, offset={offset}, deleted={deleted}) gave {len(got)} bytes, "
            f"expected {len(expected)}{' (different content)' if len(got) == len(expected) else ''}",
        )

    @rule(data=st.data(), deleted=st.booleans())
    def info_item(self, data: st.DataObject, deleted: bool) -> None:
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted)
        value = self._value(ns, key, deleted)
        with no_error("store-info", f"info({full_name(ns, key)!r}, deleted={deleted})"):
            info = self.store.info(full_name(ns, key), deleted=deleted)
        if value is None:
            expect("store-missing", not info.exists, f"info({full_name(ns, key)!r}, deleted={deleted}) = {info}")
        else:
            expect(
                "store-info",
                info.exists and info.size == len(value) and not info.directory,
                f"info({full_name(ns, key)!r}, deleted={deleted}) = {info}, expected size {len(value)}",
            )

    @rule(data=st.data(), deleted=st.booleans())
    def delete_item(self, data: st.DataObject, deleted: bool) -> None:
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted)
        name = full_name(ns, key)
        self.expected_calls["delete"] += 1
        if self._value(ns, key, deleted) is None:
            with expect_raises(
                "store-missing", ObjectNotFound, f"delete({name!r}, deleted={deleted}) of a missing item"
            ):
                self.store.delete(name, deleted=deleted)
            return
        with no_error("store-delete", f"delete({name!r}, deleted={deleted})"):
            self.store.delete(name, deleted=deleted)
        self._take(ns, key, self._find(ns, key, deleted), deleted)
        if self._value(ns, key, deleted) is None:
            expect(
                "store-delete",
                not self.store.info(name, deleted=deleted).exists,
                f"after delete({name!r}, deleted={deleted}) info() still shows it",
            )
            self._expect_gone("store-delete", name, deleted, f"delete({name!r}, deleted={deleted})")

    @rule(data=st.data())
    def soft_delete(self, data: st.DataObject) -> None:
        ns = self._draw_ns(data)
        self._soft_delete(ns, self._draw_key(data, ns, "key"))

    def _soft_delete(self, ns: str, key: str) -> None:
        name = full_name(ns, key)
        self.expected_calls["move"] += 1
        if self._value(ns, key) is None:
            with expect_raises("store-missing", ObjectNotFound, f"move({name!r}, delete=True) of a missing item"):
                self.store.move(name, delete=True)
            return
        with no_error("store-soft-delete", f"move({name!r}, delete=True)"):
            self.store.move(name, delete=True)
        level = self._find(ns, key, False)
        self._put(ns, key, level, self._take(ns, key, level), deleted=True)
        expected = self._value(ns, key, True)
        with no_error("store-soft-delete", f"load({name!r}, deleted=True) after soft deletion"):
            got = self.store.load(name, deleted=True)
        self.expected_volume["load"] += len(got)
        expect("store-soft-delete", got == expected, f"after move({name!r}, delete=True), load(deleted=True) differs")
        if self._value(ns, key) is None:
            self._expect_gone("store-soft-delete", name, False, f"move({name!r}, delete=True)")

    @rule(data=st.data())
    def undelete(self, data: st.DataObject) -> None:
        ns = self._draw_ns(data)
        self._undelete(ns, self._draw_key(data, ns, "key", deleted=True))

    def _undelete(self, ns: str, key: str) -> None:
        name = full_name(ns, key)
        self.expected_calls["move"] += 1
        if self._value(ns, key, True) is None:
            with expect_raises("store-missing", ObjectNotFound, f"move({name!r}, undelete=True) of a missing item"):
                self.store.move(name, undelete=True)
            return
        with no_error("store-undelete", f"move({name!r}, undelete=True)"):
            self.store.move(name, undelete=True)
        level = self._find(ns, key, True)
        self._put(ns, key, level, self._take(ns, key, level, deleted=True))
        expected = self._value(ns, key)
        with no_error("store-undelete", f"load({name!r}) after undeletion"):
            got = self.store.load(name)
        self.expected_volume["load"] += len(got)
        expect("store-undelete", got == expected, f"after move({name!r}, undelete=True), load() differs")
        if self._value(ns, key, True) is None:
            self._expect_gone("store-undelete", name, True, f"move({name!r}, undelete=True)")

    @rule(data=st.data(), deleted=st.booleans())
    def rename(self, data: st.DataObject, deleted: bool) -> None:
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "source", deleted)
        new_ns = ns if data.draw(st.booleans(), label="same namespace") else self._draw_ns(data, "target namespace")
        new_key = self._draw_key(data, new_ns, "target", deleted)
        self._rename(ns, key, new_ns, new_key, deleted)

    @precondition(lambda self: self.store is not None and any(len(keys) >= 2 for keys in self.live.values()))
    @rule(data=st.data())
    def rename_onto_existing(self, data: st.DataObject) -> None:
        ns = data.draw(
            st.sampled_from(sorted(ns for ns, keys in self.live.items() if len(keys) >= 2)), label="namespace"
        )
        key = data.draw(st.sampled_from(sorted(self.live[ns])), label="source")
        new_key = data.draw(st.sampled_from(sorted(set(self.live[ns]) - {key})), label="target")
        self._rename(ns, key, ns, new_key, False)

    def _rename(self, ns: str, key: str, new_ns: str, new_key: str, deleted: bool) -> None:
        if (ns, key) == (new_ns, new_key):
            return
        name, new_name = full_name(ns, key), full_name(new_ns, new_key)
        if new_ns in HEX_NAMESPACES and any(c not in HEX for c in new_key[:4]) and self.nesting == "hex":
            return
        self.expected_calls["move"] += 1
        if self._value(ns, key, deleted) is None:
            with expect_raises("store-missing", ObjectNotFound, f"move({name!r}, {new_name!r}) of a missing item"):
                self.store.move(name, new_name, deleted=deleted)
            return
        source_level, target_level = self._find(ns, key, deleted), self._find(new_ns, new_key, deleted)
        with no_error("store-rename", f"move({name!r}, {new_name!r}, deleted={deleted})"):
            self.store.move(name, new_name, deleted=deleted)
        self.touched.add(new_ns)
        self._put(new_ns, new_key, target_level, self._take(ns, key, source_level, deleted), deleted)
        expected = self._value(new_ns, new_key, deleted)
        with no_error("store-rename", f"load({new_name!r}, deleted={deleted}) after the move onto it"):
            got = self.store.load(new_name, deleted=deleted)
        self.expected_volume["load"] += len(got)
        expect("store-rename", got == expected, f"after move({name!r}, {new_name!r}), the target holds other data")
        if self._value(ns, key, deleted) is None:
            self._expect_gone("store-rename", name, deleted, f"move({name!r}, {new_name!r}, deleted={deleted})")

    @rule(data=st.data(), deleted=st.booleans())
    def change_level(self, data: st.DataObject, deleted: bool) -> None:
        ns = data.draw(st.sampled_from(HEX_NAMESPACES), label="namespace")
        key = self._draw_key(data, ns, "key", deleted, existing_only=True)
        if key is None:
            return
        name = full_name(ns, key)
        current, target = self._find(ns, key, deleted), self.levels[ns][-1]
        if current == target:
            return
        self.expected_calls["move"] += 1
        with no_error("store-change-level", f"move({name!r}, change_level=True, deleted={deleted})"):
            self.store.move(name, change_level=True, deleted=deleted)
        self._put(ns, key, target, self._take(ns, key, current, deleted), deleted)
        expected = self._value(ns, key, deleted)
        with no_error("store-change-level", f"load({name!r}, deleted={deleted}) after the level change"):
            got = self.store.load(name, deleted=deleted)
        self.expected_volume["load"] += len(got)
        expect("store-change-level", got == expected, f"after move({name!r}, change_level=True) the value differs")

    @rule(data=st.data())
    def set_levels(self, data: st.DataObject) -> None:
        ns = data.draw(st.sampled_from(HEX_NAMESPACES), label="namespace")
        occupied = {level for table in (self.live, self.deleted) for held in table[ns].values() for level in held}
        choices = [
            list(c) for c in ([0], [1], [2], [0, 1], [1, 0], [0, 2], [2, 0], [1, 2], [2, 1]) if occupied <= set(c)
        ]
        if not choices:
            return
        new_levels = data.draw(st.sampled_from(choices), label="levels")
        self.levels[ns] = new_levels
        create = max(new_levels[-1] for new_levels in self.levels.values()) <= 1 and data.draw(
            st.booleans(), label="create"
        )
        with no_error("store-set-levels", f"set_levels({self._levels_arg()}, create={create})"):
            for store in self.stores:
                store.set_levels(self._levels_arg(), create=create and store is self.store)
        if create:
            self.touched.update(self.levels)

    def _levels_arg(self) -> dict[str, list[int]]:
        return {config_key(ns): list(levels) for ns, levels in self.levels.items()}

    @precondition(lambda self: self.store is not None and capabilities_of(self.store.chain).list)
    @rule(data=st.data(), deleted=st.booleans())
    def list_namespace(self, data: st.DataObject, deleted: bool) -> None:
        self._check_listing(self._draw_ns(data), deleted)

    @precondition(lambda self: self.store is not None and capabilities_of(self.store.chain).list)
    @rule()
    def list_everything(self) -> None:
        # through every Store object: a second one must see what the first one changed
        current = self.current
        for index in range(len(self.stores)):
            self.current, self.store = index, self.stores[index]
            for ns in sorted(self.levels):
                for deleted in (False, True):
                    self._check_listing(ns, deleted)
        self.current, self.store = current, self.stores[current]

    def _check_listing(self, ns: str, deleted: bool) -> None:
        rule_id = "store-list-deleted" if deleted else "store-list"
        with no_error(rule_id, f"list({ns!r}, deleted={deleted})"):
            try:
                listed = [*self.store.list(ns, deleted=deleted)]
            except ObjectNotFound:
                # an object store drops a namespace directory with its last item
                listed = None
        expected = self._visible(ns, deleted)
        if listed is None:
            vanished = not expected and not capabilities_of(self.store.chain).needs_mkdir
            expect(
                rule_id,
                ns not in self.touched or vanished,
                f"list({ns!r}) raised ObjectNotFound for an existing namespace",
            )
            return
        names = [info.name for info in listed]
        expect(rule_id, names == sorted(names), f"list({ns!r}, deleted={deleted}) is not sorted: {names}")
        got = sorted((info.name, info.size) for info in listed)
        expect(rule_id, got == expected, f"list({ns!r}, deleted={deleted}) = {got}, expected {expected}")

    @precondition(lambda self: self.store is not None and any(self.live.values()))
    @rule(data=st.data())
    def layout(self, data: st.DataObject) -> None:
        ns = data.draw(st.sampled_from(sorted(ns for ns in self.levels if self.live[ns])), label="namespace")
        key = self._draw_key(data, ns, "key", existing_only=True)
        name = full_name(ns, key)
        level = self._find(ns, key, False)
        strategy = HashNesting() if ns == "data" and self.nesting == "hash" else HexNesting()
        expected = strategy.nest(name, level)
        with no_error("store-layout", f"find({name!r})"):
            found = self.store.find(name)
        expect("store-layout", found == expected, f"find({name!r}) = {found!r}, expected {expected!r} (level {level})")
        with no_error("store-layout", f"info({expected!r}) in the backend"):
            info = self.store.chain.info(expected)
        value = self._value(ns, key)
        expect(
            "store-layout",
            info.exists and info.size == len(value),
            f"{name!r} is not stored as {expected!r} in the backend: info() = {info}",
        )

    @rule(data=st.data())
    def hash_item(self, data: st.DataObject) -> None:
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key")
        name = full_name(ns, key)
        value = self._value(ns, key)
        if value is None:
            with expect_raises("store-missing", ObjectNotFound, f"hash({name!r}) of a missing item"):
                self.store.hash(name)
            return
        with no_error("store-hash", f"hash({name!r})"):
            got = self.store.hash(name)
        expect("store-hash", got == hashlib.sha256(value).hexdigest(), f"hash({name!r}) = {got!r}")

    @rule(data=st.data(), short=st.booleans())
    def gather(self, data: st.DataObject, short: bool) -> None:
        ns = self._draw_ns(data)
        sources, expected = self._draw_sources(data, ns)
        if sources is None:
            return
        if short:
            key, offset, _ = sources[-1]
            sources[-1] = (key, offset, len(self._value(ns, key)) - offset + 1)
            with expect_raises("store-gather", ReadRangeError, f"gather({sources!r}, namespace={ns!r}) past an end"):
                self.store.gather(sources, namespace=ns)
            return
        with no_error("store-gather", f"gather({sources!r}, namespace={ns!r})"):
            got = self.store.gather(sources, namespace=ns)
        expect("store-gather", got == expected, f"gather({sources!r}, namespace={ns!r}) gave other data")

    @rule(data=st.data(), by_digest=st.booleans())
    def defrag(self, data: st.DataObject, by_digest: bool) -> None:
        ns = data.draw(st.sampled_from(HEX_NAMESPACES), label="namespace")
        sources, expected = self._draw_sources(data, ns)
        if sources is None:
            return
        target = None if by_digest else self._draw_key(data, ns, "target")
        with no_error("store-defrag", f"defrag({sources!r}, target={target!r}, namespace={ns!r})"):
            key = self.store.defrag(sources, target=target, algorithm="sha256" if by_digest else None, namespace=ns)
        wanted = hashlib.sha256(expected).hexdigest() if by_digest else target
        expect("store-defrag", key == wanted, f"defrag() returned {key!r}, expected {wanted!r}")
        self._put(ns, key, self._find(ns, key, False), expected)
        self.touched.add(ns)
        self.expected_calls["store"] += 1
        self.expected_volume["store"] += len(expected)
        with no_error("store-defrag", f"load({full_name(ns, key)!r}) of what defrag() stored"):
            got = self.store.load(full_name(ns, key))
        self.expected_volume["load"] += len(got)
        expect("store-defrag", got == expected, f"the item defrag() stored as {key!r} holds other data")

    @rule(name=invalid_names, op=st.sampled_from(["store", "load", "info", "delete", "move", "hash"]))
    def invalid_name(self, name: str, op: str) -> None:
        calls = {
            "store": lambda: self.store.store(name, b"x"),
            "load": lambda: self.store.load(name),
            "info": lambda: self.store.info(name),
            "delete": lambda: self.store.delete(name),
            "move": lambda: self.store.move(name, "config/x"),
            "hash": lambda: self.store.hash(name),
        }
        with expect_raises("names-invalid-rejected", ValueError, f"{op}({name!r})"):
            calls[op]()

    @rule()
    def check_stats(self) -> None:
        if "stats" not in self.store.middleware:
            return
        stats = self.store.stats
        for op, count in self.expected_calls.items():
            got = stats[f"{op}_calls"]
            expect("store-stats", got == count, f"stats {op}_calls = {got}, expected {count}")
        for op, volume in self.expected_volume.items():
            got = stats[f"{op}_volume"]
            expect("store-stats", got == volume, f"stats {op}_volume = {got}, expected {volume}")

    @rule()
    def quota(self) -> None:
        with no_error("store-quota", "Store.quota()"):
            quota = self.store.quota()
        expect(
            "store-quota",
            isinstance(quota, dict) and all(type(quota.get(k)) is int for k in ("limit", "usage")),
            f"quota() = {quota!r}, expected {{'limit': int, 'usage': int}}",
        )

    @rule()
    def reopen(self) -> None:
        with no_error("store-reopen", "Store.flush() and Store.close()"):
            self.store.flush()
            self.store.close()
        self.opened[self.current] = False
        self._open()


def opened_store_capabilities(make_store: Callable[..., "Store"]) -> "Capabilities":
    """The capabilities of the chain of a Store from *make_store*, read once it is open."""
    probe = make_store({"": {"levels": [0]}})
    with no_error("store-lifecycle", "Store.create() and open() of a fresh location"):
        probe.create()
        probe.open()
    try:
        return capabilities_of(probe.chain)
    finally:
        probe.close()
        probe.destroy()


def run_store_machine(
    make_store: Callable[..., "Store"],
    settings: Optional[hypothesis.settings] = None,
    seed: Optional[int] = None,
    two_stores: bool = True,
) -> None:
    """Run the Store state machine.  *make_store(config)* returns a new, not yet created Store with
    that namespace config at a location that does not exist yet (or is empty).

    *seed* fixes Hypothesis' random seed; *two_stores* False keeps every example to one Store
    object (for a chain that waives ``store-two-instances``)."""
    caps = opened_store_capabilities(make_store)
    require(
        caps.read and caps.write, "the Store state machine reads and writes: the backend declares read or write False"
    )

    def machine() -> StoreMachine:
        return StoreMachine(make_store, two_stores)

    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    # any factory of machines works (as hypothesis documents), though its hint names a class
    run_state_machine_as_test(machine, settings=settings or kit_settings())  # type: ignore[arg-type]
