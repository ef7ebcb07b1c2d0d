"""The backend contract (borgstore.backends._base.BackendBase), operation by operation, on a real directory."""

import hashlib
import os
import stat
import time

import pytest

from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ObjectNotFound,
)
from borgstore_backend_posixfs import PosixFSBackend
from borgstore_backend_posixfs import _io

# --- lifecycle ----------------------------------------------------------------------------------


def test_create_makes_the_directory_with_missing_parents(root):
    """create() makes the store directory and its parents."""
    deep = os.path.join(root, "a", "b")
    PosixFSBackend(deep).create()
    assert os.path.isdir(deep)


def test_create_accepts_an_existing_empty_directory(root):
    """An existing empty directory is a fine place for a new store, also twice."""
    os.mkdir(root)
    backend = PosixFSBackend(root)
    backend.create()
    backend.create()
    assert os.listdir(root) == []


def test_create_refuses_a_non_empty_directory_and_leaves_it(root):
    """create() on a non-empty directory raises BackendAlreadyExists and touches nothing."""
    os.mkdir(root)
    with open(os.path.join(root, "precious"), "wb") as f:
        f.write(b"data")
    with pytest.raises(BackendAlreadyExists, match="not empty"):
        PosixFSBackend(root).create()
    assert os.listdir(root) == ["precious"]


def test_create_refuses_a_file(root):
    """create() where a file is raises BackendAlreadyExists."""
    with open(root, "wb"):
        pass
    with pytest.raises(BackendAlreadyExists, match="not a directory"):
        PosixFSBackend(root).create()


def test_open_missing_store_raises_does_not_exist(root):
    """open() of a missing store raises BackendDoesNotExist naming the path."""
    with pytest.raises(BackendDoesNotExist, match=root):
        PosixFSBackend(root).open()


def test_lifecycle_errors(root):
    """create/destroy while open, open twice and close when closed raise the lifecycle errors."""
    backend = PosixFSBackend(root)
    with pytest.raises(BackendMustBeOpen):
        backend.close()
    backend.create()
    backend.open()
    with pytest.raises(BackendMustNotBeOpen):
        backend.open()
    with pytest.raises(BackendMustNotBeOpen):
        backend.create()
    with pytest.raises(BackendMustNotBeOpen):
        backend.destroy()
    backend.close()
    with pytest.raises(BackendMustBeOpen):
        backend.close()


def test_context_manager_opens_and_closes(root):
    """with backend: opens it and closes it at the end."""
    backend = PosixFSBackend(root)
    backend.create()
    with backend as opened:
        assert opened is backend and backend.opened
    assert not backend.opened


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.info("x"),
        lambda b: b.load("x"),
        lambda b: b.store("x", b""),
        lambda b: b.delete("x"),
        lambda b: b.move("x", "y"),
        lambda b: b.list(""),
        lambda b: b.mkdir("x"),
        lambda b: b.rmdir("x"),
        lambda b: b.hash("x"),
        lambda b: b.flush(),
    ],
)
def test_operations_on_a_closed_backend_raise_must_be_open(root, call):
    """Every operation but the lifecycle ones needs an open backend."""
    backend = PosixFSBackend(root)
    backend.create()
    with pytest.raises(BackendMustBeOpen):
        call(backend)


def test_destroy_removes_everything(root):
    """destroy() removes the store with all its items and directories."""
    backend = PosixFSBackend(root)
    backend.create()
    with backend:
        backend.store("data/00/0000", b"x")
        backend.store("config/c", b"y")
    backend.destroy()
    assert not os.path.exists(root)
    with pytest.raises(BackendDoesNotExist):
        backend.destroy()


# --- directories --------------------------------------------------------------------------------


def test_mkdir_creates_parents_and_accepts_existing(backend, root):
    """mkdir creates missing parents; an existing directory is fine; the root is no name."""
    backend.mkdir("data/00/11")
    backend.mkdir("data/00/11")
    assert os.path.isdir(os.path.join(root, "data", "00", "11"))
    with pytest.raises(ValueError, match="root"):
        backend.mkdir("")


def test_mkdir_where_an_item_is_raises(backend):
    """mkdir over an item, or below one, raises BackendError."""
    backend.store("data/item", b"x")
    with pytest.raises(BackendError, match="item"):
        backend.mkdir("data/item")
    with pytest.raises(BackendError, match="item"):
        backend.mkdir("data/item/sub")


def test_rmdir(backend, root):
    """rmdir removes an empty directory; a missing one is ObjectNotFound, a full one BackendError."""
    backend.mkdir("data/00")
    backend.store("data/00/0011", b"x")
    with pytest.raises(BackendError, match="not empty"):
        backend.rmdir("data/00")
    backend.delete("data/00/0011")
    backend.rmdir("data/00")
    assert not os.path.exists(os.path.join(root, "data", "00"))
    with pytest.raises(ObjectNotFound):
        backend.rmdir("data/00")
    with pytest.raises(ValueError, match="root"):
        backend.rmdir("")
    assert os.path.isdir(root)


# --- info ---------------------------------------------------------------------------------------


def test_info_of_an_item(backend):
    """info gives the last name component, the size and the file system's times."""
    before = time.time()
    backend.store("data/00/0011", b"12345")
    info = backend.info("data/00/0011")
    assert (info.name, info.exists, info.size, info.directory) == ("0011", True, 5, False)
    assert before - 5 <= info.mtime <= time.time() + 5
    assert info.atime > 0


def test_info_of_a_directory_and_of_missing_items(backend):
    """A directory reports directory=True; a missing item exists=False without an exception."""
    backend.mkdir("data/00")
    assert backend.info("data/00")[:4] == ("00", True, 0, True)
    assert backend.info("data/00/nope")[:4] == ("nope", False, 0, False)
    backend.store("data/file", b"x")
    assert backend.info("data/file/below").exists is False  # a parent that is an item


# --- load ---------------------------------------------------------------------------------------

VALUE = bytes(range(256)) * 4  # 1 KiB


@pytest.mark.parametrize(
    "size, offset, expected",
    [
        (None, 0, VALUE),
        (10, 0, VALUE[:10]),
        (10, 100, VALUE[100:110]),
        (None, 1000, VALUE[1000:]),
        (None, -5, VALUE[-5:]),
        (3, -5, VALUE[-5:-2]),
        (None, -5000, VALUE),  # a negative offset before the start clamps to the start
        (10, -5000, VALUE[:10]),
        (None, 1024, b""),
        (10, 2000, b""),
        (2000, 1000, VALUE[1000:]),
        (0, 10, b""),
        (10**12, 0, VALUE),  # a huge size must not allocate that much
    ],
)
def test_load_ranges(backend, size, offset, expected):
    """load honours size and offset; negative offsets count from the end and clamp at the start."""
    backend.store("data/item", VALUE)
    assert backend.load("data/item", size=size, offset=offset) == expected


@pytest.mark.parametrize("length", [0, 1, _io.FIRST_CHUNK - 1, _io.FIRST_CHUNK, _io.FIRST_CHUNK + 1, 3 << 20])
def test_load_whole_items_around_the_first_chunk_size(backend, length):
    """Whole loads are exact for sizes below, at and beyond the first read."""
    value = os.urandom(length)
    backend.store("data/item", value)
    assert backend.load("data/item") == value
    assert backend.load("data/item", offset=7) == value[7:]
    half = length // 2
    if half:
        assert backend.load("data/item", offset=-half) == value[-half:]


def test_load_missing_or_directory_raises_object_not_found(backend):
    """Loading a missing item, one below an item, or a directory (no item there) raises
    ObjectNotFound, saying so for a directory."""
    with pytest.raises(ObjectNotFound, match="data/nope"):
        backend.load("data/nope")
    backend.store("data/file", b"x")
    with pytest.raises(ObjectNotFound):
        backend.load("data/file/below")
    backend.mkdir("data/dir")
    with pytest.raises(ObjectNotFound, match="a directory"):
        backend.load("data/dir")


@pytest.mark.parametrize("size, offset", [(-1, 0), (1.5, 0), ("1", 0), (1, None), (1, 0.0), (True, 0), (1, False)])
def test_load_refuses_invalid_ranges_before_reading(backend, size, offset):
    """size must be None or an int >= 0, offset an int: anything else is a ValueError."""
    backend.store("data/item", b"0123456789")
    with pytest.raises(ValueError):
        backend.load("data/item", size=size, offset=offset)


# --- store --------------------------------------------------------------------------------------


def test_store_accepts_bytes_bytearray_and_memoryviews(backend):
    """bytes, bytearray and memoryviews (also of a multi-byte format) are stored byte for byte."""
    import array

    backend.store("a", b"bytes")
    backend.store("b", bytearray(b"bytearray"))
    backend.store("c", memoryview(b"0123456789")[2:5])
    numbers = array.array("I", [1, 2, 3])
    backend.store("d", memoryview(numbers))
    assert backend.load("a") == b"bytes"
    assert backend.load("b") == b"bytearray"
    assert backend.load("c") == b"234"
    assert backend.load("d") == numbers.tobytes()


def test_store_overwrites_and_creates_missing_directories(backend, root):
    """store replaces an existing item and creates missing parent directories on demand."""
    backend.store("data/01/23/0123", b"one")
    backend.store("data/01/23/0123", b"two")
    assert backend.load("data/01/23/0123") == b"two"
    assert os.listdir(os.path.join(root, "data", "01", "23")) == ["0123"]


def test_stored_files_are_private_to_their_owner(backend, root):
    """Stored files get mode 0600, whatever the umask, as with the PyPI borgstore."""
    old = os.umask(0o022)
    try:
        backend.store("data/item", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(os.path.join(root, "data", "item")).st_mode) == 0o600


def test_store_over_a_directory_or_below_an_item_raises(backend, root):
    """Storing where a directory is, or below an item, raises BackendError and leaves nothing behind."""
    backend.mkdir("data/dir")
    with pytest.raises(BackendError, match="directory"):
        backend.store("data/dir", b"x")
    backend.store("data/file", b"x")
    with pytest.raises(BackendError, match="item"):
        backend.store("data/file/below", b"y")
    assert sorted(os.listdir(os.path.join(root, "data"))) == ["dir", "file"]
    assert os.listdir(os.path.join(root, "data", "dir")) == []


def test_store_after_the_root_vanished_raises_does_not_exist(backend, root):
    """A store whose root was removed is not silently recreated by on-demand mkdir."""
    import shutil

    shutil.rmtree(root)
    with pytest.raises(BackendDoesNotExist):
        backend.store("data/00/0011", b"x")
    with pytest.raises(BackendDoesNotExist):
        backend.store("top", b"x")
    with pytest.raises(BackendDoesNotExist):
        backend.mkdir("data")
    assert not os.path.exists(root)


# --- delete and move ----------------------------------------------------------------------------


def test_delete(backend):
    """delete removes an item; a missing one or a directory (no item there, and it stays) raises
    ObjectNotFound."""
    backend.store("data/item", b"x")
    backend.delete("data/item")
    assert not backend.info("data/item").exists
    with pytest.raises(ObjectNotFound, match="data/item"):
        backend.delete("data/item")
    backend.mkdir("data/dir")
    with pytest.raises(ObjectNotFound, match="a directory"):
        backend.delete("data/dir")
    assert backend.info("data/dir").directory


def test_move_replaces_the_target_and_creates_its_directories(backend):
    """move renames, replaces an existing target and creates missing target directories."""
    backend.store("data/a", b"a")
    backend.store("data/b", b"b")
    backend.move("data/a", "data/b")
    assert backend.load("data/b") == b"a" and not backend.info("data/a").exists
    backend.move("data/b", "data/00/11/b")
    assert backend.load("data/00/11/b") == b"a"


def test_move_errors(backend):
    """A missing source is ObjectNotFound; a directory as target is BackendError; nothing changes."""
    with pytest.raises(ObjectNotFound, match="data/nope"):
        backend.move("data/nope", "data/new/x")
    assert not backend.info("data/new").exists  # no directories made for a missing source
    backend.store("data/a", b"a")
    backend.mkdir("data/dir")
    with pytest.raises(BackendError, match="directory") as excinfo:
        backend.move("data/a", "data/dir")
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert backend.load("data/a") == b"a"


def test_move_of_a_directory_renames_it_whole(backend):
    """A directory given as move()'s source is outside the contract (the Store moves items
    only); posixfs renames it as rename(2) does, with everything in it, and loses nothing."""
    backend.store("data/01/0123", b"x")
    backend.move("data/01", "data/01.moved")
    assert backend.load("data/01.moved/0123") == b"x"
    assert not backend.info("data/01").exists


def test_rmdir_of_an_item_is_a_conflict(backend):
    """rmdir() of an item raises BackendError (something is there), not ObjectNotFound."""
    backend.store("data/item", b"x")
    with pytest.raises(BackendError, match="item") as excinfo:
        backend.rmdir("data/item")
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert backend.load("data/item") == b"x"
    with pytest.raises(ObjectNotFound):
        backend.rmdir("data/item/below")


def test_names_with_dots_inside_components_work(backend):
    """'..' inside a component (the key '0.' soft-deleted is '0..del') and leading dots are names."""
    for name in ("data/0..del", "data/.config", "..a/b..", "data/...x"):
        backend.store(name, name.encode())
        assert backend.load(name) == name.encode()
    assert [i.name for i in backend.list("data")] == ["...x", ".config", "0..del"]


# --- list ---------------------------------------------------------------------------------------


def test_list_is_sorted_includes_directories_and_hides_temp_files(backend, root):
    """list yields the entries of one directory sorted by name, directories too, never .tmp files."""
    for name in ("data/b", "data/a", "data/c.del"):
        backend.store(name, b"xy")
    backend.mkdir("data/00")
    with open(os.path.join(root, "data", "tmpu126orq8.tmp"), "wb") as f:
        f.write(b"half")
    listed = list(backend.list("data"))
    assert [(i.name, i.directory) for i in listed] == [("00", True), ("a", False), ("b", False), ("c.del", False)]
    assert [i.size for i in listed if not i.directory] == [2, 2, 2]
    assert all(i.exists and i.mtime > 0 for i in listed)


def test_list_errors(backend):
    """A missing directory raises ObjectNotFound; an item raises BackendError."""
    with pytest.raises(ObjectNotFound):
        backend.list("nope")
    backend.store("item", b"x")
    with pytest.raises(BackendError, match="not a directory"):
        backend.list("item")


def test_list_skips_entries_removed_while_listing(backend):
    """An entry deleted between reading the directory and reaching it is skipped."""
    for name in ("d/a", "d/b", "d/c"):
        backend.store(name, b"x")
    items = backend.list("d")
    assert next(items).name == "a"
    backend.delete("d/b")
    assert [i.name for i in items] == ["c"]


# --- hash and gather ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "md5", "blake2b"])
def test_hash_matches_hashlib(backend, algorithm):
    """hash streams the file and gives hashlib's hex digest, also for items bigger than a chunk."""
    value = os.urandom((1 << 20) + 17)
    backend.store("data/item", value)
    assert backend.hash("data/item", algorithm) == hashlib.new(algorithm, value).hexdigest()


def test_hash_errors(backend):
    """An unknown algorithm is a ValueError naming it; a missing item or a directory ObjectNotFound."""
    backend.store("data/item", b"x")
    with pytest.raises(ValueError, match="Unsupported hash algorithm: nope"):
        backend.hash("data/item", "nope")
    with pytest.raises(ObjectNotFound):
        backend.hash("data/missing")
    with pytest.raises(ObjectNotFound, match="a directory"):
        backend.hash("data")


def test_declared_hash_algorithms_all_work(backend):
    """Every algorithm declared in the capabilities gives hashlib's digest."""
    backend.store("data/item", b"abc")
    for algorithm in backend.capabilities.hash_algorithms:
        assert backend.hash("data/item", algorithm) == hashlib.new(algorithm, b"abc").hexdigest()


def test_gather_concatenates_ranges(backend):
    """gather reads the ranges of several items in order; negative offsets count from the end."""
    backend.store("data/a", b"0123456789")
    backend.store("data/b", b"abcdefghij")
    assert backend.gather([("data/a", 2, 3), ("data/b", -2, 2), ("data/a", 0, 0), ("data/a", -20, 1)]) == b"234ij0"
    assert backend.gather([]) == b""


def test_gather_opens_each_run_of_one_item_once(backend):
    """Consecutive ranges of one item share one open file."""
    backend.store("data/a", b"0123456789")
    backend.store("data/b", b"abcdefghij")
    opened = []
    real_open = backend._open_item
    backend._open_item = lambda name, op: (opened.append(name), real_open(name, op))[1]
    data = backend.gather([("data/a", 0, 2), ("data/a", 5, 2), ("data/b", 0, 1), ("data/b", 9, 1), ("data/a", 9, 1)])
    assert data == b"0156aj9"
    assert opened == ["data/a", "data/b", "data/a"]


@pytest.mark.parametrize("source", [("data/a", 8, 5), ("data/a", 20, 1), ("data/a", -3, 5), ("data/a", 0, 10**12)])
def test_gather_short_range_raises_read_range_error(backend, source):
    """A range that cannot be read in full raises ReadRangeError worded as applications match it
    (a huge one without allocating it)."""
    from borgstore.backends.errors import ReadRangeError

    backend.store("data/a", b"0123456789")
    with pytest.raises(ReadRangeError, match="^Read range error from data/a"):
        backend.gather([("data/b", 0, 0), source])


@pytest.mark.parametrize("source", [("data/a", 0, -1), ("data/a", 0, None), ("data/a", 0.5, 1), ("../a", 0, 1)])
def test_gather_refuses_invalid_sources(backend, source):
    """A negative or missing size, a non-int offset or a hostile name is a ValueError."""
    backend.store("data/a", b"0123456789")
    with pytest.raises(ValueError):
        backend.gather([source])


def test_gather_missing_item_or_directory_raises_object_not_found(backend):
    """A missing item or a directory in the sources raises ObjectNotFound."""
    backend.store("data/a", b"0123456789")
    backend.mkdir("data/dir")
    with pytest.raises(ObjectNotFound, match="data/nope"):
        backend.gather([("data/a", 0, 1), ("data/nope", 0, 1)])
    with pytest.raises(ObjectNotFound, match="a directory"):
        backend.gather([("data/dir", 0, 1)])
