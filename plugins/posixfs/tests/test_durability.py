"""The durability modes call the syncs they promise, and no others (counted, never timed)."""

import errno
import os
import stat

import pytest

from borgstore.backends.errors import BackendError
from borgstore_backend_posixfs import _sync


class SyncCounter:
    """Counts syncfs calls and fsync calls on files and on directories, then does the real call."""

    def __init__(self, monkeypatch):
        self.syncfs = 0
        self.file_fsyncs = 0
        self.directory_fsyncs = 0
        real_syncfs, real_fsync = _sync.syncfs, os.fsync

        def syncfs(fd):
            self.syncfs += 1
            real_syncfs(fd)

        def fsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self.directory_fsyncs += 1
            else:
                self.file_fsyncs += 1
            real_fsync(fd)

        monkeypatch.setattr(_sync, "syncfs", syncfs)
        monkeypatch.setattr(os, "fsync", fsync)

    def reset(self):
        self.syncfs = self.file_fsyncs = self.directory_fsyncs = 0

    @property
    def counts(self):
        return self.syncfs, self.file_fsyncs, self.directory_fsyncs


@pytest.fixture
def syncs(monkeypatch):
    return SyncCounter(monkeypatch)


def some_changes(backend):
    backend.store("data/00/0011", b"a")
    backend.store("data/00/0022", b"b")
    backend.move("data/00/0011", "data/00/0011.del")
    backend.delete("data/00/0022")
    backend.mkdir("config")


def test_none_never_syncs(make_backend, syncs):
    """durability="none" calls no sync at all, not even at flush or close."""
    backend = make_backend(durability="none")
    syncs.reset()  # create() synced the new store
    some_changes(backend)
    backend.flush()
    backend.close()
    assert syncs.counts == (0, 0, 0)


def test_close_syncs_the_file_system_once_per_flush_with_changes(make_backend, syncs):
    """durability="close": no fsync per operation, one syncfs per flush/close after changes, none without."""
    backend = make_backend(durability="close")
    syncs.reset()  # create() synced the new store
    some_changes(backend)
    assert syncs.counts == (0, 0, 0)
    backend.flush()
    assert syncs.counts == (1, 0, 0)
    backend.flush()  # nothing changed since
    backend.info("data/00/0011.del")
    backend.load("data/00/0011.del")
    list(backend.list("data/00"))
    backend.flush()  # reads change nothing
    assert syncs.counts == (1, 0, 0)
    backend.store("data/00/0033", b"c")
    backend.close()
    assert syncs.counts == (2, 0, 0)
    backend.open()
    backend.close()
    assert syncs.counts == (2, 0, 0)


@pytest.mark.parametrize("change", ["rmdir", "mkdir"])
def test_close_counts_directory_changes_as_changes(make_backend, syncs, change):
    """Creating or removing a directory is a change that close() makes durable."""
    backend = make_backend(durability="close")
    syncs.reset()  # create() synced the new store
    backend.mkdir("x")
    backend.flush()
    getattr(backend, change)("x" if change == "rmdir" else "y")
    backend.close()
    assert syncs.syncfs == 2


def test_always_syncs_each_file_and_its_directory(make_backend, syncs):
    """durability="always": fsync of the file before the rename, of the directory after it."""
    backend = make_backend(durability="always")
    syncs.reset()  # create() synced the new store
    backend.mkdir("data/00")
    before = syncs.counts
    backend.store("data/00/0011", b"a")
    assert syncs.file_fsyncs - before[1] == 1
    assert syncs.directory_fsyncs - before[2] == 1
    before = syncs.counts
    backend.move("data/00/0011", "data/00/0011.del")
    assert syncs.counts[1:] == (before[1], before[2] + 1)
    before = syncs.counts
    backend.move("data/00/0011.del", "data/01/0011")  # another directory, created on demand
    # the new directory's parent, the target directory and the source directory
    assert syncs.counts[1:] == (before[1], before[2] + 3)
    before = syncs.counts
    backend.delete("data/01/0011")
    assert syncs.counts[1:] == (before[1], before[2] + 1)
    backend.close()
    assert syncs.syncfs == 0


@pytest.mark.parametrize("way", ["renameat2", "link"])
@pytest.mark.parametrize("durability, counts", [("always", (0, 1, 1)), ("close", (0, 0, 0))])
def test_store_new_syncs_as_store_does(make_backend, syncs, way, durability, counts):
    """store_new, placed either way: "always" fsyncs the file before placing it and the
    directory after; "close" leaves it to the one syncfs of the next flush."""
    backend = make_backend(durability=durability)
    backend._noreplace = way == "renameat2"
    backend.mkdir("data/00")
    syncs.reset()
    backend.store_new("data/00/0011", b"a")
    assert syncs.counts == counts
    backend.flush()
    assert syncs.syncfs == (durability == "close")


def test_always_syncs_the_parents_of_directories_created_on_demand(make_backend, syncs):
    """A store that creates data/ab/cd makes data/ab and data/ab/cd durable in their parents."""
    backend = make_backend(durability="always")
    syncs.reset()  # create() synced the new store
    backend.store("data/ab/cd/abcd", b"x")
    # data, data/ab, data/ab/cd are new: their parents are synced, then the item's directory
    assert syncs.counts == (0, 1, 4)


def test_a_failed_sync_raises_and_is_tried_again(make_backend, monkeypatch):
    """A write-back error at flush raises BackendError; the changes stay pending for the next flush."""
    backend = make_backend(durability="close")
    calls = []

    def failing_syncfs(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(_sync, "syncfs", failing_syncfs)
    backend.store("data/item", b"x")
    with pytest.raises(BackendError, match="durable.*EIO"):
        backend.flush()
    backend.flush()
    assert len(calls) == 2


def test_close_releases_the_backend_even_if_the_sync_fails(make_backend, monkeypatch):
    """close() raises the sync error but is closed afterwards."""
    backend = make_backend(durability="close")

    def failing_syncfs(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(_sync, "syncfs", failing_syncfs)
    backend.store("data/item", b"x")
    with pytest.raises(BackendError):
        backend.close()
    assert not backend.opened


def test_real_syncfs_succeeds_on_a_real_directory(tmp_path):
    """syncfs(2) is found and works (it falls back to os.sync only where libc lacks it)."""
    import sys

    if sys.platform.startswith("linux"):
        assert _sync._libc_syncfs is not None
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        _sync.syncfs(fd)
    finally:
        os.close(fd)


def test_create_syncs_unless_durability_is_none(root, syncs):
    """A new store's directory is made durable by create(), except with durability="none"."""
    from borgstore_backend_posixfs import PosixFSBackend

    PosixFSBackend(root + "1", durability="none").create()
    assert syncs.syncfs == 0
    PosixFSBackend(root + "2", durability="close").create()
    assert syncs.syncfs == 1
