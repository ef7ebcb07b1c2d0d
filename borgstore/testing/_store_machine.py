"""The Store-level state machine: the Store API over several namespaces and nesting levels, with
soft deletion, level changes, gather/defrag/hash and the stats counters, checked against a model.

The model keeps, per namespace, the live and the soft-deleted items *per nesting level*, because
that is what a store being converted between levels really holds: reads look at the configured
levels in order, writes go to the last one, and ``change_level`` moves an item there.
"""

import hashlib

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from .._names import check_name
from ..backends.errors import ObjectNotFound, ReadRangeError
from ..nesting import HashNesting, HexNesting
from ._rules import capabilities_of, expect, expect_raises, no_error, require
from ._settings import kit_settings
from ._strategies import HEX, NAME_CHARS, values

#: rule id -> the promise it stands for
STORE_MACHINE_RULES = {
    "store-load": "a stored value loads back, whole and in ranges, from whatever level it is on",
    "store-info": "info() shows existence and size of the value a name resolves to",
    "store-missing": "load/delete/hash/move of a missing name raise ObjectNotFound; info() shows exists=False",
    "store-delete": "delete() removes the item for good",
    "store-list": "list(namespace) yields exactly the items of the configured levels, sorted, without nesting",
    "store-list-deleted": "list(namespace, deleted=True) yields exactly the soft-deleted items",
    "store-soft-delete": "move(delete=True) hides an item from live reads and keeps it for deleted=True reads",
    "store-undelete": "move(undelete=True) brings a soft-deleted item back",
    "store-rename": "move(name, new_name) renames, replacing an existing target",
    "store-change-level": "move(change_level=True) moves an item to the last configured level, keeping its value",
    "store-set-levels": "set_levels() with the old level still listed keeps every item readable",
    "store-hash": "hash() is the hex digest of the value",
    "store-layout": "an item at level n lies under n directories of 2 hex digits of its key (hex) or SHA-256 (hash)",
    "store-gather": "gather() returns the concatenated ranges; a short range raises ReadRangeError",
    "store-defrag": "defrag() stores the concatenated ranges under the target or their digest",
    "store-stats": "stats count every store/delete/move call and the exact store and load volumes",
    "store-reopen": "flush(), close() and open() keep every item",
    "store-quota": "quota() returns {'limit': int, 'usage': int}",
    "names-invalid-rejected": "an invalid name raises ValueError and changes nothing",
    "store-lifecycle": "create(), create_levels() and destroy() of every example work",
}

# namespace -> how its keys look
HEX_NAMESPACES = ("data", "index")
ASCII_NAMESPACES = ("", "config")
LEVELS = (0, 1, 2)

# a root key named like a namespace would be that namespace's directory
ascii_keys = st.text(NAME_CHARS, min_size=1, max_size=93).filter(
    lambda key: _valid(key) and _valid("config/" + key) and key not in HEX_NAMESPACES + ASCII_NAMESPACES
)
hex_keys = st.text(HEX, min_size=8, max_size=90)  # "index/" + 90 is still a valid name
invalid_names = st.one_of(
    st.sampled_from(
        [
            "Data/abcd",
            "data/ABCD",
            "data/ab cd",
            "data\\abcd",
            "data/../x",
            "/data",
            "data/",
            "",
            "data/x.tmp",
            "data/x.del",
            "data/x.hid",
            "a/b/c",
            "data/" + "a" * 96,
            "data/\u00e4",
        ]
    ),
    st.text(min_size=1, max_size=12).filter(lambda s: not _valid(s)),
)


def _valid(name) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def _name(namespace, key):
    return f"{namespace}/{key}" if namespace else key


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, make_store):
        super().__init__()
        self.make_store = make_store
        self.store = None

    @initialize(
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
    def create_store(self, data_level, index_levels, nesting, precreate, two_stores, items):
        self.nesting = nesting
        self.levels = {"": [0], "config": [0], "data": [data_level], "index": list(index_levels)}
        config = {_ns_key(ns): {"levels": list(levels)} for ns, levels in self.levels.items()}
        config["data/"]["nesting"] = nesting
        # with two_stores, a second Store object on the same location takes turns with the first
        # (rule switch_store): each must see every change the other made
        self.stores = [self.make_store(config) for _ in range(2 if two_stores else 1)]
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
        # a few items to start with, so that short runs read, move and delete something real
        for ns, seed, size, soft_deleted in items:
            key = hashlib.sha256(str(seed).encode()).hexdigest()[: 8 + seed % 50]
            if ns not in HEX_NAMESPACES:
                key = f"item-{seed}"
            value = (hashlib.sha256(key.encode()).digest() * (size // 32 + 1))[:size]
            self.store.store(_name(ns, key), value)
            self.touched.add(ns)
            self._put(ns, key, self._find(ns, key, False), value)
            self.expected_calls["store"] += 1
            self.expected_volume["store"] += len(value)
            if soft_deleted:
                level = self._find(ns, key, False)
                self.store.move(_name(ns, key), delete=True)
                self._put(ns, key, level, self._take(ns, key, level), deleted=True)
                self.expected_calls["move"] += 1

    @property
    def expected_calls(self):
        return self.expected[self.current][0]

    @property
    def expected_volume(self):
        return self.expected[self.current][1]

    def _open(self):
        with no_error("store-reopen", "Store.open()"):
            self.store.open()
        self.opened[self.current] = True

    def teardown(self):
        if self.store is None:
            return
        for store, opened in zip(self.stores, self.opened, strict=True):
            if opened:
                store.close()
        with no_error("store-lifecycle", "Store.destroy() at the end of an example"):
            self.stores[0].destroy()

    @precondition(lambda self: self.store is not None and len(self.stores) > 1)
    @rule()
    def switch_store(self):
        self.current = 1 - self.current
        self.store = self.stores[self.current]

    # --- model helpers ---
    def _table(self, deleted):
        return self.deleted if deleted else self.live

    def _find(self, ns, key, deleted):
        """The level the Store resolves *key* to: the first configured one holding it, else the last."""
        levels = self.levels[ns]
        held = self._table(deleted)[ns].get(key, {})
        for level in levels:
            if level in held:
                return level
        return levels[-1]

    def _value(self, ns, key, deleted=False):
        return self._table(deleted)[ns].get(key, {}).get(self._find(ns, key, deleted))

    def _put(self, ns, key, level, value, deleted=False):
        self._table(deleted)[ns].setdefault(key, {})[level] = value

    def _take(self, ns, key, level, deleted=False):
        held = self._table(deleted)[ns][key]
        value = held.pop(level)
        if not held:
            del self._table(deleted)[ns][key]
        return value

    def _visible(self, ns, deleted):
        """(key, size) of every item a listing shows, sorted."""
        levels = set(self.levels[ns])
        return sorted(
            (key, len(value))
            for key, held in self._table(deleted)[ns].items()
            for level, value in held.items()
            if level in levels
        )

    def _draw_key(self, data, ns, label, deleted=False, existing_only=False):
        keys = sorted(self._table(deleted)[ns])
        if keys and (existing_only or data.draw(st.sampled_from([True, True, True, False]), label=f"{label} exists")):
            return data.draw(st.sampled_from(keys), label=label)
        if existing_only:
            return None
        new = hex_keys if ns in HEX_NAMESPACES else ascii_keys
        return data.draw(new, label=label)

    def _draw_ns(self, data, label="namespace"):
        # mostly a namespace that holds something, so that reads find what they look for
        used = sorted(ns for ns in self.levels if self.live[ns] or self.deleted[ns])
        return data.draw(st.sampled_from(used * 3 + sorted(self.levels)), label=label)

    # --- rules ---
    @rule(data=st.data())
    def store_item(self, data):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key")
        value = data.draw(values(), label="value")
        with no_error("store-load", f"store({_name(ns, key)!r}, {len(value)} bytes)"):
            self.store.store(_name(ns, key), value)
        self.touched.add(ns)
        self._put(ns, key, self._find(ns, key, False), value)
        self.expected_calls["store"] += 1
        self.expected_volume["store"] += len(value)

    @rule(data=st.data(), deleted=st.booleans())
    def load_item(self, data, deleted):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted)
        name = _name(ns, key)
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
    def info_item(self, data, deleted):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted)
        value = self._value(ns, key, deleted)
        with no_error("store-info", f"info({_name(ns, key)!r}, deleted={deleted})"):
            info = self.store.info(_name(ns, key), deleted=deleted)
        if value is None:
            expect("store-missing", not info.exists, f"info({_name(ns, key)!r}, deleted={deleted}) = {info}")
        else:
            expect(
                "store-info",
                info.exists and info.size == len(value) and not info.directory,
                f"info({_name(ns, key)!r}, deleted={deleted}) = {info}, expected size {len(value)}",
            )

    @rule(data=st.data(), deleted=st.booleans())
    def delete_item(self, data, deleted):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted)
        name = _name(ns, key)
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
        expect(
            "store-delete",
            not self.store.info(name, deleted=deleted).exists or self._value(ns, key, deleted) is not None,
            f"after delete({name!r}, deleted={deleted}) info() still shows it",
        )

    @rule(data=st.data())
    def soft_delete(self, data):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key")
        name = _name(ns, key)
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

    @rule(data=st.data())
    def undelete(self, data):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key", deleted=True)
        name = _name(ns, key)
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

    @rule(data=st.data(), deleted=st.booleans())
    def rename(self, data, deleted):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "source", deleted)
        new_ns = ns if data.draw(st.booleans(), label="same namespace") else self._draw_ns(data, "target namespace")
        new_key = self._draw_key(data, new_ns, "target", deleted)
        self._rename(ns, key, new_ns, new_key, deleted)

    @precondition(lambda self: self.store is not None and any(len(keys) >= 2 for keys in self.live.values()))
    @rule(data=st.data())
    def rename_onto_existing(self, data):
        ns = data.draw(
            st.sampled_from(sorted(ns for ns, keys in self.live.items() if len(keys) >= 2)), label="namespace"
        )
        key = data.draw(st.sampled_from(sorted(self.live[ns])), label="source")
        new_key = data.draw(st.sampled_from(sorted(set(self.live[ns]) - {key})), label="target")
        self._rename(ns, key, ns, new_key, False)

    def _rename(self, ns, key, new_ns, new_key, deleted):
        if (ns, key) == (new_ns, new_key):
            return
        name, new_name = _name(ns, key), _name(new_ns, new_key)
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
        got = self.store.load(new_name, deleted=deleted)
        self.expected_volume["load"] += len(got)
        expect("store-rename", got == expected, f"after move({name!r}, {new_name!r}), the target holds other data")

    @rule(data=st.data(), deleted=st.booleans())
    def change_level(self, data, deleted):
        ns = data.draw(st.sampled_from(HEX_NAMESPACES), label="namespace")
        key = self._draw_key(data, ns, "key", deleted, existing_only=True)
        if key is None:
            return
        name = _name(ns, key)
        current, target = self._find(ns, key, deleted), self.levels[ns][-1]
        if current == target:
            return
        self.expected_calls["move"] += 1
        with no_error("store-change-level", f"move({name!r}, change_level=True, deleted={deleted})"):
            self.store.move(name, change_level=True, deleted=deleted)
        self._put(ns, key, target, self._take(ns, key, current, deleted), deleted)
        expected = self._value(ns, key, deleted)
        got = self.store.load(name, deleted=deleted)
        self.expected_volume["load"] += len(got)
        expect("store-change-level", got == expected, f"after move({name!r}, change_level=True) the value differs")

    @rule(data=st.data())
    def set_levels(self, data):
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

    def _levels_arg(self):
        return {_ns_key(ns): list(levels) for ns, levels in self.levels.items()}

    @precondition(lambda self: self.store is not None and capabilities_of(self.store.backend).list)
    @rule(data=st.data(), deleted=st.booleans())
    def list_namespace(self, data, deleted):
        self._check_listing(self._draw_ns(data), deleted)

    @precondition(lambda self: self.store is not None and capabilities_of(self.store.backend).list)
    @rule()
    def list_everything(self):
        # through every Store object: a second one must see what the first one changed
        current = self.current
        for index in range(len(self.stores)):
            self.current, self.store = index, self.stores[index]
            for ns in sorted(self.levels):
                for deleted in (False, True):
                    self._check_listing(ns, deleted)
        self.current, self.store = current, self.stores[current]

    def _check_listing(self, ns, deleted):
        rule_id = "store-list-deleted" if deleted else "store-list"
        with no_error(rule_id, f"list({ns!r}, deleted={deleted})"):
            try:
                listed = [*self.store.list(ns, deleted=deleted)]
            except ObjectNotFound:
                # an object store drops a namespace directory with its last item
                listed = None
        expected = self._visible(ns, deleted)
        if listed is None:
            vanished = not expected and not self.store.backend.capabilities.needs_mkdir
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
    def layout(self, data):
        ns = data.draw(st.sampled_from(sorted(ns for ns in self.levels if self.live[ns])), label="namespace")
        key = self._draw_key(data, ns, "key", existing_only=True)
        name = _name(ns, key)
        level = self._find(ns, key, False)
        strategy = HashNesting() if ns == "data" and self.nesting == "hash" else HexNesting()
        expected = strategy.nest(name, level)
        with no_error("store-layout", f"find({name!r})"):
            found = self.store.find(name)
        expect("store-layout", found == expected, f"find({name!r}) = {found!r}, expected {expected!r} (level {level})")
        info = self.store.chain.info(expected)
        value = self._value(ns, key)
        expect(
            "store-layout",
            info.exists and info.size == len(value),
            f"{name!r} is not stored as {expected!r} in the backend: info() = {info}",
        )

    @rule(data=st.data())
    def hash_item(self, data):
        ns = self._draw_ns(data)
        key = self._draw_key(data, ns, "key")
        name = _name(ns, key)
        value = self._value(ns, key)
        if value is None:
            with expect_raises("store-missing", ObjectNotFound, f"hash({name!r}) of a missing item"):
                self.store.hash(name)
            return
        with no_error("store-hash", f"hash({name!r})"):
            got = self.store.hash(name)
        expect("store-hash", got == hashlib.sha256(value).hexdigest(), f"hash({name!r}) = {got!r}")

    def _draw_sources(self, data, ns):
        keys = sorted(key for key in self.live[ns] if self._value(ns, key) is not None)
        if not keys:
            return None, None
        sources, expected = [], b""
        for _ in range(data.draw(st.integers(1, 3), label="ranges")):
            key = data.draw(st.sampled_from(keys), label="source")
            value = self._value(ns, key)
            # a negative offset counts from the end, as in load()
            offset = data.draw(st.integers(-len(value), len(value)), label="offset")
            start = len(value) + offset if offset < 0 else offset
            size = data.draw(st.integers(0, len(value) - start), label="size")
            sources.append((key, offset, size))
            expected += value[start : start + size]
        return sources, expected

    @rule(data=st.data(), short=st.booleans())
    def gather(self, data, short):
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
    def defrag(self, data, by_digest):
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
        got = self.store.load(_name(ns, key))
        self.expected_volume["load"] += len(got)
        expect("store-defrag", got == expected, f"the item defrag() stored as {key!r} holds other data")

    @rule(name=invalid_names, op=st.sampled_from(["store", "load", "info", "delete", "move", "hash"]))
    def invalid_name(self, name, op):
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
    def check_stats(self):
        if "stats" not in self.store.middleware:
            return
        stats = self.store.stats
        for op, count in self.expected_calls.items():
            expect(
                "store-stats",
                stats[f"{op}_calls"] == count,
                f"stats {op}_calls = {stats[f'{op}_calls']}, expected {count}",
            )
        for op, volume in self.expected_volume.items():
            expect(
                "store-stats",
                stats[f"{op}_volume"] == volume,
                f"stats {op}_volume = {stats[f'{op}_volume']}, expected {volume}",
            )

    @rule()
    def quota(self):
        with no_error("store-quota", "Store.quota()"):
            quota = self.store.quota()
        expect(
            "store-quota",
            isinstance(quota, dict) and all(type(quota.get(k)) is int for k in ("limit", "usage")),
            f"quota() = {quota!r}, expected {{'limit': int, 'usage': int}}",
        )

    @rule()
    def reopen(self):
        with no_error("store-reopen", "Store.flush() and Store.close()"):
            self.store.flush()
            self.store.close()
        self.opened[self.current] = False
        self._open()


def _ns_key(ns):
    return f"{ns}/" if ns else ""


def run_store_machine(make_store, settings=None) -> None:
    """Run the Store state machine.  *make_store(config)* returns a new, not yet created Store with
    that namespace config at a location that does not exist yet (or is empty)."""
    probe = make_store({"": {"levels": [0]}})
    caps = capabilities_of(probe.backend)
    require(
        caps.read and caps.write, "the Store state machine reads and writes: the backend declares read or write False"
    )
    run_state_machine_as_test(lambda: StoreMachine(make_store), settings=settings or kit_settings())
