"""The kit has teeth: each deliberately broken backend (one realistic bug each) is caught, by the
rule that describes its bug, and the correct memory backend passes the same runs.

The state machine runs derandomized, so what is found (and shrunk) is the same on every run.
"""

import re
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, settings

from borgstore.backends._base import Capabilities, ItemInfo
from borgstore.backends.errors import BackendError, ObjectNotFound
from borgstore.backends.memory import MemoryBackend, _Item
from borgstore.middleware.softdelete import SoftDeleteMiddleware
from borgstore.middleware.stats import StatsMiddleware
from borgstore.store import Store, build_chain
from borgstore.testing import ConformanceFailure, NotApplicable
from borgstore.testing._backend_checks import BACKEND_CHECKS
from borgstore.testing._backend_machine import run_backend_machine
from borgstore.testing._store_checks import STORE_CHECKS, store_factory
from borgstore.testing._store_machine import run_store_machine

# enough to find every bug below, derandomized so that a run is reproducible; without shrinking,
# which takes most of the time and changes the sequence, not the rule that fails
TEETH_SETTINGS = settings(
    phases=[Phase.explicit, Phase.generate],
    max_examples=100,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)


class UnsortedList(MemoryBackend):
    """Yields a directory's entries in the order they were created, like a plain os.scandir()."""

    def _ordered(self, directory):
        return list(directory.items())


class ListNewestFirst(MemoryBackend):
    """Lists in descending order, like a server API that returns the newest names first."""

    def list(self, name):
        return iter(sorted(super().list(name), key=lambda info: info.name, reverse=True))


class ListingCachedPerConnection(MemoryBackend):
    """Caches directory listings per backend object and forgets them only on its own writes, so a
    second client's changes stay invisible (fine alone, wrong with two Store objects)."""

    def __init__(self, name=""):
        super().__init__(name)
        self._listings = {}

    def list(self, name):
        if name not in self._listings:
            self._listings[name] = list(super().list(name))
        return iter(self._listings[name])

    def _forget(self):
        self._listings.clear()

    def store(self, name, value):
        self._forget()
        return super().store(name, value)

    def delete(self, name):
        self._forget()
        return super().delete(name)

    def move(self, curr_name, new_name):
        self._forget()
        return super().move(curr_name, new_name)


class TmpListed(MemoryBackend):
    """Forgets to leave out the .tmp items of stores in progress."""

    def list(self, name):
        self._check_open()
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
        self._check_open()
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


class StoreNotAtomic(MemoryBackend):
    """Writes a value in chunks straight to its final name, so a reader can see a prefix."""

    def store(self, name, value):
        self._check_open()
        data = bytes(value)
        with self._location.lock:
            node, base = self._parent(name, create=True)
            item = node[base] = _Item(b"")
        for start in range(0, len(data), 64 * 1024):
            time.sleep(0)  # a network write: other threads run meanwhile
            with self._location.lock:
                item.data += data[start : start + 64 * 1024]


class NameSanitizing(MemoryBackend):
    """Replaces every character outside [a-z0-9._-/] with '_', as "safe key" sanitizers of object
    stores do, so 'a:b' and 'a_b' become one item and listings show names nobody stored."""

    @staticmethod
    def _fold(name):
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


class MkdirNoParents(MemoryBackend):
    """mkdir() creates only the last directory, like os.mkdir() instead of os.makedirs()."""

    def mkdir(self, name):
        self._check_open()
        with self._location.lock:
            parent, _, base = name.rpartition("/")
            try:
                node = self._dir(parent)
            except ObjectNotFound:
                return  # the caller "should have" created the parents
            node.setdefault(base, {})


class RmdirNonEmpty(MemoryBackend):
    """rmdir() removes a directory with everything in it, like shutil.rmtree()."""

    def rmdir(self, name):
        self._check_open()
        with self._location.lock:
            node, base = self._parent(name)
            if not isinstance(node.get(base), dict):
                raise ObjectNotFound(name)
            del node[base]


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


class ClosedStillWorks(MemoryBackend):
    """Never checks that it is open."""

    def _check_open(self):
        pass


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


def _failure(run):
    with pytest.raises(ConformanceFailure) as caught:
        run()
    return caught.value


MACHINE_CAUGHT = [
    (UnsortedList, {"list-sorted"}),
    (TmpListed, {"list-no-tmp"}),
    (PartialLoadOffByOne, {"load-range", "load-past-end", "gather"}),
    (NegativeOffsetIgnored, {"load-negative-offset"}),
    (MoveNotReplacing, {"move-replaces-target"}),
    (DeleteMissingSilent, {"delete-missing"}),
    (InfoSizeStale, {"info-size"}),
    (MkdirNoParents, {"mkdir-parents"}),
    (RmdirNonEmpty, {"rmdir-non-empty"}),
    (ListMissingEmpty, {"list-missing"}),
    (LoadPastEndRaises, {"load-past-end", "gather-short-read"}),
    (MoveCopies, {"move", "move-replaces-target"}),
    (GatherSilentlyShort, {"gather-short-read"}),
    (HashOfWrongData, {"hash"}),
    (QuotaAsStrings, {"quota"}),
]


@pytest.mark.parametrize("broken, rules", MACHINE_CAUGHT, ids=[cls.__name__ for cls, _ in MACHINE_CAUGHT])
def test_state_machine_catches(broken, rules):
    """The state machine catches the broken backend, and the rule it reports names the bug."""
    failure = _failure(lambda: run_backend_machine(broken(), TEETH_SETTINGS))
    assert failure.rule in rules, (
        f"{broken.__name__} was caught by {failure.rule!r}, expected one of {rules}: {failure}"
    )


def test_name_sanitizing_is_caught():
    """A backend that rewrites valid names is caught: listings show names nobody stored, or two names collide."""
    failure = _failure(lambda: run_backend_machine(NameSanitizing(), TEETH_SETTINGS))
    noticing = {
        "list-entries",
        "list-tree",
        "store",
        "store-overwrite",
        "store-buffer-types",
        "move",
        "move-replaces-target",
        "delete",
        "info-missing",
        "load-missing",
        "delete-missing",
        "hash-missing",
    }
    assert failure.rule in noticing, failure


class CreateWipes(MemoryBackend):
    """create() starts over on an existing location, wiping what was there (mkdir -p; rm -rf *)."""

    def create(self):
        if self.opened:
            super().create()
        self._location.root = {}


class OpenCreatesMissing(MemoryBackend):
    """open() of a missing location quietly creates it, hiding a mistyped URL."""

    def open(self):
        if self._location.root is None:
            self._location.root = {}
        super().open()


EXAMPLE_CAUGHT = [
    (StoreNotAtomic, "store-atomic"),
    (ClosedStillWorks, "closed-backend-raises"),
    (CreateWipes, "create-non-empty"),
    (OpenCreatesMissing, "open-missing"),
]


@pytest.mark.parametrize("broken, rule", EXAMPLE_CAUGHT, ids=[cls.__name__ for cls, _ in EXAMPLE_CAUGHT])
def test_example_check_catches(broken, rule):
    """The example check for a rule catches the backend that breaks exactly that rule."""
    failure = _failure(lambda: BACKEND_CHECKS[rule](broken(), "quick"))
    assert failure.rule == rule


def test_correct_memory_backend_passes_the_teeth_runs():
    """The correct memory backend passes the same derandomized run that catches the broken ones."""
    run_backend_machine(MemoryBackend(), TEETH_SETTINGS)
    for check in BACKEND_CHECKS.values():
        check(MemoryBackend(), "quick")


# --- the Store level ---


class LaxNamesStore(Store):
    """Lowercases names instead of rejecting them, so 'Data/ABCD' silently becomes 'data/abcd'."""

    def _namespace_of(self, name):
        return super()._namespace_of(name.lower() if isinstance(name, str) else name)


class DeletedListKeepsSuffix(SoftDeleteMiddleware):
    """Lists soft-deleted items with their '.del' suffix still on."""

    def list(self, name, *, deleted=False):
        if not deleted:
            return super().list(name)
        return (info for info in self.inner.list(name) if info.directory or info.name.endswith(".del"))


class StatsMissesSoftDelete(StatsMiddleware):
    """Does not count soft deletions as moves."""

    def soft_delete(self, name):
        return self.inner.soft_delete(name)


def _memory_factory(make_chain=lambda backend: backend, backend_class=MemoryBackend):
    """A location for StoreTests: each call gives a new backend object on one named memory store."""
    name = f"teeth-{uuid.uuid4().hex}"
    return lambda: make_chain(backend_class(name))


def test_store_check_catches_names_accepted_after_folding():
    """A Store that folds uppercase names instead of rejecting them is caught by names-invalid-rejected."""
    make_store = store_factory(f"memory:teeth-{uuid.uuid4().hex}", LaxNamesStore)
    failure = _failure(lambda: STORE_CHECKS["names-invalid-rejected"](make_store, "quick"))
    assert failure.rule == "names-invalid-rejected"
    assert "Data/abcd" in str(failure)


STORE_MACHINE_CAUGHT = [
    (
        "backend listing newest first",
        _memory_factory(backend_class=ListNewestFirst),
        ["stats", "softdelete"],
        {"store-list"},
    ),
    (
        "deleted list keeps .del",
        _memory_factory(lambda b: DeletedListKeepsSuffix(build_chain(b))),
        ["stats"],
        {"store-list-deleted"},
    ),
    (
        "stats misses soft deletions",
        _memory_factory(lambda b: StatsMissesSoftDelete(SoftDeleteMiddleware(build_chain(b)))),
        [],
        {"store-stats"},
    ),
    (
        "listing cached per connection",
        _memory_factory(backend_class=ListingCachedPerConnection),
        ["stats", "softdelete"],
        {"store-list", "store-list-deleted"},
    ),
    (
        "move not replacing",
        _memory_factory(backend_class=MoveNotReplacing),
        ["stats", "softdelete"],
        {"store-rename", "store-soft-delete", "store-undelete", "store-change-level", "store-defrag"},
    ),
]


# bugs that only a second Store object shows need examples where two take turns, which a random
# half of the examples have: more of them than the backend machine needs
STORE_TEETH_SETTINGS = settings(TEETH_SETTINGS, max_examples=200)


@pytest.mark.parametrize(
    "what, location, middleware, rules", STORE_MACHINE_CAUGHT, ids=[c[0] for c in STORE_MACHINE_CAUGHT]
)
def test_store_machine_catches(what, location, middleware, rules):
    """The Store state machine catches a broken backend or middleware by the rule that names the bug."""
    # with middleware=[], the chain given as the backend holds the broken link and a Store adds nothing
    make_store = store_factory(location, middleware=middleware)
    failure = _failure(lambda: run_store_machine(make_store, STORE_TEETH_SETTINGS))
    assert failure.rule in rules, f"{what}: caught by {failure.rule!r}, expected one of {rules}: {failure}"


def test_correct_store_passes_the_teeth_runs():
    """The correct Store on the memory backend passes the same derandomized Store run."""
    run_store_machine(store_factory(f"memory:teeth-{uuid.uuid4().hex}"), STORE_TEETH_SETTINGS)


# --- capabilities turn checks off, visibly ---


class ListlessMemory(MemoryBackend):
    """A store that cannot list (like a write-only drop box), and says so."""

    capabilities = Capabilities(list=False, thread_safe=True)

    def list(self, name):
        raise NotImplementedError("this backend cannot list")


class ReadOnlyMemory(MemoryBackend):
    capabilities = Capabilities(write=False)


def test_list_capability_off_skips_list_rules_only():
    """A backend declaring list=False passes the state machine without list calls; list checks are not applicable."""
    run_backend_machine(ListlessMemory(), settings(TEETH_SETTINGS, max_examples=40))
    with pytest.raises(NotApplicable, match="list"):
        BACKEND_CHECKS["tmp-items-hidden"](ListlessMemory(), "quick")
    BACKEND_CHECKS["closed-backend-raises"](ListlessMemory(), "quick")


def test_write_capability_off_is_reported_not_applicable():
    """A read-only backend gets 'not applicable' for everything that writes, never a silent pass."""
    with pytest.raises(NotApplicable, match="write"):
        run_backend_machine(ReadOnlyMemory(), TEETH_SETTINGS)
    for rule in ("lifecycle", "create-non-empty", "large-value", "empty-value"):
        with pytest.raises(NotApplicable):
            BACKEND_CHECKS[rule](ReadOnlyMemory(), "quick")
