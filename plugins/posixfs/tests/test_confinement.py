"""Nothing outside the store's root is ever read, written, created or deleted: not through a
hostile name given to the backend directly (``get_backend``), not through a symbolic link
planted inside the root, whichever way names are resolved (openat2, or the portable walk)."""

import errno
import os
import stat

import pytest

from borgstore.backends.errors import BackendError, ObjectNotFound
from borgstore.store import get_backend
from borgstore_backend_posixfs import _beneath

SECRET = b"the content of a file outside the store " * 50
HOSTILE_NAMES = [
    "../escape",
    "data/../../x",
    "/etc/passwd",
    "a//b",
    "a\x00b",
    "./x",
    "..",
    ".",
    "data/..",
    "data/./x",
    "/",
    "a/",
    "a\\b",
    "\x01",
    "data/\n",
    "../outside/secret",
    # in a directory the backend holds open ("data", made by the fixture's store), where the hot
    # paths check only the last component
    "data/.",
    "data/",
    "data/\x00",
    "data/x\x00",
]


def snapshot(top: str, skip: str = "") -> dict:
    """Every entry below *top* (but *skip*): its type, mode, size, mtime and content, links as links."""
    found = {}
    for directory, dirs, files in os.walk(top):
        if skip:
            dirs[:] = [d for d in dirs if os.path.join(directory, d) != skip]
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            else:
                content = None
            found[os.path.relpath(path, top)] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return found


@pytest.fixture
def place(tmp_path, walk_names):
    """A base directory with the store's root in it and, beside it, an ``outside`` directory with a
    secret file and an empty subdirectory; an open backend from ``get_backend``."""
    base = str(tmp_path)
    outside = os.path.join(base, "outside")
    os.makedirs(os.path.join(outside, "sub"))
    with open(os.path.join(outside, "secret"), "wb") as f:
        f.write(SECRET)
    root = os.path.join(base, "store")
    backend = get_backend(f"file://{root}")
    backend.walk_names = walk_names
    backend.create()
    backend.open()
    yield base, root, outside, backend
    if backend.opened:
        backend.close()


def operations(name):
    """Every operation that takes a name, called with *name* in each position."""
    return {
        "info": lambda b: b.info(name),
        "load": lambda b: b.load(name),
        "load-range": lambda b: b.load(name, size=5, offset=1),
        "store": lambda b: b.store(name, b"written"),
        "delete": lambda b: b.delete(name),
        "move-from": lambda b: b.move(name, "data/target"),
        "move-to": lambda b: b.move("data/item", name),
        "mkdir": lambda b: b.mkdir(name),
        "rmdir": lambda b: b.rmdir(name),
        "list": lambda b: list(b.list(name)),
        "list_tree": lambda b: list(b.list_tree(name)),
        "hash": lambda b: b.hash(name),
        "gather": lambda b: b.gather([(name, 0, 1)]),
    }


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_raise_value_error_and_touch_nothing(place, name):
    """Each operation refuses a hostile name with ValueError before any I/O: nothing outside the
    root changes, nothing inside either, and the secret outside is never returned."""
    base, root, outside, backend = place
    backend.store("data/item", b"item")
    before_outside = snapshot(base, skip=root)
    before_inside = snapshot(root)
    for operation, call in operations(name).items():
        with pytest.raises(ValueError, match="invalid backend name"):
            result = call(backend)
            assert SECRET not in repr(result), operation
    assert snapshot(base, skip=root) == before_outside
    assert snapshot(root) == before_inside


def test_the_root_is_a_name_only_for_info_and_listing(place):
    """ "" is the root for info, list and list_tree; every other operation refuses it."""
    _, root, _, backend = place
    assert backend.info("").directory
    assert list(backend.list("")) == [] and list(backend.list_tree("")) == []
    for operation, call in operations("").items():
        if operation not in ("info", "list", "list_tree"):
            with pytest.raises(ValueError):
                call(backend)
    assert os.path.isdir(root)


def plant_links(root, outside):
    """Symbolic links inside the root that point out of it: directories and files, absolute and
    relative, and one to /etc."""
    os.makedirs(os.path.join(root, "data", "01"))
    os.symlink(outside, os.path.join(root, "data", "00"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "data", "01", "secret"))
    os.symlink("../../../outside/secret", os.path.join(root, "data", "01", "relsecret"))
    os.symlink("../outside", os.path.join(root, "rel"))
    os.symlink(outside, os.path.join(root, "link"))
    os.symlink("/etc", os.path.join(root, "etc"))


THROUGH_LINKS = ["data/00/secret", "rel/secret", "link/secret", "data/01/secret", "data/01/relsecret"]


def test_reading_through_a_link_is_refused(place):
    """load, hash, gather and info through a link (a directory on the way or the item itself)
    raise BackendError naming the link problem, never ObjectNotFound, and never give the secret."""
    base, root, outside, backend = place
    plant_links(root, outside)
    before = snapshot(base, skip=root)
    for name in THROUGH_LINKS + ["etc/passwd", "etc/hostname"]:
        for call in (
            lambda: backend.load(name),
            lambda: backend.load(name, size=10, offset=0),
            lambda: backend.hash(name),
            lambda: backend.gather([(name, 0, 10)]),
            lambda: backend.info(name),
        ):
            with pytest.raises(BackendError, match="symbolic link") as excinfo:
                result = call()
                assert SECRET[:10] not in repr(result)
            assert not isinstance(excinfo.value, ObjectNotFound)
    assert snapshot(base, skip=root) == before


def test_listing_never_follows_or_shows_links(place):
    """list and list_tree of a link raise; links inside listed directories are left out, and
    list_tree does not descend into them."""
    base, root, outside, backend = place
    plant_links(root, outside)
    backend.store("data/01/item", b"mine")
    for name in ("data/00", "link", "rel", "etc"):
        with pytest.raises(BackendError, match="symbolic link"):
            list(backend.list(name))
        with pytest.raises(BackendError, match="symbolic link"):
            list(backend.list_tree(name))
    assert [i.name for i in backend.list("")] == ["data"]
    assert [i.name for i in backend.list("data")] == ["01"]
    assert [i.name for i in backend.list("data/01")] == ["item"]
    assert [(i.name, i.size) for i in backend.list_tree("")] == [("data/01/item", 4)]


def test_writing_through_a_link_is_refused(place):
    """store, mkdir, move and delete through a linked directory raise BackendError and change
    nothing outside the root."""
    base, root, outside, backend = place
    plant_links(root, outside)
    backend.store("data/item", b"mine")
    before = snapshot(base, skip=root)
    calls = [
        lambda: backend.store("data/00/new", b"x"),
        lambda: backend.store("link/secret", b"x"),
        lambda: backend.store("rel/sub/new", b"x"),
        lambda: backend.store("etc/borgstore-test", b"x"),
        lambda: backend.mkdir("data/00/newdir"),
        lambda: backend.mkdir("link/sub/deeper"),
        lambda: backend.mkdir("link"),
        lambda: backend.move("data/item", "data/00/moved"),
        lambda: backend.move("data/item", "link/sub/moved"),
        lambda: backend.move("data/00/secret", "data/stolen"),
        lambda: backend.move("link/secret", "data/stolen"),
        lambda: backend.delete("data/00/secret"),
        lambda: backend.delete("link/secret"),
        lambda: backend.delete("etc/hostname"),
        lambda: backend.rmdir("link/sub"),
        lambda: backend.rmdir("data/00/sub"),
        lambda: backend.rmdir("link"),
    ]
    for call in calls:
        with pytest.raises(BackendError):
            call()
    assert snapshot(base, skip=root) == before
    assert backend.load("data/item") == b"mine"
    assert not backend.info("data/stolen").exists
    assert os.path.islink(os.path.join(root, "link"))


def test_store_new_and_list_temp_never_go_through_a_link(place):
    """store_new through a linked directory raises BackendError and writes nothing outside;
    list_temp neither lists a link nor descends into a linked directory."""
    base, root, outside, backend = place
    plant_links(root, outside)
    with open(os.path.join(outside, "sub", "theirs.tmp"), "wb") as f:
        f.write(b"outside")
    os.symlink(os.path.join(outside, "sub", "theirs.tmp"), os.path.join(root, "data", "01", "linked.tmp"))
    before = snapshot(base, skip=root)
    for name in ("data/00/new", "link/sub/new", "rel/new", "etc/borgstore-test", "data/01/secret"):
        with pytest.raises(BackendError, match="symbolic link"):
            backend.store_new(name, b"x")
    for name in ("data/00", "link", "rel/sub"):
        with pytest.raises(BackendError, match="symbolic link"):
            list(backend.list_temp(name))
    backend.store("data/01/mine.tmp", b"mine")
    assert [info.name for info in backend.list_temp("")] == ["data/01/mine.tmp"]
    assert snapshot(base, skip=root) == before


def test_a_link_as_the_last_component_is_replaced_or_removed_itself(place):
    """store and move onto a link replace the link; delete removes the link; the file it
    pointed to stays as it was."""
    base, root, outside, backend = place
    plant_links(root, outside)
    before = snapshot(base, skip=root)
    backend.store("data/01/secret", b"new value")
    assert backend.load("data/01/secret") == b"new value"
    backend.store("data/item", b"moved")
    backend.move("data/item", "data/01/relsecret")
    assert backend.load("data/01/relsecret") == b"moved"
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "data", "01", "again"))
    backend.delete("data/01/again")
    assert not os.path.lexists(os.path.join(root, "data", "01", "again"))
    assert snapshot(base, skip=root) == before


def test_destroy_removes_links_not_their_targets(place):
    """destroy() removes the links inside the store and leaves what they point to."""
    base, root, outside, backend = place
    plant_links(root, outside)
    before = snapshot(base, skip=root)
    backend.close()
    backend.destroy()
    assert not os.path.exists(root)
    assert snapshot(base) == before


def test_a_fifo_in_the_store_neither_blocks_nor_is_an_item(place):
    """A FIFO planted in the store is no item: reading it raises instead of waiting for a writer
    or reading nothing, info raises, listings leave it out."""
    _, root, _, backend = place
    os.makedirs(os.path.join(root, "data"))
    os.mkfifo(os.path.join(root, "data", "fifo"))
    for call in (
        lambda: backend.load("data/fifo"),
        lambda: backend.load("data/fifo", size=1),
        lambda: backend.hash("data/fifo"),
        lambda: backend.gather([("data/fifo", 0, 1)]),
        lambda: backend.info("data/fifo"),
    ):
        with pytest.raises(BackendError) as excinfo:
            call()
        assert not isinstance(excinfo.value, ObjectNotFound)
    assert list(backend.list("data")) == []
    assert list(backend.list_tree("")) == []


def test_openat2_refuses_links_where_the_kernel_has_it(tmp_path):
    """On a kernel with openat2, names are resolved by it (one system call), refusing links."""
    if _beneath._syscall is None:
        pytest.skip("openat2 cannot be called on this system")
    os.makedirs(tmp_path / "store" / "dir")
    os.symlink(tmp_path, tmp_path / "store" / "link")
    fd = os.open(tmp_path / "store", os.O_RDONLY | os.O_DIRECTORY)
    try:
        open_beneath = _beneath.opener(fd, f"{tmp_path}/store/")
        if not _beneath._openat2_works:
            pytest.skip("this kernel (or its seccomp filter) refuses openat2")
        os.close(open_beneath("dir", _beneath.DIR))
        with pytest.raises(OSError) as excinfo:
            open_beneath("link/store", _beneath.DIR)
        assert excinfo.value.errno == errno.ELOOP
        assert excinfo.value.filename == f"{tmp_path}/store/link/store"
    finally:
        os.close(fd)
