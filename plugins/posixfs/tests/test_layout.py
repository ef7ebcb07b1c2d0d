"""The on-disk layout: names map to paths under the root exactly as in the PyPI borgstore."""

import os

from borgstore import Store

KEY = "0123456789abcdef" * 4


def test_backend_names_are_paths_below_the_root(backend, root):
    """A backend name is the relative path of the file; nothing else is written."""
    backend.store(f"data/01/23/{KEY}", b"v")
    backend.store("config/manifest", b"m")
    files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    assert files == ["config/manifest", f"data/01/23/{KEY}"]


def test_store_layout_with_levels_and_soft_deletion(tmp_path):
    """Through Store: level 1 nests under the first two hex digits; a soft delete is a '.del' rename beside it."""
    root = tmp_path / "store"
    store = Store(f"file://{root}", config={"data/": {"levels": [1]}, "config/": {"levels": [0]}})
    store.create()
    with store:
        store.store("data/" + KEY, b"chunk")
        store.store("config/manifest", b"m")
        store.move("data/" + KEY, delete=True)
    assert (root / "data" / "01" / (KEY + ".del")).read_bytes() == b"chunk"
    assert (root / "config" / "manifest").read_bytes() == b"m"
    assert sorted(os.listdir(root)) == ["config", "data"]


def test_a_tree_written_the_pypi_way_reads_back(backend, root):
    """Items, '.del' items, the quota file and leftover 'tmpXXXXXXXX.tmp' files of the PyPI package:
    the backend lists and loads all but the temp files (the Store hides '.del'/'.hid' as it needs)."""
    nested = os.path.join(root, "data", "01", "23")
    os.makedirs(nested)
    for name, value in ((KEY, b"live"), ("0123" + "f" * 60 + ".del", b"gone"), ("tmpu126orq8.tmp", b"half")):
        with open(os.path.join(nested, name), "wb") as f:
            f.write(value)
    with open(os.path.join(root, "quota.hid"), "wb") as f:
        f.write(b"77")
    assert [i.name for i in backend.list("")] == ["data", "quota.hid"]
    assert [i.name for i in backend.list("data/01/23")] == [KEY, "0123" + "f" * 60 + ".del"]
    assert backend.load(f"data/01/23/{KEY}") == b"live"
    assert backend.info(f"data/01/23/{KEY}").size == 4
    # storing there again leaves the stranger's temp file alone
    backend.store(f"data/01/23/{KEY}", b"new")
    assert "tmpu126orq8.tmp" in os.listdir(nested)
