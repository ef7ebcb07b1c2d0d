"""The backend contract, op by op, against a real rclone serving a local directory.

Reads and writes are checked independently: what the backend stores is read back from the
directory with plain file operations, and what is put into the directory is read through rclone.
"""

import hashlib
import os
import threading
import time

import pytest
from borgstore_backend_rclone import RcloneBackend, rclone_backend_from_url
from borgstore_backend_rclone._daemon import RcDaemon

from borgstore import Store
from borgstore._plugins import backend_for_url, backends, resolve
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ObjectNotFound,
)


def files_under(path):
    """Every file below *path*, as names relative to it."""
    found = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            found.append(os.path.relpath(os.path.join(root, f), path))
    return sorted(found)


# --- URLs and registration ---


def test_the_rclone_scheme_is_served_by_this_distribution():
    """The entry point registers the rclone scheme with this distribution's factory, named by its
    import path (imported only when an rclone: URL is used), and the option names."""
    provided = backends()["rclone"]
    assert provided.spec.factory == "borgstore_backend_rclone._backend:rclone_backend_from_url"
    assert resolve(provided.spec.factory) is rclone_backend_from_url
    assert provided.spec.options == ("server_hash", "verify_uploads", "timeout")
    assert provided.distribution == "borgstore-backend-rclone"


def test_everything_after_the_scheme_goes_to_rclone_as_is():
    """rclone:REMOTE_PATH keeps the remote spec untouched, with a "/" added to address items in it."""
    assert backend_for_url("rclone:remote:some/path").fs == "remote:some/path/"
    assert backend_for_url("rclone:remote:").fs == "remote:"
    assert backend_for_url("rclone:/abs/dir/").fs == "/abs/dir/"
    spec = ":sftp,host=example.org,user=u:dir%20x"
    assert backend_for_url("rclone:" + spec).remote == spec


def test_a_url_without_a_remote_is_invalid():
    """rclone: alone names nothing and is refused before anything runs."""
    with pytest.raises(BackendURLInvalid, match="rclone:REMOTE:PATH"):
        backend_for_url("rclone:")


def test_unknown_options_are_refused_by_name():
    """A misspelled option is a ValueError naming it (the core checks names from the spec); a
    known option with a value the backend does not know is a ValueError from the backend."""
    with pytest.raises(ValueError, match="server_hashes"):
        backend_for_url("rclone:/x", {"server_hashes": "auto"})
    with pytest.raises(ValueError, match="server_hash must be one of"):
        backend_for_url("rclone:/x", {"server_hash": "sometimes"})
    assert backend_for_url("rclone:/x", {"verify_uploads": "never"}).verify_uploads == "never"


def test_the_timeout_option_takes_positive_seconds():
    """timeout defaults to 20 s and takes a positive number of seconds; anything else is a
    ValueError naming the option and the value."""
    assert backend_for_url("rclone:/x").timeout == 20.0
    assert backend_for_url("rclone:/x", {"timeout": 2}).timeout == 2.0
    for bad in (0, -1, float("inf"), float("nan"), "20", True, None):
        with pytest.raises(ValueError, match=rf"timeout must be a positive number of seconds, not {bad!r}"):
            backend_for_url("rclone:/x", {"timeout": bad})


# --- lifecycle ---


def test_create_accepts_an_existing_empty_directory(make_backend, store_path):
    """create() on an existing empty directory succeeds and open() then works."""
    store_path.mkdir()
    b = make_backend()
    b.create()
    b.open()
    assert list(b.list("")) == []


def test_create_refuses_a_non_empty_location(make_backend, store_path):
    """create() on a directory with content raises BackendAlreadyExists and leaves it alone."""
    store_path.mkdir()
    (store_path / "precious").write_bytes(b"keep")
    with pytest.raises(BackendAlreadyExists):
        make_backend().create()
    assert (store_path / "precious").read_bytes() == b"keep"


def test_open_of_a_missing_store_raises(make_backend, children):
    """open() on a location that does not exist raises BackendDoesNotExist and leaves no rclone running."""
    b = make_backend()
    with pytest.raises(BackendDoesNotExist):
        b.open()
    assert children() == []


def test_destroy_removes_everything_and_a_missing_store_raises(backend, store_path):
    """destroy() removes the store; destroying it again raises BackendDoesNotExist."""
    backend.store("data/00/item", b"x")
    backend.close()
    backend.destroy()
    assert not store_path.exists()
    with pytest.raises(BackendDoesNotExist):
        backend.destroy()


def test_lifecycle_state_is_enforced(backend):
    """Open stores refuse create/destroy/open; closed stores refuse operations."""
    with pytest.raises(BackendMustNotBeOpen):
        backend.open()
    with pytest.raises(BackendMustNotBeOpen):
        backend.create()
    with pytest.raises(BackendMustNotBeOpen):
        backend.destroy()
    backend.close()
    for op in (
        lambda: backend.store("a", b"x"),
        lambda: backend.load("a"),
        lambda: backend.info("a"),
        lambda: list(backend.list("")),
        lambda: list(backend.list_tree("")),
        lambda: backend.delete("a"),
        lambda: backend.move("a", "b"),
        lambda: backend.mkdir("a"),
        lambda: backend.rmdir("a"),
        lambda: backend.hash("a"),
    ):
        with pytest.raises(BackendMustBeOpen):
            op()
    assert not backend.opened
    with pytest.raises(BackendMustBeOpen):
        backend.close()  # closing twice is a mistake the caller hears of
    assert backend.pid is None


# --- store and load ---


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_store_writes_the_value_into_the_remote(backend, store_path, kind):
    """What store() writes is exactly what a plain read of the directory finds; parents appear as needed."""
    value = os.urandom(1000)
    backend.store("data/01/23/0123abcd", kind(value))
    assert (store_path / "data/01/23/0123abcd").read_bytes() == value
    assert files_under(store_path) == ["data/01/23/0123abcd"]


def test_load_reads_what_is_in_the_remote(backend, store_path):
    """load() returns the bytes a plain write put into the directory."""
    (store_path / "config").mkdir()
    (store_path / "config/manifest").write_bytes(b"written outside")
    assert backend.load("config/manifest") == b"written outside"


def test_store_overwrites_with_a_same_sized_value_at_once(backend):
    """Overwriting with a value of the same size is never mistaken for "unchanged" by rclone."""
    for i in range(5):
        value = bytes([i]) * 64
        backend.store("config/manifest", value)
        assert backend.load("config/manifest") == value


def test_stores_leave_no_temporary_items(backend, store_path):
    """Every store renames its temporary item into place; nothing ending in .tmp remains."""
    for i in range(10):
        backend.store(f"data/{i:02x}", b"v" * i)
    assert not [f for f in files_under(store_path) if f.endswith(".tmp")]
    assert len(files_under(store_path)) == 10


def test_a_failing_store_leaves_nothing_behind(backend, store_path):
    """Storing onto a name that is a directory fails with a BackendError (not ObjectNotFound:
    something is there) and leaves no temporary item."""
    backend.store("data/dir/inside", b"x")
    with pytest.raises(BackendError) as raised:
        backend.store("data/dir", b"value")
    assert not isinstance(raised.value, ObjectNotFound)
    assert files_under(store_path) == ["data/dir/inside"]
    assert backend.load("data/dir/inside") == b"x"


def test_big_values_round_trip(backend, store_path):
    """A 5 MiB value goes through unchanged in both directions."""
    value = os.urandom(5 * 1024 * 1024 + 7)
    backend.store("data/big", value)
    assert (store_path / "data/big").read_bytes() == value
    assert backend.load("data/big") == value


@pytest.mark.parametrize(
    "offset, size",
    [
        (0, None),
        (0, 5),
        (3, 4),
        (3, None),
        (11, None),
        (30, None),
        (30, 4),
        (9, 10),
        (-5, None),
        (-5, 2),
        (-11, None),
        (-100, None),
        (-100, 3),
        (0, 0),
        (-3, 0),
    ],
)
def test_partial_and_tail_loads(backend, offset, size):
    """Ranges behave like slicing: negative offsets count from the end, ranges past the end are short."""
    value = b"hello world"
    backend.store("data/item", value)
    start = max(len(value) + offset, 0) if offset < 0 else offset
    expected = value[start:] if size is None else value[start : start + size]
    assert backend.load("data/item", offset=offset, size=size) == expected


def test_a_tail_longer_than_the_item_is_the_whole_item(backend):
    """A tail load longer than the item returns all of it (rclone mishandles such suffix ranges itself)."""
    backend.store("data/item", b"0123456789")
    assert backend.load("data/item", offset=-11) == b"0123456789"
    assert backend.load("data/item", offset=-1000, size=4) == b"0123"


def test_partial_loads_move_only_the_requested_bytes(backend, monkeypatch):
    """A 16-byte load of a 2 MiB item transfers 16 bytes from rclone, from the front and from the end."""
    value = os.urandom(2 * 1024 * 1024)
    backend.store("data/big", value)
    received = []
    original = RcDaemon.pipeline

    def counting(self, requests, **kw):
        responses = original(self, requests, **kw)
        for (method, *_), response in zip(requests, responses):
            if method == "GET":
                received.append(len(response.data))
        return responses

    monkeypatch.setattr(RcDaemon, "pipeline", counting)
    assert backend.load("data/big", offset=1000, size=16) == value[1000:1016]
    assert backend.load("data/big", offset=-16) == value[-16:]
    assert received == [16, 16]


def test_loading_a_missing_item_raises(backend):
    """load() of a missing item, in a missing directory, or of a directory raises ObjectNotFound."""
    backend.store("data/present", b"x")
    for name in ("data/missing", "nodir/missing", "data"):
        with pytest.raises(ObjectNotFound):
            backend.load(name)
        with pytest.raises(ObjectNotFound):
            backend.load(name, offset=-3)
        with pytest.raises(ObjectNotFound):
            backend.load(name, size=0)


# --- info ---


def test_info_of_items_directories_and_missing_names(backend):
    """info() tells size, kind and a storage-side mtime; missing names give exists=False."""
    before = time.time()
    backend.store("data/00/item", b"12345")
    item = backend.info("data/00/item")
    assert (item.name, item.exists, item.size, item.directory) == ("data/00/item", True, 5, False)
    assert before - 5 <= item.mtime <= time.time() + 5
    directory = backend.info("data/00")
    assert (directory.exists, directory.directory, directory.size) == (True, True, 0)
    assert backend.info("").directory
    for missing in ("data/00/nothing", "nodir/nothing", "data/00/item/below"):
        info = backend.info(missing)
        assert (info.exists, info.size, info.directory) == (False, 0, False)


# --- list ---


def test_list_is_sorted_has_directories_and_hides_temporary_items(backend, store_path):
    """list() yields direct entries sorted by name, directories flagged, .tmp items never."""
    for name in ("c", "a", "b.del", "0f"):
        backend.store(f"data/{name}", name.encode())
    backend.mkdir("data/zz")
    (store_path / "data/half-written.tmp").write_bytes(b"partial")
    listed = list(backend.list("data"))
    assert [i.name for i in listed] == ["0f", "a", "b.del", "c", "zz"]
    assert [i.directory for i in listed] == [False, False, False, False, True]
    assert [i.size for i in listed] == [2, 1, 5, 1, 0]


def test_list_of_a_missing_directory_raises(backend):
    """list() of a directory that does not exist raises ObjectNotFound."""
    with pytest.raises(ObjectNotFound):
        list(backend.list("nothing/here"))


# --- directories ---


def test_mkdir_creates_parents_and_accepts_existing(backend, store_path):
    """mkdir() creates all missing parents; an existing directory is fine."""
    backend.mkdir("data/01/23")
    backend.mkdir("data/01/23")
    assert (store_path / "data/01/23").is_dir()


def test_rmdir_removes_only_empty_directories(backend, store_path):
    """rmdir() removes an empty directory, refuses a non-empty one and an item (which rclone's own
    rmdir would delete), and a missing one is ObjectNotFound."""
    backend.mkdir("data/empty")
    backend.store("data/full/item", b"x")
    with pytest.raises(BackendError, match="is an item") as raised:
        backend.rmdir("data/full/item")
    assert not isinstance(raised.value, ObjectNotFound)
    assert (store_path / "data/full/item").read_bytes() == b"x"
    backend.rmdir("data/empty")
    assert not (store_path / "data/empty").exists()
    with pytest.raises(BackendError) as raised:
        backend.rmdir("data/full")
    assert not isinstance(raised.value, ObjectNotFound)
    assert (store_path / "data/full/item").exists()
    with pytest.raises(ObjectNotFound):
        backend.rmdir("data/empty")


# --- delete and move ---


def test_delete_removes_and_a_missing_item_raises(backend, store_path):
    """delete() removes the item; deleting it again raises ObjectNotFound."""
    backend.store("data/item", b"x")
    backend.delete("data/item")
    assert not (store_path / "data/item").exists()
    with pytest.raises(ObjectNotFound):
        backend.delete("data/item")


def test_move_renames_replaces_and_creates_target_directories(backend, store_path):
    """move() renames onto an existing target (replacing it) and into directories that do not exist yet."""
    backend.store("data/a", b"new value")
    backend.store("data/b", b"old value")
    backend.move("data/a", "data/b")
    assert backend.load("data/b") == b"new value"
    assert not (store_path / "data/a").exists()
    backend.move("data/b", "other/01/b.del")
    assert (store_path / "other/01/b.del").read_bytes() == b"new value"
    with pytest.raises(ObjectNotFound):
        backend.move("data/a", "data/c")


def test_move_replaces_the_target_in_place(backend, store_path):
    """On a local remote the target is replaced by a rename: its inode becomes the source's."""
    backend.store("data/a", b"source")
    backend.store("data/b", b"target")
    source_inode = (store_path / "data/a").stat().st_ino
    backend.move("data/a", "data/b")
    assert (store_path / "data/b").stat().st_ino == source_inode


def test_readers_never_miss_an_item_that_is_being_replaced(backend, store_path):
    """While an item is overwritten again and again, a reader of the directory always finds it."""
    backend.store("data/target", b"version 0")
    path = store_path / "data/target"
    stop = threading.Event()
    misses = []

    def read():
        while not stop.is_set():
            try:
                path.read_bytes()
            except FileNotFoundError:
                misses.append(time.monotonic())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(150):
            backend.store("data/target", f"version {i}".encode())
    finally:
        stop.set()
        reader.join()
    assert misses == []
    assert path.read_bytes() == b"version 149"


# --- hash ---


def test_hash_of_a_local_remote_matches_hashlib(backend):
    """hash() gives hashlib's digest for any algorithm; a missing item raises ObjectNotFound."""
    value = os.urandom(3000)
    backend.store("data/item", value)
    for algorithm in ("sha256", "md5", "sha512", "blake2b"):
        assert backend.hash("data/item", algorithm) == hashlib.new(algorithm, value).hexdigest()
    with pytest.raises(ObjectNotFound):
        backend.hash("data/missing")


def test_server_side_hash_is_declared_and_downloads_nothing(make_backend, request):
    """With server hashing, rclone hashes where the data is: the right digest, no GET of the item."""
    b = make_backend(server_hash="always")
    b.create()
    b.open()
    assert {"md5", "sha1", "sha256"} <= b.capabilities.hash_algorithms
    value = os.urandom(100_000)
    b.store("data/item", value)
    methods = request.getfixturevalue("rc_methods")  # only what comes after the store above
    assert b.hash("data/item", "sha256") == hashlib.sha256(value).hexdigest()
    assert b.hash("data/item", "sha1") == hashlib.sha1(value).hexdigest()
    assert "GET" not in methods
    with pytest.raises(ObjectNotFound):
        b.hash("data/missing", "md5")


def test_server_side_hash_never_puts_inline_parameters_on_a_command_line():
    """A spec with inline parameters (maybe a password) is never handed to `rclone hashsum`."""
    from borgstore_backend_rclone._rc import has_inline_parameters

    assert has_inline_parameters(":sftp,host=h,pass=secret:dir")
    assert has_inline_parameters("remote,password=x:dir")
    assert not has_inline_parameters("remote:dir")
    assert not has_inline_parameters("/local/dir,with,commas")


# --- threads and the Store ---


def test_one_backend_shared_by_threads(backend):
    """Four threads storing, loading and listing at once all see their own values."""
    errors = []

    def work(t):
        try:
            for i in range(25):
                name = f"data/{t}/{i:03d}"
                value = f"{t}-{i}".encode() * (i + 1)
                backend.store(name, value)
                assert backend.load(name) == value
                assert backend.info(name).size == len(value)
            assert [e.name for e in backend.list(f"data/{t}")] == [f"{i:03d}" for i in range(25)]
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's number
            errors.append((t, exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_store_on_rclone_nests_soft_deletes_and_lists(rclone_binary, store_path):
    """Store(url="rclone:...") works end to end: nesting, soft deletion, listing, partial loads."""
    store = Store(f"rclone:{store_path}", config={"data/": {"levels": [2]}, "config/": {"levels": [0]}})
    store.create()
    with store:
        key = "0123456789abcdef"
        store.store(f"data/{key}", b"chunk data")
        store.store("config/main", b"cfg")
        assert (store_path / "data/01/23" / key).read_bytes() == b"chunk data"
        assert store.load(f"data/{key}", offset=-4) == b"data"
        store.move(f"data/{key}", delete=True)
        assert [i.name for i in store.list("data")] == []
        assert [i.name for i in store.list("data", deleted=True)] == [key]
        assert [i.name for i in store.list("config")] == ["main"]
    store.destroy()
    assert not store_path.exists()


def test_the_declared_capabilities(backend):
    """Atomic stores, thread safety and tree listing by default and on a local remote, which also
    has real directories, replaces in place (a rename) and hashes by download (server-side hashing
    would not save a transfer).  What the opened backend declares comes from rclone."""
    for caps in (RcloneBackend.capabilities, backends()["rclone"].spec.capabilities, backend.capabilities):
        assert caps.atomic_store and caps.thread_safe and caps.list_tree and caps.needs_mkdir
        assert caps.read and caps.write and caps.list
    assert backend._atomic_move
    assert backend.capabilities.hash_algorithms == frozenset()


def test_a_store_on_rclone_gets_the_retry_layer_by_default(rclone_binary, store_path):
    """rclone declares transient_errors (on the class, in the plugin's spec, and after open), and
    no store_new; so a Store's default chain retries its temporary errors (the backend tries
    each call once)."""
    for caps in (RcloneBackend.capabilities, backends()["rclone"].spec.capabilities):
        assert caps.transient_errors and not caps.store_new
    store = Store(f"rclone:{store_path}", config={"data/": {"levels": [0]}})
    assert "retry" in store.middleware
    store.create()
    with store:
        assert store.chain.backend.capabilities.transient_errors
        store.store("data/k", b"v")
        assert store.load("data/k") == b"v"
    store.destroy()


def test_names_with_characters_special_to_http_urls_and_forms(backend, store_path):
    """Every printable character a name may contain survives the multipart upload, the URL of a
    range load and the rc calls."""
    names = ['"', 'a"b', "%41", "x?y", "h#i", "[x]", "a;b", "sp'q", "~!@$^&*()_+{}|:<>", "=,"]
    for name in names:
        backend.store(f"d/{name}", name.encode() + b"!")
        assert (store_path / "d" / name).read_bytes() == name.encode() + b"!"
        assert backend.load(f"d/{name}", offset=1) == name.encode()[1:] + b"!"
        assert backend.info(f"d/{name}").size == len(name) + 1
    assert [i.name for i in backend.list("d")] == sorted(names)
