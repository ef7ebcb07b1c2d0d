"""The backend contract, operation by operation, against a real sshd in both URL forms.

The server's storage is a local directory, so every effect is also checked on the disk directly,
independently of the backend's own reads.
"""

import os

import pytest

from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ObjectNotFound,
)
from borgstore.store import Store


def disk_files(root):
    """Every file under *root*, as relative paths."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            found.append(os.path.relpath(os.path.join(dirpath, filename), root))
    return sorted(found)


# --- lifecycle ---


def test_create_makes_the_directory_and_open_needs_it(location):
    """create() makes the store directory (and its parents); open() then works."""
    backend = location.backend()
    assert not location.local.exists()
    with pytest.raises(BackendDoesNotExist):
        backend.open()
    backend.create()
    assert location.local.is_dir()
    backend.open()
    backend.close()


def test_create_accepts_an_empty_directory_and_refuses_a_non_empty_one(location):
    """An existing empty directory is fine for create(); one with contents raises BackendAlreadyExists."""
    location.local.mkdir(parents=True)
    backend = location.backend()
    backend.create()
    (location.local / "something").write_bytes(b"x")
    with pytest.raises(BackendAlreadyExists):
        backend.create()
    assert (location.local / "something").read_bytes() == b"x"


def test_destroy_removes_everything_and_refuses_a_missing_store(location):
    """destroy() removes the store tree; a missing store raises BackendDoesNotExist."""
    backend = location.backend()
    backend.create()
    backend.open()
    backend.store("data/00/11/0011aa", b"v")
    backend.mkdir("empty/dir")
    backend.close()
    backend.destroy()
    assert not location.local.exists()
    with pytest.raises(BackendDoesNotExist):
        backend.destroy()


def test_lifecycle_errors(location):
    """Operations need an open store; create/destroy/open refuse an open one."""
    backend = location.backend()
    backend.create()
    with pytest.raises(BackendMustBeOpen):
        backend.load("x")
    with pytest.raises(BackendMustBeOpen):
        backend.store("x", b"")
    backend.open()
    with pytest.raises(BackendMustNotBeOpen):
        backend.open()
    with pytest.raises(BackendMustNotBeOpen):
        backend.create()
    with pytest.raises(BackendMustNotBeOpen):
        backend.destroy()
    backend.close()
    with pytest.raises(BackendMustBeOpen):
        backend.info("x")


def test_close_twice_raises_and_still_ends_the_connection(location):
    """close() on a backend that is not open raises BackendMustBeOpen, also the second close();
    a connection that create() left for the open() to come is ended all the same."""
    backend = location.backend()
    backend.create()
    assert backend._pool.connection is not None
    with pytest.raises(BackendMustBeOpen):
        backend.close()
    assert backend._pool.connection is None
    backend.open()
    backend.close()
    with pytest.raises(BackendMustBeOpen):
        backend.close()
    assert backend._pool.connection is None


def test_open_refuses_a_file_in_place_of_the_store(location):
    """A store path that is a file is not a store: BackendDoesNotExist."""
    location.local.parent.mkdir(parents=True, exist_ok=True)
    location.local.write_bytes(b"not a directory")
    with pytest.raises(BackendDoesNotExist):
        location.backend().open()


# --- store / load ---


@pytest.mark.parametrize("size", [0, 1, 1000, 255 * 1024, 255 * 1024 + 1, 3 * 1024 * 1024 + 7])
def test_store_then_load_round_trips(backend, location, size):
    """What store() wrote is exactly on the disk and comes back from load()."""
    value = os.urandom(size)
    backend.store("data/ab/abcd", value)
    assert (location.local / "data/ab/abcd").read_bytes() == value
    assert backend.load("data/ab/abcd") == value


def test_store_accepts_bytearray_and_memoryview(backend, location):
    backend.store("a", bytearray(b"from a bytearray"))
    backend.store("b", memoryview(b"..from a memoryview..")[2:-2])
    assert (location.local / "a").read_bytes() == b"from a bytearray"
    assert (location.local / "b").read_bytes() == b"from a memoryview"


def test_store_overwrites_and_leaves_no_temp_files(backend, location):
    """Overwriting replaces the value; no .tmp file remains next to it."""
    backend.store("config/x", b"old value")
    backend.store("config/x", b"new")
    assert (location.local / "config/x").read_bytes() == b"new"
    assert disk_files(location.local) == ["config/x"]


def test_store_onto_a_directory_fails_and_changes_nothing(backend, location):
    """Storing where a directory is raises a BackendError; the directory and its content stay."""
    backend.store("d/inner", b"keep")
    with pytest.raises(BackendError):
        backend.store("d", b"value")
    assert (location.local / "d/inner").read_bytes() == b"keep"
    assert disk_files(location.local) == ["d/inner"]


def test_load_ranges(backend):
    """size/offset select a range; negative offsets count from the end; past the end gives less."""
    value = bytes(range(256)) * 4000  # 1,024,000 bytes: several read requests
    backend.store("r", value)
    assert backend.load("r", size=10) == value[:10]
    assert backend.load("r", offset=1000) == value[1000:]
    assert backend.load("r", offset=300_000, size=500_000) == value[300_000:800_000]
    assert backend.load("r", offset=-5) == value[-5:]
    assert backend.load("r", offset=-10, size=3) == value[-10:-7]
    assert backend.load("r", offset=-(len(value) + 100)) == value  # clamped at the start
    assert backend.load("r", offset=len(value) - 3, size=10) == value[-3:]
    assert backend.load("r", offset=len(value) + 10) == b""
    assert backend.load("r", size=0) == b""


@pytest.mark.parametrize("size, offset", [(-1, 0), (1.5, 0), ("1", 0), (None, 0.5), (None, "0"), (1, None)])
def test_load_refuses_invalid_ranges(backend, size, offset):
    """size must be None or an int >= 0, offset an int: ValueError, for load and gather."""
    backend.store("r", b"0123456789")
    with pytest.raises(ValueError):
        backend.load("r", size=size, offset=offset)
    with pytest.raises(ValueError):
        backend.gather([("r", offset, size)])


def test_load_missing_raises_object_not_found(backend):
    with pytest.raises(ObjectNotFound):
        backend.load("nope")
    with pytest.raises(ObjectNotFound):
        backend.load("no/such/dir/item")
    with pytest.raises(ObjectNotFound):
        backend.load("nope", size=0)
    backend.mkdir("adir")
    with pytest.raises(ObjectNotFound):
        backend.load("adir")
    with pytest.raises(ObjectNotFound):
        backend.load("adir", size=0)


# --- info ---


def test_info(backend, location):
    backend.store("i/item", b"12345")
    item = backend.info("i/item")
    assert (item.name, item.exists, item.size, item.directory) == ("i/item", True, 5, False)
    assert abs(item.mtime - os.stat(location.local / "i/item").st_mtime) < 2
    directory = backend.info("i")
    assert (directory.exists, directory.directory) == (True, True)
    assert backend.info("").directory
    missing = backend.info("i/none")
    assert (missing.exists, missing.size, missing.directory) == (False, 0, False)
    assert not backend.info("i/item/below").exists  # a parent that is a file


# --- delete / move ---


def test_delete(backend, location):
    backend.store("d/x", b"1")
    backend.delete("d/x")
    assert not (location.local / "d/x").exists()
    with pytest.raises(ObjectNotFound):
        backend.delete("d/x")
    with pytest.raises(ObjectNotFound):
        backend.delete("d")  # a directory is not an item


def test_move_renames_replaces_and_creates_target_dirs(backend, location):
    backend.store("a/src", b"source")
    backend.store("b/dst", b"old target")
    backend.move("a/src", "b/dst")
    assert (location.local / "b/dst").read_bytes() == b"source"
    assert not (location.local / "a/src").exists()
    backend.move("b/dst", "new/dirs/here/item")
    assert (location.local / "new/dirs/here/item").read_bytes() == b"source"
    with pytest.raises(ObjectNotFound):
        backend.move("a/src", "c")
    assert disk_files(location.local) == ["new/dirs/here/item"]


# --- directories and listing ---


def test_mkdir_rmdir(backend, location):
    backend.mkdir("x/y/z")
    backend.mkdir("x/y/z")  # existing is fine
    assert (location.local / "x/y/z").is_dir()
    backend.store("x/y/item", b"1")
    with pytest.raises(BackendError) as excinfo:
        backend.rmdir("x/y")
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert (location.local / "x/y/item").exists()
    with pytest.raises(BackendError, match="not a directory") as excinfo:
        backend.rmdir("x/y/item")  # OpenSSH says "no such file" for it: not taken as missing
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert (location.local / "x/y/item").read_bytes() == b"1"
    backend.rmdir("x/y/z")
    assert not (location.local / "x/y/z").exists()
    with pytest.raises(ObjectNotFound):
        backend.rmdir("x/y/z")
    with pytest.raises(ObjectNotFound):
        backend.rmdir("x/y/item/below")


def test_list_is_sorted_has_dirs_and_hides_temp_items(backend, location):
    for name in ("n/c", "n/a", "n/b"):
        backend.store(name, name.encode())
    backend.mkdir("n/sub")
    (location.local / "n/zz.1234abcd.tmp").write_bytes(b"a write in progress")
    listed = list(backend.list("n"))
    assert [i.name for i in listed] == ["a", "b", "c", "sub"]
    assert [i.directory for i in listed] == [False, False, False, True]
    assert [i.size for i in listed[:3]] == [3, 3, 3]
    assert [i.name for i in backend.list("")] == ["n"]
    with pytest.raises(ObjectNotFound):
        list(backend.list("missing"))


def test_list_many_entries(backend, location):
    """A directory larger than one READDIR reply is listed completely."""
    names = [f"{i:04x}" for i in range(600)]
    (location.local / "many").mkdir()
    for name in names:
        (location.local / "many" / name).write_bytes(b"")
    assert [i.name for i in backend.list("many")] == names


# --- generic operations and the Store on top ---


def test_hash_and_gather(backend):
    import hashlib

    backend.store("h", b"hello world")
    assert backend.hash("h") == hashlib.sha256(b"hello world").hexdigest()
    assert backend.gather([("h", 0, 5), ("h", 6, 5)]) == b"helloworld"


def test_store_api_on_sftp(location):
    """The Store with its default chain works through an sftp URL (levels, soft delete, list)."""
    store = Store(
        url=location.url, levels={"data/": [2], "config/": [0]}, backend_options=location.server.backend_options()
    )
    store.create()
    with store:
        key = "data/0123456789abcdef"
        store.store(key, b"payload")
        assert (location.local / "data/01/23/0123456789abcdef").read_bytes() == b"payload"
        assert store.load(key, offset=3) == b"load"
        assert [i.name for i in store.list("data")] == ["0123456789abcdef"]
        store.move(key, delete=True)
        assert [i.name for i in store.list("data", deleted=True)] == ["0123456789abcdef"]
        store.move(key, undelete=True)
        store.delete(key)
        assert not store.info(key).exists
    store.destroy()
    assert not location.local.exists()


def test_durability_always_and_close_use_fsync(location):
    """With durability set (OpenSSH offers fsync@openssh.com) stores and flushes succeed and
    nothing is left to flush (test_failures watches the fsyncs themselves with strace)."""
    for durability in ("always", "close"):
        backend = location.backend(durability=durability)
        assert backend.durability == durability
        if durability == "always":
            backend.create()
        backend.open()
        backend.store(f"d/{durability}", b"durable")
        backend.store("d/moved", b"moved before the flush")
        backend.move("d/moved", f"d/moved-{durability}")
        backend.flush()
        assert backend._durability.unflushed == set()
        backend.close()
        assert (location.local / "d" / durability).read_bytes() == b"durable"
        assert (location.local / "d" / f"moved-{durability}").exists()


def test_round_trips_per_operation(backend):
    """Each operation waits for the server as often as docs/sftp.md says (its requests are
    pipelined, and OpenSSH's handles guessed): store and store_new 2 (3 for a value larger than
    one write request), load 1 (2 beyond one read request without a size, or from the end),
    info/delete/move 1, list 2, list_temp 2 per level."""
    backend.store("rt/warm", b"x")  # makes the directory and the pooled session

    def count(operation):
        (session,) = backend._pool.connection.idle
        before = session.round_trips
        operation()
        (session,) = backend._pool.connection.idle
        return session.round_trips - before

    value = os.urandom(1024)
    assert count(lambda: backend.store("rt/a", value)) == 2
    assert count(lambda: backend.load("rt/a")) == 1
    assert count(lambda: backend.store("rt/big", os.urandom(4 * 1024 * 1024))) == 3
    assert count(lambda: backend.load("rt/big")) == 2  # the reads after the first need the size
    assert count(lambda: backend.load("rt/big", size=4 * 1024 * 1024)) == 2
    assert count(lambda: backend.load("rt/a", offset=10, size=100)) == 1
    assert count(lambda: backend.load("rt/a", offset=-100)) == 2  # the size must be known first
    assert count(lambda: backend.info("rt/a")) == 1
    assert count(lambda: backend.move("rt/a", "rt/b")) == 1
    assert count(lambda: list(backend.list("rt"))) == 2
    assert count(lambda: backend.store_new("rt/new", value)) == 2
    assert count(lambda: list(backend.list_temp("rt"))) == 2  # one level: no subdirectory
    assert count(lambda: backend.load("rt/b")) == 1  # the handles freed by list are guessed too
    with pytest.raises(ObjectNotFound):
        backend.load("rt/missing")
    assert count(lambda: backend.load("rt/new")) == 1  # a failed OPEN leaves the guess right
    backend.delete("rt/big")
    assert count(lambda: backend.delete("rt/b")) == 1


def test_gather_many_ranges_in_two_round_trips(backend):
    """gather() returns the ranges of several items in order, opening and reading them all in two
    round trips; a range past an item's end raises ReadRangeError; a missing item ObjectNotFound."""
    from borgstore.backends.errors import ReadRangeError

    values = {f"g/{i}": os.urandom(1000 + 300_000 * (i % 3)) for i in range(6)}
    for name, value in values.items():
        backend.store(name, value)
    sources = [("g/1", 10, 200_000), ("g/0", 0, 1000), ("g/5", 123, 0), ("g/4", 250_000, 50_000), ("g/1", 0, 5)]
    expected = b"".join(values[name][offset : offset + size] for name, offset, size in sources)
    (session,) = backend._pool.connection.idle
    before = session.round_trips
    assert backend.gather(sources) == expected
    (session,) = backend._pool.connection.idle
    assert session.round_trips - before == 2
    with pytest.raises(ReadRangeError):
        backend.gather([("g/0", 0, 10), ("g/0", 990, 20)])
    with pytest.raises(ObjectNotFound):
        backend.gather([("g/0", 0, 10), ("g/missing", 0, 1)])
    assert backend.gather([("g/0", -10, 10)]) == values["g/0"][-10:]
    assert backend.load("g/2") == values["g/2"]  # the backend is fine after the errors
