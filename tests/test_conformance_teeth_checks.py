"""The kit's example checks have teeth: each deliberately broken backend (one realistic bug each)
is caught by the check of the rule it breaks, in every run (several runs each: some involve
threads, whose interleaving differs from run to run), and the failure names the operation."""

import dataclasses
import posixpath
import time
import uuid

import pytest

from borgstore.backends._base import Capabilities, new_hash
from borgstore.backends.errors import ObjectNotFound
from borgstore.backends.memory import PAGE_SIZE, MemoryBackend, _Item
from borgstore.backends.toolkit import check_backend_name
from borgstore.testing._backend_checks import BACKEND_CHECKS
from borgstore.testing._store_checks import STORE_CHECKS, store_factory
from borgstore.testing._teeth import caught, caught_in_every_run

MIB = 1024 * 1024


class StoreNotAtomic(MemoryBackend):
    """Writes a value in chunks straight to its final name, so a reader can see a prefix."""

    def store(self, name, value):
        self.check_open()
        check_backend_name(name)
        data = bytes(value)
        with self._location.lock:
            node, base = self._parent(name, create=True)
            item = node[base] = _Item(b"")
        for start in range(0, len(data), 64 * 1024):
            time.sleep(0)  # a network write: other threads run meanwhile
            with self._location.lock:
                item.data += data[start : start + 64 * 1024]


class FixedTempName(MemoryBackend):
    """Writes each item through one temp name, <name>.tmp, in chunks, then renames it: two writers
    of one name truncate and write the same temp item and rename it under each other."""

    def store(self, name, value):
        self.check_open()
        check_backend_name(name)
        data, temp = bytes(value), name + ".tmp"
        with self._location.lock:
            node, base = self._parent(temp, create=True)
            item = node.get(base)
            if isinstance(item, _Item):
                item.data = b""  # open(temp, "wb") of a file another writer has open
            else:
                item = node[base] = _Item(b"")
        for start in range(0, len(data), 64 * 1024):
            time.sleep(0)  # a network write: other threads run meanwhile
            with self._location.lock:
                item.data = item.data[:start] + data[start : start + 64 * 1024] + item.data[start + 64 * 1024 :]
        with self._location.lock:
            node, base = self._parent(temp)
            if node.pop(base, None) is None:
                raise ObjectNotFound(f"{temp} vanished before the rename")
            target, target_base = self._parent(name, create=True)
            target[target_base] = item


class ClosedStillWorks(MemoryBackend):
    """Never checks that it is open."""

    def check_open(self):
        pass


class CreateWipes(MemoryBackend):
    """create() starts over on an existing location, wiping what was there (mkdir -p; rm -rf *)."""

    def create(self):
        self.check_closed()
        self._location.root = {}


class OpenCreatesMissing(MemoryBackend):
    """open() of a missing location quietly creates it, hiding a mistyped URL."""

    def open(self):
        if self._location.root is None:
            self._location.root = {}
        super().open()


class CloseTwiceSilent(MemoryBackend):
    """close() of a backend that is not open does nothing, as a plain file's close() does."""

    def close(self):
        self.opened = False


class NamesNormalized(MemoryBackend):
    """Normalizes names as a path library would (a leading '/' dropped, '//' and '.' collapsed,
    '..' resolved) instead of refusing them."""

    @staticmethod
    def _normal(name):
        if not name:
            return name
        normal = posixpath.normpath(name).lstrip("/")
        return "" if normal == "." else normal

    def load(self, name, *, size=None, offset=0):
        return super().load(self._normal(name), size=size, offset=offset)

    def store(self, name, value):
        return super().store(self._normal(name), value)

    def info(self, name):
        return super().info(self._normal(name))

    def delete(self, name):
        return super().delete(self._normal(name))

    def move(self, curr_name, new_name):
        return super().move(self._normal(curr_name), self._normal(new_name))


class LoadRangeUnchecked(MemoryBackend):
    """Slices whatever size and offset it is given, so size=-1 drops the last byte."""

    def load(self, name, *, size=None, offset=0):
        self.check_open()
        with self._location.lock:
            data = self._item(name).data
        if offset < 0:
            offset = max(len(data) + offset, 0)
        return data[offset:] if size is None else data[offset : offset + size]


class StoreReplacesDirectory(MemoryBackend):
    """store() onto a directory replaces the directory and everything in it."""

    def store(self, name, value):
        self.check_open()
        with self._location.lock:
            node, base = self._parent(name, create=True)
            node[base] = _Item(bytes(value))


class MkdirReplacesItem(MemoryBackend):
    """mkdir() of an item's name replaces the item by an empty directory."""

    def mkdir(self, name):
        self.check_open()
        with self._location.lock:
            node, base = self._parent(name, create=True)
            if not isinstance(node.get(base), dict):
                node[base] = {}


class MoveReplacesDirectory(MemoryBackend):
    """move() onto a directory replaces the directory, as a rename over an empty one may."""

    def move(self, curr_name, new_name):
        self.check_open()
        with self._location.lock:
            item = self._item(curr_name)
            node, base = self._parent(new_name, create=True)
            old_node, old_base = self._parent(curr_name)
            del old_node[old_base]
            node[base] = item


class RmdirOfItemMissing(MemoryBackend):
    """rmdir() of an item says the directory does not exist, as if nothing were there."""

    def rmdir(self, name):
        self.check_open()
        with self._location.lock:
            node, base = self._parent(name)
            if isinstance(node.get(base), _Item):
                raise ObjectNotFound(f"directory {name!r} does not exist")
        return super().rmdir(name)


class RmdirNonEmpty(MemoryBackend):
    """rmdir() removes a directory with everything in it, like shutil.rmtree()."""

    def rmdir(self, name):
        self.check_open()
        with self._location.lock:
            node, base = self._parent(name)
            if not isinstance(node.get(base), dict):
                raise ObjectNotFound(name)
            del node[base]


class RmdirIgnoresTemporaryItems(MemoryBackend):
    """rmdir() of a directory holding only .tmp items removes it, as if they were not there."""

    def rmdir(self, name):
        self.check_open()
        with self._location.lock:
            node, base = self._parent(name)
            child = node.get(base)
            if isinstance(child, dict) and child and all(key.endswith(".tmp") for key in child):
                child.clear()
        return super().rmdir(name)


class ListOfItemMissing(MemoryBackend):
    """list() of an item says the directory does not exist, as if nothing were there."""

    def list(self, name):
        if name and self.info(name).exists and not self.info(name).directory:
            raise ObjectNotFound(f"directory {name!r} does not exist")
        return super().list(name)


class ReadOnlyAcceptsWrites(MemoryBackend):
    """Declares write=False once open (a read-only mount), but writes anyway."""

    def open(self):
        super().open()
        self.capabilities = Capabilities(write=False, thread_safe=True)


class HashFirstMebibyte(MemoryBackend):
    """hash() digests one 1 MiB read buffer and forgets to loop over the rest."""

    def hash(self, name, algorithm="sha256"):
        return new_hash(algorithm, self.load(name, size=MIB)).hexdigest()


class GatherFirstMebibyte(MemoryBackend):
    """gather() reads each range with one read of at most 1 MiB and forgets to loop."""

    def gather(self, sources):
        return b"".join(self.load(name, size=min(size, MIB), offset=offset) for name, offset, size in sources)


class ListTreeLosesPageEnd(MemoryBackend):
    """list_tree() loses the last item of every full page (an off-by-one peeking for the next page)."""

    def list_tree(self, name):
        items = list(super().list_tree(name))
        return iter([info for i, info in enumerate(items) if (i + 1) % PAGE_SIZE])


class ReservedSuffixStored(MemoryBackend):
    """Declares .hid names reserved but stores them anyway (the check is on load only)."""

    def __init__(self):
        super().__init__()
        self.capabilities = dataclasses.replace(self.capabilities, reserved_suffixes=frozenset({".hid"}))

    def load(self, name, *, size=None, offset=0):
        if name.endswith(".hid"):
            raise ValueError(f"reserved: {name}")
        return super().load(name, size=size, offset=offset)


EXAMPLE_CAUGHT = [
    (StoreNotAtomic, "store-atomic"),
    (ClosedStillWorks, "closed-backend-raises"),
    (CreateWipes, "create-non-empty"),
    (OpenCreatesMissing, "open-missing"),
    (CloseTwiceSilent, "close-twice"),
    (NamesNormalized, "names-stay-inside-root"),
    (LoadRangeUnchecked, "load-invalid-range"),
    (StoreReplacesDirectory, "conflict-store-onto-directory"),
    (MkdirReplacesItem, "conflict-mkdir-over-item"),
    (MoveReplacesDirectory, "conflict-move-onto-directory"),
    (RmdirOfItemMissing, "conflict-rmdir-of-item"),
    (RmdirNonEmpty, "conflict-rmdir-non-empty"),
    (RmdirIgnoresTemporaryItems, "conflict-rmdir-non-empty"),
    (ListOfItemMissing, "conflict-list-of-item"),
    (ReadOnlyAcceptsWrites, "read-only-refuses-writes"),
    (HashFirstMebibyte, "hash-matches-hashlib"),
    (GatherFirstMebibyte, "gather-large"),
    (ListTreeLosesPageEnd, "list-tree-agrees"),
    (FixedTempName, "concurrent-writers"),
    (ReservedSuffixStored, "reserved-suffixes-refused"),
]

RUNS = range(5)


@pytest.mark.parametrize("broken, rule", EXAMPLE_CAUGHT, ids=[f"{b.__name__}-{r}" for b, r in EXAMPLE_CAUGHT])
def test_example_check_catches_in_every_run(broken, rule):
    """The example check of a rule catches the backend that breaks exactly that rule, every time."""
    caught_in_every_run(lambda run: BACKEND_CHECKS[rule](broken(), "quick"), {rule}, broken.__name__, RUNS)


def test_store_two_writers_catch_a_shared_temp_name():
    """Two Store objects writing one name through backends sharing one temp name per item are caught, every time."""

    def run(_):
        location = f"teeth-{uuid.uuid4().hex}"
        STORE_CHECKS["store-two-writers"](store_factory(lambda: FixedTempName(location)), "quick")

    caught_in_every_run(run, {"store-two-writers"}, "FixedTempName", RUNS)


def test_hostile_name_failure_names_the_operation_and_the_name():
    """The hostile-names failure says which call with which name was accepted."""
    failure = caught(lambda: BACKEND_CHECKS["names-stay-inside-root"](NamesNormalized(), "quick"), "NamesNormalized")
    assert "load('/etc/passwd')" in failure.message


def test_thread_failure_names_the_differing_names():
    """When a thread's listing differs, the failure lists the names that differ, not only counts."""

    class ListLosesOne(MemoryBackend):
        def list(self, name):
            return (info for info in super().list(name) if not info.name.endswith("000001"))

    failure = caught(lambda: BACKEND_CHECKS["threads"](ListLosesOne(), "quick"), "ListLosesOne")
    assert failure.rule == "threads"
    assert "000001'" in failure.message and "missing" in failure.message


class NoListTemp(MemoryBackend):
    """A correct backend with store_new and real directories but without list_temp()."""

    @property
    def list_temp(self):
        raise AttributeError("list_temp")


def test_store_new_races_passes_a_backend_without_list_temp():
    """Without list_temp the check probes for left temp items by removing the race's directory:
    it must clear its other rounds' items first, or a correct backend fails."""
    backend = NoListTemp()
    assert not hasattr(backend, "list_temp")
    BACKEND_CHECKS["store-new-races"](backend, "quick")
