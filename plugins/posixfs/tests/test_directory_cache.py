"""The descriptors of directories kept between operations: never stale, never a way out."""

import os

import pytest

from borgstore.backends.errors import BackendError, ObjectAlreadyExists, ObjectNotFound
from borgstore_backend_posixfs import PosixFSBackend, _dircache


@pytest.fixture
def pair(make_backend, root, walk_names):
    """Two open backends on one store: ``ours`` keeps descriptors, ``theirs`` changes things."""
    ours = make_backend()
    theirs = PosixFSBackend(root)
    theirs.walk_names = walk_names
    theirs.open()
    yield ours, theirs
    theirs.close()


def test_a_directory_removed_and_made_again_is_found(pair):
    """After another Store removes a directory ours holds and makes it again, every operation
    sees the new one: nothing is reported missing that is there, nothing is written into the
    removed one."""
    ours, theirs = pair
    ours.store("data/00/a", b"1")
    ours.delete("data/00/a")  # ours now holds data/00
    theirs.rmdir("data/00")
    theirs.store("data/00/b", b"theirs")
    assert ours.info("data/00/b").exists
    assert ours.load("data/00/b") == b"theirs"
    ours.store("data/00/c", b"ours")
    assert theirs.load("data/00/c") == b"ours"
    ours.move("data/00/c", "data/00/d")
    assert theirs.load("data/00/d") == b"ours"
    ours.delete("data/00/b")
    assert not theirs.info("data/00/b").exists
    # removed again while held: a store makes the directory anew, where the other sees it
    theirs.delete("data/00/d")
    theirs.rmdir("data/00")
    ours.store("data/00/e", b"again")
    assert theirs.load("data/00/e") == b"again"
    with pytest.raises(ObjectNotFound):
        ours.load("data/00/missing")


def test_store_new_and_list_temp_see_a_directory_made_again(pair):
    """store_new into a held directory that another Store removed makes it anew where the other
    sees it, and stays exclusive there; list_temp reads the new one."""
    ours, theirs = pair
    ours.store_new("data/00/a", b"1")
    ours.delete("data/00/a")  # ours now holds data/00
    theirs.rmdir("data/00")
    ours.store_new("data/00/b", b"ours")
    assert theirs.load("data/00/b") == b"ours"
    with pytest.raises(ObjectAlreadyExists):
        ours.store_new("data/00/b", b"again")
    theirs.delete("data/00/b")
    theirs.rmdir("data/00")
    theirs.store("data/00/c.tmp", b"theirs")
    assert [info.name for info in ours.list_temp("data/00")] == ["c.tmp"]


def test_a_held_directory_swapped_for_a_link_is_not_followed(pair, tmp_path):
    """A directory ours holds, removed and replaced by a symbolic link out of the store: the
    link is refused, nothing is read or written outside."""
    ours, theirs = pair
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    ours.store("data/00/a", b"1")
    ours.delete("data/00/a")
    theirs.rmdir("data/00")
    os.symlink(outside, os.path.join(ours.path, "data", "00"))
    with pytest.raises(BackendError) as excinfo:
        ours.load("data/00/secret")
    assert not isinstance(excinfo.value, ObjectNotFound)
    with pytest.raises(BackendError):
        ours.store("data/00/planted", b"x")
    assert sorted(os.listdir(outside)) == ["secret"]


def test_the_descriptors_kept_are_bounded(make_backend, monkeypatch):
    """Past the limit, directories are opened and closed per operation: no descriptor leaks."""
    monkeypatch.setattr(_dircache, "kept_limit", lambda: 3)
    backend = make_backend()
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        backend.store(f"data/{i:02x}/item", b"x")
        assert backend.load(f"data/{i:02x}/item") == b"x"
    assert len(os.listdir("/proc/self/fd")) - before <= 3
    backend.close()
    assert len(os.listdir("/proc/self/fd")) < before
