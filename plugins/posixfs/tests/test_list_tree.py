"""list_tree: every item below a directory as one stream, in path order, agreeing with a walk
through list() (what Store.list() would otherwise do)."""

import os
import random

import pytest

from borgstore.backends.errors import BackendError, ObjectNotFound


def test_list_tree_yields_every_item_by_path_in_path_order(backend, root):
    """list_tree yields the items (no directories) below a directory, by relative path, sorted
    with a directory sorting as its name plus "/" ("a-b" < "a/x"), never .tmp files."""
    for name in ("d/a/x", "d/a-b", "d/a/y/z", "d/b", "d/a.del", "d/0/1/2/3"):
        backend.store(name, name.encode())
    backend.mkdir("d/empty")
    with open(os.path.join(root, "d", "a", "tmpu126orq8.tmp"), "wb") as f:
        f.write(b"half")
    listed = list(backend.list_tree("d"))
    assert [i.name for i in listed] == ["0/1/2/3", "a-b", "a.del", "a/x", "a/y/z", "b"]
    assert [i.size for i in listed] == [len("d/" + i.name) for i in listed]
    assert all(i.exists and not i.directory and i.mtime > 0 for i in listed)
    assert [i.name for i in backend.list_tree("")] == ["d/" + i.name for i in listed]


def test_list_tree_agrees_with_a_walk_through_list(backend):
    """The same items, sizes and order as a depth-first walk with list()."""
    rng = random.Random(8)
    for _ in range(300):
        name = "/".join(rng.choice(["a", "a-", "a.b", "b", "0", "_"]) for _ in range(rng.randint(1, 4)))
        try:
            backend.store("t/" + name, os.urandom(rng.randint(0, 40)))
        except BackendError:
            pass  # an item where a directory is, or the other way round

    def walk(directory, prefix):
        found = []
        for info in backend.list(directory):
            path = prefix + info.name
            if info.directory:
                found += walk(directory + "/" + info.name, path + "/")
            else:
                found.append((path, info.size))
        return found

    expected = sorted(walk("t", ""), key=lambda item: item[0])
    assert [(i.name, i.size) for i in backend.list_tree("t")] == expected


def test_list_tree_errors(backend):
    """A missing directory raises ObjectNotFound, an item BackendError, before anything is read."""
    with pytest.raises(ObjectNotFound):
        backend.list_tree("nope")
    backend.store("item", b"x")
    with pytest.raises(BackendError, match="not a directory"):
        backend.list_tree("item")
    with pytest.raises(ValueError):
        backend.list_tree("../x")


def test_list_tree_skips_items_and_directories_removed_while_listing(backend):
    """What is removed after the stream started and before it got there is left out."""
    for name in ("d/a/1", "d/b/1", "d/b/2", "d/c"):
        backend.store(name, b"x")
    items = backend.list_tree("d")
    assert next(items).name == "a/1"
    backend.delete("d/b/1")
    backend.delete("d/b/2")
    backend.rmdir("d/b")
    backend.delete("d/c")
    assert list(items) == []
