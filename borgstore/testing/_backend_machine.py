"""The backend-level state machine: random operation sequences, each result checked against a model.

Every mutating rule checks its own effect at once (load and info of what it changed), so a broken
move is reported as ``move-replaces-target`` and not as some later load that happened to notice.
Rule ids used here are listed in :data:`MACHINE_RULES`.
"""

from typing import Any, List, Optional, Union

import hypothesis
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from ..backends._base import BackendBase, ItemInfo, new_hash
from ..backends.errors import BackendError, ObjectNotFound, ReadRangeError
from ..constants import DEL_SUFFIX, TMP_SUFFIX
from ..middleware._base import Link
from ._backend_base import gather_or_diagnose, opened_capabilities, show_bytes as _show, show_names
from ._machine_rules import MACHINE_RULES  # noqa: F401  (imported from here by callers)
from ._model import INTERNAL_ROOT_ITEMS, TreeModel, ancestors, join
from ._rules import ConformanceFailure, capabilities_of, expect, expect_raises, no_error, require
from ._settings import kit_settings
from ._strategies import HEX, ascii_components, backend_leaves, directory_paths, values


class BackendMachine(RuleBasedStateMachine):
    """Drives one backend object; each example creates the store anew and destroys it at the end."""

    def __init__(self, backend: Union[BackendBase, Link], big: int):
        super().__init__()
        self.backend: Any = backend  # a backend or a chain: the operations of the contract
        self.big = big
        self.is_open = False
        with no_error("create", "create() of a fresh location"):
            backend.create()
        with no_error("open", "open() right after create()"):
            backend.open()
        self.is_open = True
        # read once open: a backend may learn its capabilities from the storage it connects to
        self.caps = capabilities_of(backend)
        self.model = TreeModel(implied_dirs=not self.caps.needs_mkdir)

    def teardown(self) -> None:
        if self.is_open:
            self.backend.close()
            self.is_open = False
        with no_error("destroy", "destroy() at the end of an example"):
            self.backend.destroy()

    @initialize(data=st.data())
    def populate(self, data: st.DataObject) -> None:
        """Start most examples with a few items, so that short runs already read, move and list."""
        if not self.caps.write:
            return
        for _ in range(data.draw(st.integers(0, 6), label="items to start with")):
            self._store(data, self._names(data, "name"))
        # one move onto an item holding other bytes, in every example that has two such: the
        # replacing move is the one a backend gets wrong most easily (link then unlink, copy then
        # delete), and the random rules alone reached it in too few runs
        items = sorted(self.model.items)
        pairs = [(a, b) for a in items for b in items if a != b and self.model.items[a] != self.model.items[b]]
        if pairs:
            self._move(*data.draw(st.sampled_from(pairs[:20]), label="replacing move"))

    # --- what to draw ---
    def _names(
        self, data: st.DataObject, label: str, existing: bool = True, missing: bool = True, directories: bool = False
    ) -> str:
        # strategies are drawn piece by piece from cached ones: building a new one_of per draw
        # costs more than the whole backend call on a fast backend
        kinds = []
        if existing and self.model.items:
            kinds += ["existing", "existing"]
        if missing:
            kinds += ["new", "new in a new directory"] + (["deleted or moved"] if self.model.gone else [])
            if self.model.items:
                # an item and its soft-deleted twin side by side, as the Store keeps them
                kinds.append("soft-deleted twin")
        if directories:
            kinds.append("directory")
        kind = data.draw(st.sampled_from(kinds), label=f"{label} is") if len(kinds) > 1 else kinds[0]
        if kind == "existing":
            return data.draw(st.sampled_from(sorted(self.model.items)), label=label)
        if kind == "deleted or moved":
            return data.draw(st.sampled_from(sorted(self.model.gone)), label=label)
        if kind == "soft-deleted twin":
            return data.draw(st.sampled_from(sorted(self.model.items)), label=f"{label}'s twin") + DEL_SUFFIX
        if kind == "directory":
            return data.draw(st.sampled_from(sorted(self.model.all_dirs())), label=label)
        if kind == "new":
            parent = data.draw(st.sampled_from(sorted(self.model.all_dirs())), label=f"{label}'s directory")
        else:
            parent = data.draw(directory_paths, label=f"{label}'s new directory")
        leaf = data.draw(backend_leaves, label=f"{label}'s leaf")
        if leaf.endswith(tuple(self.caps.reserved_suffixes)):
            leaf = leaf.rsplit(".", 1)[0]  # the storage refuses these (rule reserved-suffixes-refused)
        return join(parent, leaf)

    def _value(self, data: st.DataObject) -> tuple[bytes, Union[bytes, bytearray, memoryview]]:
        value = data.draw(values(self.big), label="value")
        kind = data.draw(st.sampled_from(["bytes", "bytes", "bytearray", "memoryview"]), label="type")
        buffer = {"bytes": value, "bytearray": bytearray(value), "memoryview": memoryview(value)}[kind]
        return value, buffer

    # --- checks shared by the rules ---
    def _check_item(self, name: str, load_rule: str, what: str) -> None:
        value = self.model.items[name]
        if self.caps.read:
            with no_error(load_rule, f"load({name!r}) after {what}"):
                got = self.backend.load(name)
            expect(load_rule, got == value, f"after {what}, load({name!r}) gave {_show(got)}, expected {_show(value)}")
            with no_error("info-size", f"info({name!r}) after {what}"):
                info = self.backend.info(name)
            expect("info-item", info.exists and not info.directory, f"after {what}, info({name!r}) = {info}")
            expect(
                "info-size",
                info.size == len(value),
                f"after {what}, info({name!r}).size = {info.size}, expected {len(value)}",
            )

    def _check_missing(self, name: str, rule: str, what: str, item: bool = True) -> None:
        """*name* is gone: info() says so, and for an item load() too (a cache may still have it)."""
        if self.caps.read:
            with no_error(rule, f"info({name!r}) after {what}"):
                info = self.backend.info(name)
            expect(rule, not info.exists, f"after {what}, info({name!r}) still shows {info}")
            if item:
                with expect_raises(rule, ObjectNotFound, f"after {what}, load({name!r}) of the old name"):
                    got = self.backend.load(name)
                    raise ConformanceFailure(rule, f"after {what}, load({name!r}) of the old name gave {_show(got)}")

    # --- rules ---
    @precondition(lambda self: self.caps.write)
    @rule(data=st.data())
    def store(self, data: st.DataObject) -> None:
        self._store(data, self._names(data, "name"))

    @precondition(lambda self: self.caps.write and self.model.items)
    @rule(data=st.data())
    def overwrite(self, data: st.DataObject) -> None:
        self._store(data, self._names(data, "name", missing=False))

    def _store(self, data: st.DataObject, name: str) -> None:
        if self.model.blocked(name):
            return
        value, buffer = self._value(data)
        overwrite = name in self.model.items
        rule_id = "store-overwrite" if overwrite else "store"
        if type(buffer) is not bytes:
            rule_id = "store-buffer-types"
        with no_error(rule_id, f"store({name!r}, {type(buffer).__name__} of {len(value)} bytes)"):
            self.backend.store(name, buffer)
        self.model.store(name, value)
        self._check_item(name, rule_id, f"store({name!r})")

    @precondition(lambda self: self.caps.write and TMP_SUFFIX not in self.caps.reserved_suffixes)
    @rule(data=st.data())
    def store_tmp_item(self, data: st.DataObject) -> None:
        parent = data.draw(st.sampled_from(sorted(self.model.all_dirs())), label="directory")
        name = join(
            parent,
            data.draw(st.one_of(st.text(HEX, min_size=2, max_size=8), ascii_components), label="leaf") + TMP_SUFFIX,
        )
        if self.model.blocked(name) or name in self.model.items:
            return
        with no_error("tmp-store", f"store({name!r})"):
            self.backend.store(name, b"partial")
        self.model.hidden.add(name)
        if not self.model.implied_dirs:
            self.model.dirs.update(ancestors(name))
        if self.caps.list:
            self._check_listing(parent)

    @precondition(lambda self: self.caps.read and self.model.items)
    @rule(data=st.data())
    def load_from_end(self, data: st.DataObject) -> None:
        self._load(data, self._names(data, "name", missing=False), "negative-offset")

    @precondition(lambda self: self.caps.read)
    @rule(data=st.data())
    def load(self, data: st.DataObject) -> None:
        name = self._names(data, "name", missing=not self.model.items or data.draw(st.booleans(), label="missing"))
        self._load(data, name)

    def _load(self, data: st.DataObject, name: str, mode: Optional[str] = None) -> None:
        if name not in self.model.items:
            if not self.model.blocked(name):
                with expect_raises("load-missing", ObjectNotFound, f"load({name!r}) of a missing item"):
                    self.backend.load(name)
            return
        value = self.model.items[name]
        n = len(value)
        mode = mode or data.draw(st.sampled_from(["whole", "range", "negative-offset", "past-end"]), label="mode")
        offset, size = 0, None
        if mode == "range":
            offset = data.draw(st.integers(0, n), label="offset")
            size = data.draw(st.one_of(st.none(), st.integers(0, n - offset)), label="size")
        elif mode == "negative-offset":
            offset = data.draw(st.integers(-n - 3, -1), label="offset")
            size = data.draw(st.one_of(st.none(), st.integers(0, n + 3)), label="size")
        elif mode == "past-end":
            offset = data.draw(st.integers(0, n + 5), label="offset")
            size = data.draw(st.integers(max(n - offset + 1, 0), n + 6), label="size")
        start = max(n + offset, 0) if offset < 0 else offset
        expected = value[start:] if size is None else value[start : start + size]
        rule_id = f"load-{mode}"
        with no_error(rule_id, f"load({name!r}, size={size}, offset={offset})"):
            got = self.backend.load(name, size=size, offset=offset)
        expect("load-returns-bytes", isinstance(got, bytes), f"load() returned {type(got).__name__}")
        expect(
            rule_id,
            got == expected,
            f"load({name!r}, size={size}, offset={offset}) of {n} bytes gave {_show(got)}, expected {_show(expected)}",
        )

    @precondition(lambda self: self.caps.read)
    @rule(data=st.data())
    def info(self, data: st.DataObject) -> None:
        name = self._names(data, "name", directories=True)
        with no_error("info-missing", f"info({name!r})"):
            info = self.backend.info(name)
        if name in self.model.items:
            expect("info-item", info.exists and not info.directory, f"info({name!r}) = {info}")
            size = len(self.model.items[name])
            expect("info-size", info.size == size, f"info({name!r}).size = {info.size}, expected {size}")
        elif self.model.is_dir(name):
            if not (self.model.implied_dirs and not self.model.has_visible_below(name)):
                expect("info-directory", info.exists and info.directory, f"info({name!r}) of a directory = {info}")
        elif not self.model.blocked(name):
            expect("info-missing", not info.exists, f"info({name!r}) of a missing name = {info}")

    @precondition(lambda self: self.caps.write)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = self._names(data, "name")
        if name in self.model.items:
            with no_error("delete", f"delete({name!r})"):
                self.backend.delete(name)
            self.model.delete(name)
            self._check_missing(name, "delete", f"delete({name!r})")
            with expect_raises("delete-missing", ObjectNotFound, f"a second delete({name!r})"):
                self.backend.delete(name)
        elif not self.model.blocked(name):
            with expect_raises("delete-missing", ObjectNotFound, f"delete({name!r}) of a missing item"):
                self.backend.delete(name)

    @precondition(lambda self: self.caps.write)
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        # each kind of move equally often: drawing source and target independently rarely makes
        # one existing item replace another
        items = sorted(self.model.items)
        kinds = (
            ["of a missing item"] + ["onto a free name"] * bool(items) + ["onto an existing item"] * (len(items) > 1)
        )
        kind = data.draw(st.sampled_from(kinds), label="move")
        if kind == "onto an existing item":
            source = data.draw(st.sampled_from(items), label="source")
            others = [name for name in items if name != source]
            # a target holding other bytes than the source, where there is one: a move that kept
            # the old target would be invisible between equal values
            differing = [name for name in others if self.model.items[name] != self.model.items[source]]
            target = data.draw(st.sampled_from(differing or others), label="target")
        elif kind == "onto a free name":
            source = data.draw(st.sampled_from(items), label="source")
            target = self._names(data, "target", existing=False)
        else:
            source, target = self._names(data, "source", existing=False), self._names(data, "target")
        self._move(source, target)

    def _move(self, source: str, target: str) -> None:
        if target == source or self.model.blocked(target) or target.startswith(source + "/"):
            return
        if source not in self.model.items:
            if self.model.blocked(source):
                return
            before = self.model.items.get(target)
            with expect_raises("move-missing", ObjectNotFound, f"move({source!r}, {target!r}) of a missing item"):
                self.backend.move(source, target)
            if before is not None and self.caps.read:
                with no_error("move-missing", f"load({target!r}) after a failed move onto it"):
                    after = self.backend.load(target)
                expect("move-missing", after == before, f"a failed move({source!r}, {target!r}) changed the target")
            return
        taken = target in self.model.items
        rule_id = "move-replaces-target" if taken else "move"
        with no_error(rule_id, f"move({source!r}, {target!r})"):
            self.backend.move(source, target)
        self.model.move(source, target)
        self._check_item(target, rule_id, f"move({source!r}, {target!r})")
        self._check_missing(source, rule_id, f"move({source!r}, {target!r})")

    @precondition(lambda self: self.caps.write and self.caps.needs_mkdir)
    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        parent = data.draw(st.sampled_from(sorted(self.model.all_dirs())), label="under")
        name = join(parent, data.draw(directory_paths, label="path"))
        if name in self.model.items or self.model.blocked(name) and not self.model.is_dir(name):
            return
        missing_parents = [a for a in ancestors(name) if not self.model.is_dir(a)]
        existed = self.model.is_dir(name)
        with no_error("mkdir-parents" if missing_parents else "mkdir", f"mkdir({name!r})"):
            self.backend.mkdir(name)
        self.model.mkdir(name)
        if self.caps.read:
            for directory in missing_parents + [name]:
                info = self.backend.info(directory)
                rule_id = "mkdir" if directory == name or existed else "mkdir-parents"
                expect(rule_id, info.exists and info.directory, f"after mkdir({name!r}), info({directory!r}) = {info}")

    @precondition(lambda self: self.caps.write and self.caps.needs_mkdir)
    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        candidates = sorted(self.model.all_dirs() - {""})
        if candidates and data.draw(st.sampled_from([True, True, False]), label="an existing directory"):
            name = data.draw(st.sampled_from(candidates), label="directory")
        else:
            parent = data.draw(st.sampled_from(sorted(self.model.all_dirs())), label="under")
            name = join(parent, data.draw(directory_paths, label="directory"))
        if name in self.model.items:
            with expect_raises("conflict-rmdir-of-item", BackendError, f"rmdir({name!r}) of an item"):
                self.backend.rmdir(name)
            return
        if not self.model.is_dir(name):
            if self.model.blocked(name) or any(a in self.model.items for a in ancestors(name)):
                return
            with expect_raises("rmdir-missing", ObjectNotFound, f"rmdir({name!r}) of a missing directory"):
                self.backend.rmdir(name)
            return
        if self.model.dir_is_empty(name):
            with no_error("rmdir", f"rmdir({name!r}) of an empty directory"):
                self.backend.rmdir(name)
            self.model.rmdir(name)
            self._check_missing(name, "rmdir", f"rmdir({name!r})", item=False)
            if self.caps.list:
                with expect_raises("list-missing", ObjectNotFound, f"list({name!r}) after rmdir({name!r})"):
                    [*self.backend.list(name)]
            return
        with expect_raises("rmdir-non-empty", BackendError, f"rmdir({name!r}) of a non-empty directory"):
            self.backend.rmdir(name)
        if self.caps.read:
            info = self.backend.info(name)
            expect("rmdir-non-empty", info.exists and info.directory, f"a refused rmdir({name!r}) removed it: {info}")
            for item in [n for n in self.model.items if n.startswith(name + "/")][:3]:
                expect("rmdir-non-empty", self.backend.info(item).exists, f"a refused rmdir({name!r}) lost {item!r}")

    @precondition(lambda self: self.caps.list)
    @rule(data=st.data())
    def list(self, data: st.DataObject) -> None:
        existing = sorted(self.model.all_dirs())
        name = data.draw(
            st.one_of(st.sampled_from(existing), st.builds(join, st.sampled_from(existing), directory_paths)),
            label="directory",
        )
        if not self.model.is_dir(name):
            # an item there (or above) makes list() a conflict, not a missing directory: the
            # conflict-list-of-item check covers that
            in_the_way = name in self.model.items or any(a in self.model.items for a in ancestors(name))
            if in_the_way or self.model.blocked(name):
                return
            if self.model.implied_dirs:
                with no_error("list-missing", f"list({name!r}) of a missing directory"):
                    try:
                        listed = [*self.backend.list(name)]
                    except ObjectNotFound:
                        listed = []
                expect("list-missing", not listed, f"list({name!r}) of a missing directory yielded {listed}")
                return
            with expect_raises("list-missing", ObjectNotFound, f"list({name!r}) of a missing directory"):
                [*self.backend.list(name)]
            return
        self._check_listing(name)

    def _check_listing(self, name: str, rule_id: str = "list-entries") -> List[ItemInfo]:
        with no_error(rule_id, f"list({name!r})"):
            listed = [*self.backend.list(name)]
        names = [info.name for info in listed]
        tmp = [n for n in names if n.endswith(TMP_SUFFIX)]
        expect("list-no-tmp", not tmp, f"list({name!r}) yielded temporary items {tmp}")
        expect("list-sorted", names == sorted(names), f"list({name!r}) is not sorted: {names}")
        expected = self.model.children(name)
        for info in listed:
            entry = expected.get(info.name)
            expect(rule_id, entry is not None, f"list({name!r}) yielded {info.name!r}, which is not there")
            assert entry is not None  # expect() raised otherwise
            expect(
                rule_id,
                bool(info.directory) == entry.directory,
                f"list({name!r}): {info.name!r} has directory={info.directory}, expected {entry.directory}",
            )
            if not entry.directory and not entry.optional:
                expect(
                    rule_id,
                    info.exists and info.size == entry.size,
                    f"list({name!r}): {info.name!r} has size {info.size}, expected {entry.size}",
                )
        missing = sorted(n for n, entry in expected.items() if not entry.optional and n not in names)
        expect(rule_id, not missing, f"list({name!r}) left out {missing}")
        expect(rule_id, len(set(names)) == len(names), f"list({name!r}) yielded a name twice: {names}")
        return listed

    @precondition(lambda self: self.caps.list)
    @rule()
    def walk_whole_tree(self) -> None:
        found = {}
        pending = [""]
        while pending:
            directory = pending.pop()
            for info in self._check_listing(directory, "list-walk"):
                path = join(directory, info.name)
                if info.directory:
                    pending.append(path)
                elif path not in INTERNAL_ROOT_ITEMS:
                    found[path] = info.size
        expected = {name: len(value) for name, value in self.model.items.items()}
        expect(
            "list-walk",
            found == expected,
            f"the walk found {show_names(set(found.items()) - set(expected.items()))} that the model does not hold "
            f"and missed {show_names(set(expected.items()) - set(found.items()))}",
        )
        if self.caps.list_tree:
            self._check_tree("")

    @precondition(lambda self: self.caps.list_tree)
    @rule(data=st.data())
    def list_tree(self, data: st.DataObject) -> None:
        directories = sorted(self.model.all_dirs())
        self._check_tree(data.draw(st.sampled_from(directories), label="directory"))

    def _check_tree(self, top: str) -> None:
        """list_tree(*top*) yields the model's items below *top*, by relative path, sorted, with sizes."""
        what = f"list_tree({top!r})"
        with no_error("list-tree-agrees", what):
            stream = [*self.backend.list_tree(top)]
        prefix = top + "/" if top else ""
        got = [(info.name, info.size) for info in stream if top or info.name not in INTERNAL_ROOT_ITEMS]
        expected = sorted(
            (name[len(prefix) :], len(value)) for name, value in self.model.items.items() if name.startswith(prefix)
        )
        expect(
            "list-tree-agrees",
            set(got) == set(expected),
            f"{what} yielded {show_names(set(got) - set(expected))} that the model does not hold and missed "
            f"{show_names(set(expected) - set(got))}",
        )
        expect("list-tree-agrees", got == expected, f"{what} is not sorted by path or yields an item twice")

    @precondition(lambda self: self.caps.read and self.model.items)
    @rule(data=st.data())
    def hash(self, data: st.DataObject) -> None:
        name = self._names(data, "name", missing=False)
        algorithm = data.draw(
            st.sampled_from(sorted(set(self.caps.hash_algorithms) | {"sha256", "md5"})), label="algorithm"
        )
        with no_error("hash", f"hash({name!r}, {algorithm!r})"):
            got = self.backend.hash(name, algorithm)
        value = self.model.items[name]
        expected = new_hash(algorithm, value).hexdigest()
        if got != expected:
            loaded = self.backend.load(name)
            expect("load-whole", loaded == value, f"load({name!r}) gave {_show(loaded)}, expected {_show(value)}")
            shown = f"hash({name!r}, {algorithm!r}) of {len(value)} bytes = {got!r}, expected {expected!r}"
            raise ConformanceFailure("hash", shown)

    @precondition(lambda self: self.caps.read)
    @rule(data=st.data())
    def hash_missing(self, data: st.DataObject) -> None:
        name = self._names(data, "name", existing=False)
        if name in self.model.items or self.model.blocked(name):
            return
        with expect_raises("hash-missing", ObjectNotFound, f"hash({name!r}) of a missing item"):
            self.backend.hash(name)

    @precondition(lambda self: self.caps.read and self.model.items)
    @rule(data=st.data())
    def gather(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(1, 3), label="count")
        sources = []
        for _ in range(count):
            name = self._names(data, "source", missing=False)
            value = self.model.items[name]
            offset = data.draw(st.integers(0, len(value)), label="offset")
            size = data.draw(st.integers(0, len(value) - offset), label="size")
            sources.append((name, offset, size))
        gather_or_diagnose(self.backend, sources, self.model.items, "gather")
        # the same ranges and one reaching past an end: every gather is also checked for that
        name = self._names(data, "short source", missing=False)
        value = self.model.items[name]
        offset = data.draw(st.integers(0, len(value)), label="offset")
        sources.append((name, offset, len(value) - offset + data.draw(st.integers(1, 9), label="excess")))
        with expect_raises("gather-short-read", ReadRangeError, f"gather({sources!r}) with a range past the end"):
            self.backend.gather(sources)

    @rule()
    def quota(self) -> None:
        with no_error("quota", "quota()"):
            quota = self.backend.quota()
        expect(
            "quota",
            isinstance(quota, dict) and all(type(quota.get(k)) is int for k in ("limit", "usage")),
            f"quota() = {quota!r}, expected {{'limit': int, 'usage': int}}",
        )

    @rule()
    def reopen(self) -> None:
        with no_error("reopen", "flush(), close() and open()"):
            self.backend.flush()
            self.backend.close()
            self.is_open = False
            self.backend.open()
            self.is_open = True
        if self.model.items and self.caps.read:
            name = sorted(self.model.items)[0]
            self._check_item(name, "reopen", "close() and open()")


def run_backend_machine(
    backend: Union[BackendBase, Link],
    settings: Optional[hypothesis.settings] = None,
    big: int = 3 * 1024 * 1024,
    seed: Optional[int] = None,
) -> None:
    """Run the state machine on *backend*: a fresh backend object whose location does not exist yet
    (or is empty).  Raises ConformanceFailure (with the rule's id) for the shrunk failing sequence.

    *big* is the size of the largest values (rarely drawn); *seed* fixes Hypothesis' random seed."""
    caps = opened_capabilities(backend)
    require(caps.write, "the state machine writes: the backend declares write=False")

    def machine() -> BackendMachine:
        return BackendMachine(backend, big)

    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    # any factory of machines works (as hypothesis documents), though its hint names a class
    run_state_machine_as_test(machine, settings=settings or kit_settings())  # type: ignore[arg-type]
