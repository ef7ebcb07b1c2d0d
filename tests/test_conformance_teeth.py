"""The kit has teeth: each deliberately broken backend or link (one realistic bug each) is caught by
the backend state machine, by the rule that describes its bug, in every run, and the correct
memory backend passes the same runs.

"Every run" is measured: each variant runs with the kit's quick profile under several seeds and
must be caught under each (borgstore.testing._teeth).  The example checks' teeth are in
test_conformance_teeth_checks.py, the Store level's in test_conformance_teeth_store.py.
"""

import pytest
from hypothesis import Phase

from borgstore.backends._base import Capabilities, ItemInfo
from borgstore.backends.errors import BackendError, ObjectNotFound, PermissionDenied
from borgstore.backends.memory import MemoryBackend
from borgstore.backends.toolkit import check_backend_name
from borgstore.store import build_chain
from borgstore.testing import NotApplicable, kit_settings
from borgstore.testing._backend_checks import BACKEND_CHECKS
from borgstore.testing._backend_machine import run_backend_machine
from borgstore.testing._teeth import SEEDS, StaleLoadCache, caught, caught_in_every_run, quick_settings

QUICK = quick_settings()


class UnsortedList(MemoryBackend):
    """Yields a directory's entries in the order they were created, like a plain os.scandir()."""

    def _ordered(self, directory):
        return list(directory.items())


class TmpListed(MemoryBackend):
    """Forgets to leave out the .tmp items of stores in progress."""

    def list(self, name):
        self.check_open()
        check_backend_name(name, root_ok=True)
        with self._location.lock:
            entries = sorted(self._dir(name).items())
        for key, child in entries:
            directory = isinstance(child, dict)
            yield ItemInfo(name=key, exists=True, size=0 if directory else len(child.data), directory=directory)


class PartialLoadOffByOne(MemoryBackend):
    """Computes the end of a range as offset + size - 1, as an inclusive HTTP Range header would."""

    def load(self, name, *, size=None, offset=0):
        if size is None or offset < 0:
            return super().load(name, size=size, offset=offset)
        return super().load(name, size=max(size - 1, 0), offset=offset)


class NegativeOffsetIgnored(MemoryBackend):
    """Treats a negative offset as 0 instead of counting from the end."""

    def load(self, name, *, size=None, offset=0):
        return super().load(name, size=size, offset=max(offset, 0))


class MoveNotReplacing(MemoryBackend):
    """A move onto an existing item keeps the old target (like a link()-then-unlink() rename)."""

    def move(self, curr_name, new_name):
        self.check_open()
        with self._location.lock:
            item = self._item(curr_name)
            node, base = self._parent(new_name, create=True)
            old_node, old_base = self._parent(curr_name)
            del old_node[old_base]
            node.setdefault(base, item)


class DeleteMissingSilent(MemoryBackend):
    """Ignores a missing item on delete (like rm -f)."""

    def delete(self, name):
        try:
            super().delete(name)
        except ObjectNotFound:
            pass


class InfoSizeStale(MemoryBackend):
    """Caches the size of an item when it is first stored and never updates it."""

    def __init__(self, name=""):
        super().__init__(name)
        self._sizes = {}

    def store(self, name, value):
        super().store(name, value)
        self._sizes.setdefault(name, len(value))

    def info(self, name):
        info = super().info(name)
        if info.exists and not info.directory and name in self._sizes:
            return info._replace(size=self._sizes[name])
        return info


class MkdirNoParents(MemoryBackend):
    """mkdir() creates only the last directory, like os.mkdir() instead of os.makedirs()."""

    def mkdir(self, name):
        self.check_open()
        with self._location.lock:
            parent, _, base = name.rpartition("/")
            try:
                node = self._dir(parent)
            except ObjectNotFound:
                return  # the caller "should have" created the parents
            node.setdefault(base, {})


class ListMissingEmpty(MemoryBackend):
    """Lists a missing directory as empty instead of raising ObjectNotFound."""

    def list(self, name):
        try:
            yield from super().list(name)
        except ObjectNotFound:
            return


class LoadPastEndRaises(MemoryBackend):
    """Refuses a range that reaches past the end, like a strict HTTP server answering 416."""

    def load(self, name, *, size=None, offset=0):
        data = super().load(name)
        if size is not None and offset >= 0 and offset + size > len(data):
            raise BackendError(f"range {offset}+{size} not satisfiable")
        return super().load(name, size=size, offset=offset)


class MoveCopies(MemoryBackend):
    """move() copies and forgets to remove the source."""

    def move(self, curr_name, new_name):
        self.store(new_name, self.load(curr_name))


class GatherSilentlyShort(MemoryBackend):
    """gather() returns what it could read instead of raising ReadRangeError."""

    def gather(self, sources):
        return b"".join(self.load(name, size=size, offset=offset) for name, offset, size in sources)


class HashOfWrongData(MemoryBackend):
    """hash() digests the name instead of the value."""

    def hash(self, name, algorithm="sha256"):
        import hashlib

        self._item(name)
        return hashlib.new(algorithm, name.encode()).hexdigest()


class QuotaAsStrings(MemoryBackend):
    """quota() reports its numbers as strings, as parsed from a text file."""

    def quota(self):
        return {"limit": "-1", "usage": "-1"}


class ListTreeWithoutDeleted(MemoryBackend):
    """list_tree() leaves out soft-deleted (.del) items, as if they were temporary ones."""

    def list_tree(self, name):
        return (info for info in super().list_tree(name) if not info.name.endswith(".del"))


class NameSanitizing(MemoryBackend):
    """Replaces every character outside [a-z0-9._-/] with '_', as "safe key" sanitizers of object
    stores do, so 'a:b' and 'a_b' become one item and listings show names nobody stored."""

    @staticmethod
    def _fold(name):
        import re

        return re.sub(r"[^a-z0-9._/-]", "_", name)

    def store(self, name, value):
        return super().store(self._fold(name), value)

    def load(self, name, *, size=None, offset=0):
        return super().load(self._fold(name), size=size, offset=offset)

    def info(self, name):
        return super().info(self._fold(name))._replace(name=name)

    def delete(self, name):
        return super().delete(self._fold(name))

    def move(self, curr_name, new_name):
        return super().move(self._fold(curr_name), self._fold(new_name))

    def mkdir(self, name):
        return super().mkdir(self._fold(name))

    def rmdir(self, name):
        return super().rmdir(self._fold(name))

    def list(self, name):
        return super().list(self._fold(name))

    def list_tree(self, name):
        return super().list_tree(self._fold(name))


def stale_load_cache():
    return StaleLoadCache(build_chain(MemoryBackend()))


MACHINE_CAUGHT = [
    (UnsortedList, {"list-sorted"}),
    (TmpListed, {"list-no-tmp"}),
    (PartialLoadOffByOne, {"load-range"}),
    (NegativeOffsetIgnored, {"load-negative-offset"}),
    (MoveNotReplacing, {"move-replaces-target"}),
    (DeleteMissingSilent, {"delete-missing"}),
    (InfoSizeStale, {"info-size"}),
    (MkdirNoParents, {"mkdir-parents"}),
    (ListMissingEmpty, {"list-missing"}),
    (LoadPastEndRaises, {"load-past-end", "gather-short-read"}),
    (MoveCopies, {"move", "move-replaces-target"}),
    (GatherSilentlyShort, {"gather-short-read"}),
    (HashOfWrongData, {"hash"}),
    (QuotaAsStrings, {"quota"}),
    (ListTreeWithoutDeleted, {"list-tree-agrees"}),
    (stale_load_cache, {"delete", "move", "move-replaces-target"}),
    (
        NameSanitizing,
        {"list-entries", "list-walk", "store", "store-overwrite", "store-buffer-types", "move", "move-replaces-target"}
        | {"delete", "info-missing", "load-missing", "delete-missing", "hash-missing", "list-tree-agrees"},
    ),
]


@pytest.mark.parametrize("broken, rules", MACHINE_CAUGHT, ids=[b.__name__ for b, _ in MACHINE_CAUGHT])
def test_state_machine_catches_in_every_run(broken, rules):
    """The backend state machine catches the broken backend under every seed, by the rule of its bug."""
    caught_in_every_run(lambda seed: run_backend_machine(broken(), QUICK, seed=seed), rules, broken.__name__)


# the example check that catches each of the variants above with no randomness at all, so that a
# run of the kit catches them even where the state machine's random sequences happen to miss one
EXAMPLE_CHECK_CATCHING = {
    TmpListed: "tmp-items-hidden",
    HashOfWrongData: "hash-matches-hashlib",
    ListTreeWithoutDeleted: "list-tree-agrees",
}


@pytest.mark.parametrize("broken, rules", MACHINE_CAUGHT, ids=[b.__name__ for b, _ in MACHINE_CAUGHT])
def test_an_example_check_catches_it_too(broken, rules):
    """A fixed sequence of example checks catches each variant as well, by a rule of its bug."""
    check = BACKEND_CHECKS[EXAMPLE_CHECK_CATCHING.get(broken, "operations")]
    failure = caught(lambda: check(broken(), "quick"), broken.__name__)
    assert failure.rule in rules | {check.rule}, failure


@pytest.mark.parametrize("list_tree", [True, False], ids=["list_tree", "per-directory"])
def test_correct_memory_backend_passes_the_teeth_runs(list_tree):
    """The correct memory backend passes the same seeded runs and every example check."""
    for seed in SEEDS:
        run_backend_machine(MemoryBackend(list_tree=list_tree), QUICK, seed=seed)
    not_applicable = {"read-only-refuses-writes", "reserved-suffixes-refused"} | (
        set() if list_tree else {"list-tree-agrees"}
    )
    for rule, check in BACKEND_CHECKS.items():
        try:
            check(MemoryBackend(list_tree=list_tree), "quick")
        except NotApplicable:
            assert rule in not_applicable, rule


def test_list_tree_bug_is_caught_by_the_example_check_too():
    """list-tree-agrees as an example check catches a list_tree() that drops the .del items."""
    check = BACKEND_CHECKS["list-tree-agrees"]
    failure = caught(lambda: check(ListTreeWithoutDeleted(), "quick"), "ListTreeWithoutDeleted")
    assert failure.rule == "list-tree-agrees"
    assert ".del" in failure.message


def test_load_bug_found_by_gather_is_reported_as_the_load_bug():
    """A failure names the rule and the operation that broke it: an off-by-one load() found
    through gather() is reported as load-range, naming the load() call, not as a gather bug."""
    failure = caught(lambda: BACKEND_CHECKS["gather-large"](PartialLoadOffByOne(), "quick"), "PartialLoadOffByOne")
    assert failure.rule == "load-range"
    assert "load('data/large', size=" in failure.message


# --- capabilities turn checks off, visibly ---


class ListlessMemory(MemoryBackend):
    """A store that cannot list (like a write-only drop box), and says so."""

    def __init__(self, name=""):
        super().__init__(name, list_tree=False)
        self.capabilities = Capabilities(list=False, thread_safe=True)

    def list(self, name):
        raise NotImplementedError("this backend cannot list")


class ReadOnlyMemory(MemoryBackend):
    """A read-only view of a memory store: every write raises PermissionDenied."""

    def __init__(self, name=""):
        super().__init__(name, list_tree=False)
        self.capabilities = Capabilities(write=False, thread_safe=True)

    def _refuse(self, *args, **kwargs):
        self.check_open()
        raise PermissionDenied("this store is read-only")

    store = delete = move = mkdir = rmdir = _refuse


def test_list_capability_off_skips_list_rules_only():
    """A backend declaring list=False passes the state machine without list calls; list checks are not applicable."""
    settings = kit_settings("quick", phases=[Phase.generate], max_examples=20, database=None)
    run_backend_machine(ListlessMemory(), settings)
    with pytest.raises(NotApplicable, match="list"):
        BACKEND_CHECKS["tmp-items-hidden"](ListlessMemory(), "quick")
    BACKEND_CHECKS["closed-backend-raises"](ListlessMemory(), "quick")
    BACKEND_CHECKS["names-stay-inside-root"](ListlessMemory(), "quick")


def test_read_only_backend_refuses_writes_and_the_rest_is_not_applicable():
    """A read-only backend passes read-only-refuses-writes and gets 'not applicable' for
    everything that writes, never a silent pass."""
    BACKEND_CHECKS["read-only-refuses-writes"](ReadOnlyMemory(), "quick")
    with pytest.raises(NotApplicable, match="write"):
        run_backend_machine(ReadOnlyMemory(), QUICK)
    for rule in ("lifecycle", "create-non-empty", "large-value", "empty-value", "names-stay-inside-root"):
        with pytest.raises(NotApplicable):
            BACKEND_CHECKS[rule](ReadOnlyMemory(), "quick")
