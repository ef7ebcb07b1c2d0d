"""Contract edges: names at the backend boundary (hostile ones never reach rclone), conflicts
between items and directories, and list_tree (one recursive rclone call for a whole namespace)."""

import os

import pytest

from borgstore import Store, get_backend
from borgstore.backends.errors import BackendError, ObjectNotFound

HOSTILE = [
    "../escape",
    "../outside/victim",
    "data/../../escape",
    "..",
    "/escape",
    "/{outside}/victim",
    "a//b",
    "./a",
    "a/./b",
    "data/",
    "a\\..\\..\\escape",
    "a\x00b",
    "a\nb",
    "",
]


def tree(path) -> dict:
    """Every directory and file below *path*, with the files' contents."""
    found = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            found[os.path.join(root, d)] = None
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                found[full] = fh.read()
    return found


def tree_files(path) -> list:
    """The files below *path*, by path relative to it."""
    return [os.path.relpath(p, path) for p, content in tree(path).items() if content is not None]


def operations(backend, name):
    """Every operation taking a name, called with *name* (in each place a name goes)."""
    yield "store", lambda: backend.store(name, b"x")
    yield "load", lambda: backend.load(name)
    yield "delete", lambda: backend.delete(name)
    yield "move from", lambda: backend.move(name, "ok")
    yield "move to", lambda: backend.move("ok", name)
    yield "mkdir", lambda: backend.mkdir(name)
    yield "rmdir", lambda: backend.rmdir(name)
    yield "hash", lambda: backend.hash(name)
    if name:  # "" is the root, which info and the listings accept
        yield "info", lambda: backend.info(name)
        yield "list", lambda: list(backend.list(name))
        yield "list_tree", lambda: list(backend.list_tree(name))


def test_hostile_names_are_refused_before_any_request(rclone_binary, tmp_path, request):
    """Through get_backend() directly, every operation refuses a name that could leave the root
    (or is not a valid name) with a ValueError, sends nothing to rclone, and nothing outside the
    store's root is created, changed or read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"do not touch")
    backend = get_backend(f"rclone:{tmp_path / 'store'}")
    backend.create()
    backend.open()
    try:
        backend.store("ok", b"inside")
        before = tree(tmp_path)
        methods = request.getfixturevalue("rc_methods")
        for template in HOSTILE:
            name = template.format(outside=str(outside).lstrip("/"))
            for what, call in operations(backend, name):
                with pytest.raises(ValueError):
                    call()
                assert methods == [], f"{what} {name!r} reached rclone"
        assert tree(tmp_path) == before
        assert backend.load("ok") == b"inside"
    finally:
        backend.close()


def test_move_onto_a_directory_is_refused_and_keeps_the_source(backend, store_path):
    """A directory as the target is a conflict (BackendError, not ObjectNotFound); a directory as
    the source is no item (ObjectNotFound)."""
    backend.store("data/item", b"source")
    backend.store("data/dir/inside", b"x")
    backend.mkdir("data/empty")
    for target in ("data/dir", "data/empty"):
        with pytest.raises(BackendError) as raised:
            backend.move("data/item", target)
        assert not isinstance(raised.value, ObjectNotFound)
    assert (store_path / "data/item").read_bytes() == b"source"
    assert sorted(tree_files(store_path / "data")) == ["dir/inside", "item"]
    with pytest.raises(ObjectNotFound):
        backend.move("data/dir", "data/moved")


def walk(backend, directory="") -> list:
    """Every item below *directory* by path, found with one list() call per directory."""
    found = []
    for info in backend.list(directory):
        path = f"{directory}/{info.name}" if directory else info.name
        if info.directory:
            found.extend(walk(backend, path))
        else:
            found.append((path, info.size))
    return found


def test_list_tree_agrees_with_walking_the_directories(backend, store_path):
    """list_tree gives every item below a directory (no directories, no .tmp items) by its path
    relative to that directory, sorted by path, a directory where its name + "/" sorts ("a-b"
    before "a/x", "a.b" before "a/x"), with the sizes list() gives."""
    for name in ("data/a/x", "data/a-b", "data/a.b", "data/00/11/k", "data/00/k.del", "data/ff", "top", ".hid"):
        backend.store(name, name.encode())
    backend.mkdir("data/empty/deeper")
    (store_path / "data/00/half.tmp").write_bytes(b"partial")
    tree_items = [(i.name, i.size) for i in backend.list_tree("data")]
    assert [name for name, _ in tree_items] == ["00/11/k", "00/k.del", "a-b", "a.b", "a/x", "ff"]
    assert tree_items == sorted((path[len("data/") :], size) for path, size in walk(backend, "data"))
    assert [(i.name, i.size) for i in backend.list_tree("")] == sorted(walk(backend))
    assert all(not i.directory and i.exists and i.mtime > 0 for i in backend.list_tree(""))
    assert list(backend.list_tree("data/empty")) == []


def test_list_tree_of_a_missing_directory_or_an_item(backend):
    """A missing directory is ObjectNotFound (when list_tree is called); an item is no directory:
    a BackendError that is not ObjectNotFound."""
    backend.store("item", b"x")
    with pytest.raises(ObjectNotFound):
        backend.list_tree("nothing/here")
    with pytest.raises(BackendError) as raised:
        backend.list_tree("item")
    assert not isinstance(raised.value, ObjectNotFound)


@pytest.fixture
def rc_targets(monkeypatch):
    """The rc commands (paths of the POST requests) sent to rclone from now on, but the status
    requests of rclone jobs (a listing runs as a job: its start is the operations/list call)."""
    from borgstore_backend_rclone._daemon import RcDaemon

    targets = []
    original = RcDaemon._pipeline

    def recording(self, requests, mutation):
        posts = (target.partition("?")[0] for method, target, *_ in requests if method == "POST")
        targets.extend(target for target in posts if target != "/job/status")
        return original(self, requests, mutation)

    monkeypatch.setattr(RcDaemon, "_pipeline", recording)
    return targets


def test_store_list_of_a_nested_namespace_is_one_rclone_call(rclone_binary, store_path, request):
    """Store.list() on a two-level namespace makes one operations/list call (an rclone job), not
    one per directory, and lists the same keys, live and soft-deleted."""
    store = Store(f"rclone:{store_path}", config={"data/": {"levels": [2]}, "config/": {"levels": [0]}})
    store.create()
    keys = sorted(f"{i:04x}" * 4 for i in range(0, 0x10000, 0x0FFF))
    with store:
        for key in keys:
            store.store(f"data/{key}", key.encode())
        store.move(f"data/{keys[0]}", delete=True)
        store.store("config/main", b"c")
        calls = request.getfixturevalue("rc_targets")
        assert [i.name for i in store.list("data")] == keys[1:]
        assert calls == ["/operations/list"]
        assert [i.name for i in store.list("data", deleted=True)] == keys[:1]
        assert [i.name for i in store.list("config")] == ["main"]
        assert calls == ["/operations/list"] * 3
    store.destroy()
