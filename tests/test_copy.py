"""borgstore._copy: a whole store copied at the backend level (the library behind `borgstore copy`)."""

import os
import threading
from collections import Counter

import pytest

import borgstore
from borgstore import _plugins, hookimpl
from borgstore._copy import Copy, choose_hash, copy_store
from borgstore._progress import Reporter
from borgstore.backends._base import Capabilities
from borgstore.constants import QUOTA_STORE_NAME
from borgstore.store import Store

CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [2]}}
KEYS = [f"{i:02x}{i * 7 % 256:02x}" + "ab" * 30 for i in range(24)]


@pytest.fixture(autouse=True)
def _needs_posixfs(file_backend):
    """Every test here works on file: stores."""


def make_source(path, *, quota=True) -> str:
    """A BorgBackup-style store at *path*: two-level nesting, a flat namespace, soft-deleted
    items, the quota file, an empty nesting directory and a temp item a dead writer left."""
    url = f"file://{path}"
    store = Store(url, config=CONFIG, quota=10**9 if quota else None)
    store.create()
    with store:
        store.store("config/manifest", b"manifest")
        for i, key in enumerate(KEYS):
            store.store(f"data/{key}", bytes([i]) * (100 + 37 * i))
        for key in KEYS[:3]:
            store.move(f"data/{key}", delete=True)
    os.makedirs(path / "data" / "ee" / "ee")
    (path / "data" / KEYS[5][:2] / KEYS[5][2:4] / (KEYS[5] + ".tmp")).write_bytes(b"half writ")
    return url


def tree(path) -> dict:
    """{relative path: bytes, or None for a directory} of everything below *path*."""
    found = {}
    for directory, dirs, files in os.walk(path):
        rel = os.path.relpath(directory, path)
        for name in dirs:
            found[os.path.normpath(os.path.join(rel, name))] = None
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                found[os.path.normpath(os.path.join(rel, name))] = f.read()
    return found


def without_temps(found: dict) -> dict:
    return {name: value for name, value in found.items() if not name.endswith(".tmp")}


def item_path(root, key):
    return root / "data" / key[:2] / key[2:4] / key


def test_copy_reproduces_the_layout_without_temps(tmp_path):
    """Nesting, .del items, quota.hid and empty directories arrive byte for byte; the temp item does not."""
    source = make_source(tmp_path / "a")
    summary = copy_store(source, f"file://{tmp_path}/b")
    assert tree(tmp_path / "b") == without_temps(tree(tmp_path / "a"))
    assert any(name.endswith(".del") for name in tree(tmp_path / "b"))
    assert (summary.copied, summary.skipped, summary.failed, summary.exit_status) == (len(KEYS) + 2, 0, 0, 0)
    assert summary.destination_created and summary.directories_created == 1


def test_copy_into_memory_and_back(tmp_path):
    """Another backend in between changes nothing: file -> memory -> file gives the same tree."""
    source = make_source(tmp_path / "a")
    middle = f"memory:copy-{os.getpid()}-{id(tmp_path)}"
    assert copy_store(source, middle).exit_status == 0
    assert copy_store(middle, f"file://{tmp_path}/c", verify=True).exit_status == 0
    assert tree(tmp_path / "c") == without_temps(tree(tmp_path / "a"))


def test_resume_skips_equal_items_and_replaces_different_ones(tmp_path):
    """An item with the same size and hash is skipped; a missing, longer or same-size-but-different one is copied."""
    source = make_source(tmp_path / "a")
    destination = f"file://{tmp_path}/b"
    copy_store(source, destination)
    item_path(tmp_path / "b", KEYS[10]).unlink()
    item_path(tmp_path / "b", KEYS[11]).write_bytes(b"other content of another size")
    flipped = item_path(tmp_path / "b", KEYS[12])
    flipped.write_bytes(b"\xff" + flipped.read_bytes()[1:])
    summary = copy_store(source, destination, transfers=3)
    # quota.hid too: removed before the first write (it would lie if the copy stopped), copied last
    assert (summary.copied, summary.replaced, summary.failed) == (3 + 1, 2, 0)
    assert summary.skipped == summary.items - 4
    assert summary.mismatches == []  # without --verify differences are replaced, not reported
    assert tree(tmp_path / "b") == without_temps(tree(tmp_path / "a"))


def test_dry_run_changes_nothing(tmp_path):
    """--dry-run lists and compares but writes nothing, and does not create a missing destination."""
    source = make_source(tmp_path / "a")
    summary = copy_store(source, f"file://{tmp_path}/new", dry_run=True)
    assert not (tmp_path / "new").exists()
    assert summary.copied == summary.items == len(KEYS) + 2 and summary.directories == 1
    assert any("would be created" in note for note in summary.notes)
    copy_store(source, f"file://{tmp_path}/b")
    item_path(tmp_path / "b", KEYS[7]).unlink()
    before = tree(tmp_path / "b")
    summary = copy_store(source, f"file://{tmp_path}/b", dry_run=True, verify=True)
    assert tree(tmp_path / "b") == before
    assert (summary.copied, summary.bytes_copied, summary.exit_status) == (1, 100 + 37 * 7, 0)


def test_verify_names_a_corrupted_destination_item(tmp_path):
    """--verify reports an item whose destination bytes differ (exit status 1), replaces it, and is clean after."""
    source = make_source(tmp_path / "a")
    destination = f"file://{tmp_path}/b"
    copy_store(source, destination)
    corrupted = item_path(tmp_path / "b", KEYS[9])
    data = bytearray(corrupted.read_bytes())
    data[20] ^= 0x01
    corrupted.write_bytes(bytes(data))
    summary = copy_store(source, destination, verify=True)
    assert summary.mismatches == [f"data/{KEYS[9][:2]}/{KEYS[9][2:4]}/{KEYS[9]}"]
    assert summary.exit_status == 1
    assert corrupted.read_bytes() == item_path(tmp_path / "a", KEYS[9]).read_bytes()
    again = copy_store(source, destination, verify=True)
    assert (again.mismatches, again.copied, again.exit_status) == ([], 0, 0)


def test_quota_file_is_copied_only_where_it_tells_the_truth(tmp_path):
    """A destination with items of its own loses its quota.hid when copy writes to it and never gets the source's."""
    source = make_source(tmp_path / "a")
    extra = Store(f"file://{tmp_path}/b", config=CONFIG, quota=10**9)
    extra.create()
    with extra:
        extra.store("config/own", b"only at the destination")
    assert (tmp_path / "b" / QUOTA_STORE_NAME).exists()
    summary = copy_store(source, f"file://{tmp_path}/b")
    assert not (tmp_path / "b" / QUOTA_STORE_NAME).exists()
    assert summary.extra == 1 and summary.items == len(KEYS) + 1
    assert any("is not copied" in note for note in summary.notes)
    assert any("was removed" in note for note in summary.notes)
    (tmp_path / "b" / QUOTA_STORE_NAME).write_bytes(b"12345")
    copy_store(source, f"file://{tmp_path}/b")  # nothing to write: the destination's file stays
    assert (tmp_path / "b" / QUOTA_STORE_NAME).read_bytes() == b"12345"


class StopAfterFirst(Reporter):
    """A reporter that asks the copy to stop as soon as one item is done."""

    def __init__(self, stop):
        self.stop = stop
        self.events = []

    def item(self, action, name, size, summary):
        self.stop.set()

    def stopping(self, in_flight, summary):
        self.events.append(("stopping", in_flight))

    def finish(self, summary):
        self.events.append(("finish", summary.interrupted))


def test_stop_ends_cleanly_and_a_resumed_copy_copies_nothing_twice(tmp_path):
    """A stop lets the transfer in flight finish, starts no other, keeps quota.hid back; a rerun copies the rest."""
    source = make_source(tmp_path / "a")
    destination = f"file://{tmp_path}/b"
    stop = threading.Event()
    reporter = StopAfterFirst(stop)
    first = Copy(source, destination, transfers=1, reporter=reporter, stop=stop).run()
    assert (first.interrupted, first.exit_status, first.copied) == (True, 130, 1)
    assert first.not_started == first.items - 1
    assert reporter.events[-1] == ("finish", True)
    assert not (tmp_path / "b" / QUOTA_STORE_NAME).exists()
    second = copy_store(source, destination)
    assert (second.copied + first.copied, second.skipped) == (second.items, first.copied)
    assert tree(tmp_path / "b") == without_temps(tree(tmp_path / "a"))


def test_a_stop_before_the_transfers_copies_nothing(tmp_path):
    """A stop asked for while the stores are listed ends the copy there: interrupted, nothing written."""
    source = make_source(tmp_path / "a")
    stop = threading.Event()
    stop.set()
    summary = Copy(source, f"file://{tmp_path}/b", stop=stop).run()
    assert (summary.interrupted, summary.exit_status, summary.copied, summary.items_done) == (True, 130, 0, 0)
    assert tree(tmp_path / "b") == {}


def test_a_failed_item_is_named_and_the_rest_is_copied(tmp_path):
    """An item the destination refuses fails alone (exit status 1); quota.hid is then not copied."""
    source = make_source(tmp_path / "a")
    os.makedirs(tmp_path / "b" / "config" / "manifest")  # a directory where the item must go
    summary = copy_store(source, f"file://{tmp_path}/b")
    assert [name for name, _ in summary.failures] == ["config/manifest"]
    assert (summary.failed, summary.copied, summary.exit_status) == (1, len(KEYS), 1)
    assert not (tmp_path / "b" / QUOTA_STORE_NAME).exists()
    assert any("failed" in note for note in summary.notes)


class OnePerThread:
    """A plugin serving ``unsafefile:`` with a posixfs backend that is not declared thread-safe."""

    def __init__(self):
        self.threads = []

    @hookimpl
    def borgstore_backends(self):
        from borgstore_backend_posixfs import PosixFSBackend

        plugin = self

        class NotThreadSafe(PosixFSBackend):
            def open(self):
                super().open()
                self.capabilities = Capabilities(**{**self.capabilities.__dict__, "thread_safe": False})
                plugin.threads.append(threading.get_ident())

        def factory(url, **options):
            backend = NotThreadSafe(url.partition(":")[2], **options)
            backend.capabilities = Capabilities(**{**backend.capabilities.__dict__, "thread_safe": False})
            return backend

        return [borgstore.BackendSpec(("unsafefile",), factory)]


def test_a_backend_that_is_not_thread_safe_gets_one_object_per_worker(tmp_path):
    """Without thread_safe each worker thread opens its own backend object instead of sharing one."""
    plugin = OnePerThread()
    borgstore.plugin_manager().register(plugin, name="one-per-thread")
    try:
        source = make_source(tmp_path / "a")
        summary = copy_store(f"unsafefile:{tmp_path}/a", f"unsafefile:{tmp_path}/b", transfers=3)
    finally:
        borgstore.plugin_manager().unregister(name="one-per-thread")
    assert summary.exit_status == 0 and source
    assert tree(tmp_path / "b") == without_temps(tree(tmp_path / "a"))
    # the calling thread opened one object per side, and so did each worker that got an item
    opened = Counter(plugin.threads)
    assert opened[threading.get_ident()] == 2
    assert len(opened) >= 2 and set(opened.values()) == {2}


@pytest.mark.parametrize(
    "source, destination, transfers, problem",
    [
        ("file:///x/a", "file:///x/a/", 4, "the same store"),
        ("file:///x/a", "file:///x/a/b", 4, "inside the other"),
        ("file:///x/a", "file:///x/b", 0, "transfers must be an int >= 1"),
        ("/x/a", "file:///x/b", 4, "the source must be a store URL"),
    ],
)
def test_bad_arguments_are_refused_before_anything_happens(tmp_path, source, destination, transfers, problem):
    """Copying a store onto itself or into itself, no transfers, or a path instead of a URL: ValueError."""
    with pytest.raises(ValueError, match=problem):
        Copy(source, destination, transfers=transfers)


def test_a_missing_source_is_an_error_and_creates_nothing(tmp_path):
    """A source that does not exist raises BackendDoesNotExist naming it; the destination is not created."""
    from borgstore.backends.errors import BackendDoesNotExist

    with pytest.raises(BackendDoesNotExist, match="the source file://.*/nothing does not exist"):
        copy_store(f"file://{tmp_path}/nothing", f"file://{tmp_path}/b")
    assert not (tmp_path / "b").exists()


def test_hash_is_one_both_sides_compute_where_the_data_is():
    """sha256 is preferred; another common server-side algorithm is used if sha256 is not; else sha256."""
    both = Capabilities(hash_algorithms=frozenset({"md5", "sha256"}))
    md5_only = Capabilities(hash_algorithms=frozenset({"md5"}))
    assert choose_hash(both, both) == "sha256"
    assert choose_hash(both, md5_only) == "md5"
    assert choose_hash(md5_only, Capabilities()) == "sha256"


def test_secrets_in_urls_are_not_shown(tmp_path, skip_or_fail_ci):
    """The summary names the stores through redact_url: a password in a URL never appears."""
    if "sftp" not in _plugins.backends():
        skip_or_fail_ci("the sftp plugin (borgstore-backend-sftp) is not installed")
    job = Copy("sftp://alice:hunter2@example.invalid/repo", f"file://{tmp_path}/b")
    assert "hunter2" not in repr(job.summary.as_dict())
    assert job.summary.source == _plugins.redact_url("sftp://alice:hunter2@example.invalid/repo")


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory, skip_or_fail_ci):
    """moto's S3 server (a process of its own) with one bucket: a store whose directories are implied."""
    if "s3" not in _plugins.backends():
        skip_or_fail_ci("the s3 plugin (borgstore-backend-s3) is not installed")
    from borgstore_backend_s3.testserver import MotoServer, moto_available

    if not moto_available():
        skip_or_fail_ci("moto's S3 server is not installed (pip install 'moto[server]')")
    server = MotoServer(log_path=str(tmp_path_factory.mktemp("moto") / "moto.log"))
    server.start()
    server.make_bucket("copies")
    yield server
    server.stop()


def test_through_an_object_store_the_items_define_the_layout(tmp_path, moto_s3):
    """file -> S3 -> file: every item arrives byte for byte; S3 keeps no empty directory, so none comes back."""
    source = make_source(tmp_path / "a")
    s3 = moto_s3.url("copies", "store")
    there = copy_store(source, s3, transfers=3)
    assert (there.copied, there.directories, there.exit_status) == (len(KEYS) + 2, 0, 0)
    assert "borgstore-test-secret" not in repr(there.as_dict())
    back = copy_store(s3, f"file://{tmp_path}/c", verify=True)
    assert (back.copied, back.mismatches, back.exit_status) == (len(KEYS) + 2, [], 0)
    expected = without_temps(tree(tmp_path / "a"))
    del expected["data/ee/ee"], expected["data/ee"]
    assert tree(tmp_path / "c") == expected
    assert copy_store(source, s3, verify=True).skipped == len(KEYS) + 2
