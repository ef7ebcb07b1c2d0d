"""The backend-level state machine: random operation sequences, each result checked against a model.

Every mutating rule checks its own effect at once (load and info of what it changed), so a broken
move is reported as ``move-replaces-target`` and not as some later load that happened to notice.
Rule ids used here are listed in :data:`MACHINE_RULES`.
"""

import hashlib

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from ..backends.errors import BackendError, ObjectNotFound, ReadRangeError
from ..constants import DEL_SUFFIX, TMP_SUFFIX
from ._model import INTERNAL_ROOT_ITEMS, TreeModel, ancestors, join
from ._rules import capabilities_of, expect, expect_raises, no_error, require
from ._settings import kit_settings
from ._strategies import HEX, ascii_components, backend_leaves, directory_paths, values

#: rule id -> the promise it stands for (shown by ``python -m borgstore check``)
MACHINE_RULES = {
    "store": "a stored value loads back whole and info() shows its size",
    "store-overwrite": "storing onto an existing item replaces its value",
    "store-buffer-types": "store() accepts bytes, bytearray and a 1-D memoryview",
    "info-item": "info() of an item: exists=True, directory=False",
    "info-size": "info() reports the size of the current value, also after an overwrite or move",
    "info-directory": "info() of a directory: exists=True, directory=True",
    "info-missing": "info() of a missing name: exists=False, no exception",
    "load-whole": "load() without range returns the whole value",
    "load-range": "load(offset=, size=) returns exactly value[offset:offset+size]",
    "load-negative-offset": "a negative offset counts from the end (clamped at the start)",
    "load-past-end": "a range past the end returns the bytes up to the end, maybe none, without error",
    "load-missing": "load() of a missing item raises ObjectNotFound",
    "load-returns-bytes": "load() returns bytes",
    "delete": "delete() removes the item: info() shows exists=False afterwards",
    "delete-missing": "delete() of a missing item raises ObjectNotFound",
    "move": "move() onto a free name: the value is at the new name, the old one is gone",
    "move-replaces-target": "move() onto an existing item replaces it",
    "move-missing": "move() of a missing item raises ObjectNotFound and changes nothing",
    "mkdir": "mkdir() creates a directory; an existing one is fine",
    "mkdir-parents": "mkdir() creates the missing parents too",
    "rmdir": "rmdir() removes an empty directory",
    "rmdir-non-empty": "rmdir() of a non-empty directory raises BackendError and removes nothing",
    "rmdir-missing": "rmdir() of a missing directory raises ObjectNotFound",
    "list-sorted": "list() yields entries sorted by name",
    "list-no-tmp": "list() never yields items ending in .tmp",
    "list-entries": "list() yields exactly the items and directories directly inside, with sizes",
    "list-missing": "list() of a missing directory raises ObjectNotFound",
    "list-tree": "walking the whole tree with list() shows exactly the stored items",
    "hash": "hash() is the hex digest of the value",
    "hash-missing": "hash() of a missing item raises ObjectNotFound",
    "gather": "gather() returns the concatenated ranges",
    "gather-short-read": "gather() with a range past the end raises ReadRangeError",
    "reopen": "close() and open() keep every item",
    "quota": "quota() returns {'limit': int, 'usage': int} (-1 where not tracked)",
    "tmp-store": "an item may be stored under a .tmp name (as a store in progress leaves it)",
    "create": "create() of a fresh location works (at the start of every example)",
    "open": "open() right after create() works",
    "destroy": "destroy() at the end of every example works",
}


class BackendMachine(RuleBasedStateMachine):
    """Drives one backend object; each example creates the store anew and destroys it at the end."""

    def __init__(self, backend, big: int):
        super().__init__()
        self.backend = backend
        self.caps = capabilities_of(backend)
        self.big = big
        self.model = TreeModel(implied_dirs=not self.caps.needs_mkdir, reserved_suffixes=reserved_suffixes(backend))
        self.is_open = False
        with no_error("create", "create() of a fresh location"):
            backend.create()
        with no_error("open", "open() right after create()"):
            backend.open()
        self.is_open = True

    def teardown(self):
        if self.is_open:
            self.backend.close()
            self.is_open = False
        with no_error("destroy", "destroy() at the end of an example"):
            self.backend.destroy()

    @initialize(data=st.data())
    def populate(self, data):
        """Start most examples with a few items, so that short runs already read, move and list."""
        if not self.caps.write:
            return
        for _ in range(data.draw(st.integers(0, 4), label="items to start with")):
            self._store(data, self._names(data, "name"))

    # --- what to draw ---
    def _names(self, data, label, existing=True, missing=True, directories=False):
        # strategies are drawn piece by piece from cached ones: building a new one_of per draw
        # costs more than the whole backend call on a fast backend
        kinds = []
        if existing and self.model.items:
            kinds += ["existing", "existing"]
        if missing:
            kinds += ["new", "new in a new directory"] + (["deleted or moved"] if self.model.gone else [])
        if directories:
            kinds.append("directory")
        kind = data.draw(st.sampled_from(kinds), label=f"{label} is") if len(kinds) > 1 else kinds[0]
        if kind == "existing":
            return data.draw(st.sampled_from(sorted(self.model.items)), label=label)
        if kind == "deleted or moved":
            return data.draw(st.sampled_from(sorted(self.model.gone)), label=label)
        if kind == "directory":
            return data.draw(st.sampled_from(sorted(self.model.all_dirs())), label=label)
        if kind == "new":
            parent = data.draw(st.sampled_from(sorted(self.model.all_dirs())), label=f"{label}'s directory")
        else:
            parent = data.draw(directory_paths, label=f"{label}'s new directory")
        return join(parent, data.draw(backend_leaves, label=f"{label}'s leaf"))

    def _value(self, data):
        value = data.draw(values(self.big), label="value")
        kind = data.draw(st.sampled_from(["bytes", "bytes", "bytearray", "memoryview"]), label="type")
        buffer = {"bytes": value, "bytearray": bytearray(value), "memoryview": memoryview(value)}[kind]
        return value, buffer

    # --- checks shared by the rules ---
    def _check_item(self, name, load_rule, what):
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

    def _check_missing(self, name, rule, what):
        if self.caps.read:
            with no_error(rule, f"info({name!r}) after {what}"):
                info = self.backend.info(name)
            expect(rule, not info.exists, f"after {what}, info({name!r}) still shows {info}")

    # --- rules ---
    @precondition(lambda self: self.caps.write)
    @rule(data=st.data())
    def store(self, data):
        self._store(data, self._names(data, "name"))

    @precondition(lambda self: self.caps.write and self.model.items)
    @rule(data=st.data())
    def overwrite(self, data):
        self._store(data, self._names(data, "name", missing=False))

    def _store(self, data, name):
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

    @precondition(lambda self: self.caps.write)
    @rule(data=st.data())
    def store_tmp_item(self, data):
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

    @precondition(lambda self: self.caps.read and self.model.items)
    @rule(data=st.data())
    def load_from_end(self, data):
        self._load(data, self._names(data, "name", missing=False), "negative-offset")

    @precondition(lambda self: self.caps.read)
    @rule(data=st.data())
    def load(self, data):
        name = self._names(data, "name", missing=not self.model.items or data.draw(st.booleans(), label="missing"))
        self._load(data, name)

    def _load(self, data, name, mode=None):
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
    def info(self, data):
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
    def delete(self, data):
        name = self._names(data, "name")
        if name in self.model.items:
            with no_error("delete", f"delete({name!r})"):
                self.backend.delete(name)
            self.model.delete(name)
            self._check_missing(name, "delete", f"delete({name!r})")
        elif not self.model.blocked(name):
            with expect_raises("delete-missing", ObjectNotFound, f"delete({name!r}) of a missing item"):
                self.backend.delete(name)

    @precondition(lambda self: self.caps.write)
    @rule(data=st.data())
    def move(self, data):
        self._move(self._names(data, "source"), self._names(data, "target"))

    @precondition(lambda self: self.caps.write and len(self.model.items) >= 2)
    @rule(data=st.data())
    def move_onto_existing(self, data):
        source = self._names(data, "source", missing=False)
        target = data.draw(st.sampled_from(sorted(set(self.model.items) - {source})), label="target")
        self._move(source, target)

    def _move(self, source, target):
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
    def mkdir(self, data):
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
    def rmdir(self, data):
        candidates = sorted(self.model.all_dirs() - {""})
        options = [st.builds(join, st.sampled_from(sorted(self.model.all_dirs())), directory_paths)]
        if candidates:
            options.append(st.sampled_from(candidates))
        name = data.draw(st.one_of(options), label="directory")
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
            self._check_missing(name, "rmdir", f"rmdir({name!r})")
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
    def list(self, data):
        existing = sorted(self.model.all_dirs())
        name = data.draw(
            st.one_of(st.sampled_from(existing), st.builds(join, st.sampled_from(existing), directory_paths)),
            label="directory",
        )
        if not self.model.is_dir(name):
            if self.model.blocked(name) or any(a in self.model.items for a in ancestors(name)):
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

    def _check_listing(self, name, rule_id="list-entries"):
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
    def walk_whole_tree(self):
        found = {}
        pending = [""]
        while pending:
            directory = pending.pop()
            for info in self._check_listing(directory, "list-tree"):
                path = join(directory, info.name)
                if info.directory:
                    pending.append(path)
                elif path not in INTERNAL_ROOT_ITEMS:
                    found[path] = info.size
        expected = {name: len(value) for name, value in self.model.items.items()}
        expect("list-tree", found == expected, f"the tree holds {found}, expected {expected}")

    @precondition(lambda self: self.caps.read and self.model.items)
    @rule(data=st.data())
    def hash(self, data):
        name = self._names(data, "name", missing=False)
        algorithm = data.draw(
            st.sampled_from(sorted(set(self.caps.hash_algorithms) | {"sha256", "md5"})), label="algorithm"
        )
        with no_error("hash", f"hash({name!r}, {algorithm!r})"):
            got = self.backend.hash(name, algorithm)
        expected = hashlib.new(algorithm, self.model.items[name]).hexdigest()
        expect("hash", got == expected, f"hash({name!r}, {algorithm!r}) = {got!r}, expected {expected!r}")

    @precondition(lambda self: self.caps.read)
    @rule(data=st.data())
    def hash_missing(self, data):
        name = self._names(data, "name", existing=False)
        if name in self.model.items or self.model.blocked(name):
            return
        with expect_raises("hash-missing", ObjectNotFound, f"hash({name!r}) of a missing item"):
            self.backend.hash(name)

    @precondition(lambda self: self.caps.read and self.model.items)
    @rule(data=st.data())
    def gather(self, data):
        count = data.draw(st.integers(1, 3), label="count")
        sources, expected = [], b""
        for _ in range(count):
            name = self._names(data, "source", missing=False)
            value = self.model.items[name]
            offset = data.draw(st.integers(0, len(value)), label="offset")
            size = data.draw(st.integers(0, len(value) - offset), label="size")
            sources.append((name, offset, size))
            expected += value[offset : offset + size]
        short = data.draw(st.booleans(), label="short")
        if short:
            name = self._names(data, "short source", missing=False)
            value = self.model.items[name]
            offset = data.draw(st.integers(0, len(value)), label="offset")
            sources.append((name, offset, len(value) - offset + data.draw(st.integers(1, 9), label="excess")))
            with expect_raises("gather-short-read", ReadRangeError, f"gather({sources!r}) with a range past the end"):
                self.backend.gather(sources)
            return
        with no_error("gather", f"gather({sources!r})"):
            got = self.backend.gather(sources)
        expect("gather", got == expected, f"gather({sources!r}) gave {_show(got)}, expected {_show(expected)}")

    @rule()
    def quota(self):
        with no_error("quota", "quota()"):
            quota = self.backend.quota()
        expect(
            "quota",
            isinstance(quota, dict) and all(type(quota.get(k)) is int for k in ("limit", "usage")),
            f"quota() = {quota!r}, expected {{'limit': int, 'usage': int}}",
        )

    @rule()
    def reopen(self):
        with no_error("reopen", "flush(), close() and open()"):
            self.backend.flush()
            self.backend.close()
            self.is_open = False
            self.backend.open()
            self.is_open = True
        if self.model.items and self.caps.read:
            name = sorted(self.model.items)[0]
            self._check_item(name, "reopen", "close() and open()")


def reserved_suffixes(backend) -> tuple:
    """Name suffixes a chain uses for its own purposes: none since soft deletion moved into the
    Store (every link sees ``.del`` items as plain items)."""
    return ()


def _show(data) -> str:
    if data is None:
        return "None"
    if len(data) <= 40:
        return repr(bytes(data))
    return f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}>"


def run_backend_machine(backend, settings=None, big: int = 3 * 1024 * 1024) -> None:
    """Run the state machine on *backend*: a fresh backend object whose location does not exist yet
    (or is empty).  Raises ConformanceFailure (with the rule's id) for the shrunk failing sequence."""
    caps = capabilities_of(backend)
    require(caps.write, "the state machine writes: the backend declares write=False")
    run_state_machine_as_test(lambda: BackendMachine(backend, big), settings=settings or kit_settings())
