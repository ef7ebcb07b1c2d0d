"""Stores on disk in the PyPI borgstore's layout open here, and ours open there."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from borgstore.store import Store



def chunk_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_read_a_store_laid_out_by_the_pypi_package(tmp_path, file_backend):
    """Nested items, .del items and leftover .tmp files written the PyPI way read correctly."""
    root = tmp_path / "store"
    live = {chunk_key(bytes([i])): bytes([i]) * 10 for i in range(5)}
    gone = chunk_key(b"deleted")
    for key, value in live.items():
        (root / "data" / key[:2] / key[2:4]).mkdir(parents=True, exist_ok=True)
        (root / "data" / key[:2] / key[2:4] / key).write_bytes(value)
    (root / "data" / gone[:2] / gone[2:4]).mkdir(parents=True, exist_ok=True)
    (root / "data" / gone[:2] / gone[2:4] / (gone + ".del")).write_bytes(b"deleted")
    some = next(iter(live))
    (root / "data" / some[:2] / some[2:4] / "tmpu126orq8.tmp").write_bytes(b"half a chun")
    (root / "config").mkdir()
    (root / "config" / "manifest").write_bytes(b"{}")
    (root / "config" / "tmpabcdefgh.tmp").write_bytes(b"partial")
    (root / "quota.hid").write_bytes(b"77")

    store = Store(f"file://{root}", config={"config/": {"levels": [0]}, "data/": {"levels": [2]}}, quota=10**9)
    with store:
        assert [i.name for i in store.list("data")] == sorted(live)
        assert [i.name for i in store.list("data", deleted=True)] == [gone]
        assert [i.name for i in store.list("config")] == ["manifest"]
        for key, value in live.items():
            assert store.load("data/" + key) == value
        assert store.load("data/" + gone, deleted=True) == b"deleted"
        assert store.info("data/" + some).size == 10
        assert store.quota()["usage"] == 77  # the PyPI quota file is read, not recomputed


PYPI_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from borgstore.store import Store
    url, action, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = Store(url, config=config)
    if action == "write":
        store.create()
        with store:
            store.store("config/manifest", b"pypi manifest")
            for i in range(3):
                store.store("data/%02x" % i + "ab" * 15, b"pypi %d" % i)
            store.move("data/00" + "ab" * 15, delete=True)
    else:
        with store:
            out = {
                "live": [i.name for i in store.list("data")],
                "deleted": [i.name for i in store.list("data", deleted=True)],
                "values": {i.name: store.load("data/" + i.name).decode() for i in store.list("data")},
                "manifest": store.load("config/manifest").decode(),
            }
        print(json.dumps(out))
    """
)


@pytest.fixture(scope="session")
def pypi_python(tmp_path_factory, skip_or_fail_ci):
    """A venv with the PyPI borgstore 0.7.0 in it."""
    venv = tmp_path_factory.mktemp("pypi-borgstore") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    result = subprocess.run([python, "-m", "pip", "install", "-q", "borgstore==0.7.0"], capture_output=True, text=True)
    if result.returncode != 0:
        skip_or_fail_ci(f"cannot install the PyPI borgstore 0.7.0 for the interop test: {result.stderr[-500:]}")
    return python


def run_pypi(python, tmp_path, *args):
    script = tmp_path / "pypi_side.py"
    script.write_text(PYPI_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run([python, str(script), *args], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [1]}}


@pytest.mark.packaging
def test_pypi_writes_we_read(tmp_path, pypi_python, file_backend):
    """A store written by the real PyPI borgstore 0.7.0 reads back here item for item."""
    url = f"file://{tmp_path}/store"
    run_pypi(pypi_python, tmp_path, url, "write", json.dumps(CONFIG))
    store = Store(url, config=CONFIG)
    with store:
        assert [i.name for i in store.list("data")] == ["01" + "ab" * 15, "02" + "ab" * 15]
        assert [i.name for i in store.list("data", deleted=True)] == ["00" + "ab" * 15]
        assert store.load("data/01" + "ab" * 15) == b"pypi 1"
        assert store.load("config/manifest") == b"pypi manifest"


@pytest.mark.packaging
def test_we_write_pypi_reads(tmp_path, pypi_python, file_backend):
    """A store written here reads back item for item with the real PyPI borgstore 0.7.0."""
    url = f"file://{tmp_path}/store"
    store = Store(url, config=CONFIG)
    store.create()
    with store:
        store.store("config/manifest", b"our manifest")
        for i in range(3):
            store.store("data/%02x" % i + "cd" * 15, b"ours %d" % i)
        store.move("data/02" + "cd" * 15, delete=True)
    seen = json.loads(run_pypi(pypi_python, tmp_path, url, "read", json.dumps(CONFIG)))
    assert seen["live"] == ["00" + "cd" * 15, "01" + "cd" * 15]
    assert seen["deleted"] == ["02" + "cd" * 15]
    assert seen["values"] == {"00" + "cd" * 15: "ours 0", "01" + "cd" * 15: "ours 1"}
    assert seen["manifest"] == "our manifest"
