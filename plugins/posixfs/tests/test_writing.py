"""store_new, exclusive by renameat2(RENAME_NOREPLACE) or by link(2), and list_temp, on a real
directory: what each way leaves on disk, the fallbacks, and what is in the way of a name."""

import ctypes
import errno
import os
import stat

import pytest

from borgstore.backends.errors import BackendError, ObjectAlreadyExists
from borgstore_backend_posixfs import CAPABILITIES, _writing


@pytest.fixture(params=["renameat2", "link"])
def placing(request, backend):
    """An open backend placing new items by renameat2 where this system has it, or by link."""
    if request.param == "renameat2":
        if _writing._renameat2 is None:
            pytest.skip("renameat2 cannot be called on this system")
    else:
        backend._noreplace = False
    return backend


def entries(root, directory=""):
    return sorted(os.listdir(os.path.join(root, directory)))


def test_store_new_is_declared():
    assert CAPABILITIES.store_new is True


def test_store_new_creates_and_then_refuses(placing, root):
    """A new name is stored (with its directories, mode 0600); the existing name raises
    ObjectAlreadyExists naming it, and neither the item nor the directory changes."""
    placing.store_new("data/00/item", b"first")
    assert placing.load("data/00/item") == b"first"
    path = os.path.join(root, "data", "00", "item")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_nlink == 1  # the link way dropped the temp name
    with pytest.raises(ObjectAlreadyExists, match=r"store_new 'data/00/item': an item of that name exists .*item\)"):
        placing.store_new("data/00/item", b"second, longer")
    assert placing.load("data/00/item") == b"first"
    assert entries(root, "data/00") == ["item"]
    placing.store("data/00/other", b"by store")
    with pytest.raises(ObjectAlreadyExists):
        placing.store_new("data/00/other", b"new")
    assert placing.load("data/00/other") == b"by store"
    assert entries(root, "data/00") == ["item", "other"]


def test_store_new_onto_a_directory_or_a_link_is_a_conflict(placing, root, tmp_path):
    """A directory of that name: BackendError, not ObjectAlreadyExists (no item is there); a
    symbolic link: the link error, and neither the link nor its target changes."""
    placing.mkdir("data/dir")
    with pytest.raises(BackendError, match="a directory of that name exists") as excinfo:
        placing.store_new("data/dir", b"x")
    assert not isinstance(excinfo.value, ObjectAlreadyExists)
    target = tmp_path / "target"
    target.write_bytes(b"outside")
    os.symlink(target, os.path.join(root, "data", "link"))
    with pytest.raises(BackendError, match="symbolic link") as excinfo:
        placing.store_new("data/link", b"x")
    assert not isinstance(excinfo.value, ObjectAlreadyExists)
    assert os.path.islink(os.path.join(root, "data", "link")) and target.read_bytes() == b"outside"
    assert entries(root, "data") == ["dir", "link"]


def _unsupported(*args):
    """renameat2 as a kernel or file system without RENAME_NOREPLACE answers."""
    ctypes.set_errno(errno.EINVAL)
    return -1


def test_without_renameat2_support_link_takes_over(backend, root, monkeypatch):
    """EINVAL from renameat2 (NFS, an old kernel): the backend switches to link(2) for good, and
    store_new stays exclusive."""
    calls = []
    monkeypatch.setattr(_writing, "_renameat2", lambda *args: calls.append(args) or _unsupported())
    backend.store_new("data/a", b"1")
    assert backend._noreplace is False
    backend.store_new("data/b", b"2")
    with pytest.raises(ObjectAlreadyExists):
        backend.store_new("data/a", b"3")
    assert len(calls) == 1
    assert (backend.load("data/a"), backend.load("data/b")) == (b"1", b"2")
    assert entries(root, "data") == ["a", "b"]


def test_a_file_system_without_either_way_says_so(backend, root, monkeypatch):
    """Neither renameat2's flag nor hard links (a FAT file system): BackendError naming both,
    nothing stored, no temp item left."""
    monkeypatch.setattr(_writing, "_renameat2", _unsupported)

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(_writing.os, "link", no_links)
    with pytest.raises(BackendError, match=r"renameat2\(RENAME_NOREPLACE\) and a hard link .*EPERM"):
        backend.store_new("data/a", b"1")
    assert entries(root, "data") == []


def test_list_temp_finds_temp_items_at_any_depth(backend, root):
    """Every .tmp file below the directory, by relative path, with size and mtime; .tmp
    directories are searched too; items, directories and links are not listed."""
    backend.store("data/00/item", b"item")
    backend.store("data/00/item.tmp", b"by store()")
    with open(os.path.join(root, "data", "00", "item.0123456789abcdef.tmp"), "wb") as f:
        f.write(b"left by a killed writer")
    os.makedirs(os.path.join(root, "data", "odd.tmp", "deeper"))
    with open(os.path.join(root, "data", "odd.tmp", "deeper", "x.tmp"), "wb") as f:
        f.write(b"x")
    os.symlink(os.path.join(root, "data", "00", "item"), os.path.join(root, "data", "link.tmp"))
    found = list(backend.list_temp("data"))
    assert [(info.name, info.size) for info in found] == [
        ("00/item.0123456789abcdef.tmp", 23),
        ("00/item.tmp", 10),
        ("odd.tmp/deeper/x.tmp", 1),
    ]
    mtime = os.stat(os.path.join(root, "data", "00", "item.tmp")).st_mtime
    assert found[1].mtime == mtime and not found[1].directory and found[1].exists
    assert [info.name for info in backend.list_temp("")] == ["data/" + info.name for info in found]
    assert [info.name for info in backend.list("data/00")] == ["item"]


def test_list_temp_of_a_missing_directory_or_an_item(backend):
    backend.store("data/item", b"x")
    assert list(backend.list_temp("nothing/here")) == []
    assert list(backend.list_temp("data/item/below")) == []
    with pytest.raises(BackendError, match="it is an item"):
        backend.list_temp("data/item")
    with pytest.raises(ValueError):
        backend.list_temp("../outside")
