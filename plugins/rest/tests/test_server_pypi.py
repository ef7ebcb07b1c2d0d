"""The PyPI borgstore 0.7 client (in a venv of its own) against our server: over HTTP, with
authentication and a quota, and over stdio (its ``rest:///path`` URL spawns
``borgstore-server-rest --stdio --backend FILE:path``, which is ours when ours comes first on PATH)."""

import json
import os
import subprocess
import sys

from borgstore_backend_rest.server import PERMISSION_SHORTCUTS

# run by the PyPI venv's Python: every operation of its REST backend, results printed as JSON
CLIENT_SCRIPT = r"""
import json, sys
from borgstore.backends.rest import get_rest_backend
from borgstore.backends.errors import ObjectNotFound, QuotaExceeded, BackendAlreadyExists

backend = get_rest_backend(sys.argv[1])
results = {}
backend.create()
try:
    backend.create()
    backend.open()
    backend.store("x", b"x")
    backend.close()
    backend.create()
except BackendAlreadyExists:
    results["create_again"] = "BackendAlreadyExists"
backend.open()
backend.mkdir("data")
backend.store("data/a", b"hello world")
backend.store("data/b", b"0123456789")
results["load"] = backend.load("data/a").decode()
results["load_part"] = backend.load("data/a", size=5, offset=6).decode()
results["load_tail"] = backend.load("data/a", offset=-5).decode()
info = backend.info("data/a")
results["info"] = [info.exists, info.size, info.directory]
results["info_dir"] = backend.info("data").directory
results["info_missing"] = backend.info("data/nothing").exists
results["list"] = [[i.name, i.size, i.directory] for i in backend.list("data")]
backend.move("data/b", "data/c")
results["after_move"] = [i.name for i in backend.list("data")]
results["hash"] = backend.hash("data/a", "sha256")
results["gather"] = backend.gather([("data/a", 0, 5), ("data/c", 0, 3)]).decode()
results["defrag"] = backend.defrag([("data/a", 0, 5)], target="data/d")
results["defrag_loaded"] = backend.load("data/d").decode()
backend.delete("data/a")
try:
    backend.load("data/a")
except ObjectNotFound:
    results["load_deleted"] = "ObjectNotFound"
results["quota"] = backend.quota()
try:
    backend.store("data/huge", b"z" * 5000)
except QuotaExceeded:
    results["huge"] = "QuotaExceeded"
backend.close()
backend.destroy()
print(json.dumps(results))
"""

EXPECTED = {
    "create_again": "BackendAlreadyExists",
    "load": "hello world",
    "load_part": "world",
    "load_tail": "world",
    "info": [True, 11, False],
    "info_dir": True,
    "info_missing": False,
    "list": [["a", 11, False], ["b", 10, False]],
    "after_move": ["a", "c"],
    "hash": "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
    "gather": "hello012",
    "defrag": "data/d",
    "defrag_loaded": "hello",
    "load_deleted": "ObjectNotFound",
    "huge": "QuotaExceeded",
}


def run_pypi_client(pypi_venv, url, env=None):
    """Run CLIENT_SCRIPT against *url* with the PyPI venv's Python; its results."""
    result = subprocess.run(
        [str(pypi_venv / "python"), "-I", "-c", CLIENT_SCRIPT, url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def check(results, quota_limit):
    """Assert the results of CLIENT_SCRIPT are what the protocol promises."""
    for key, value in EXPECTED.items():
        assert results[key] == value, key
    assert results["quota"]["limit"] == quota_limit
    assert results["quota"]["usage"] == 1 + 10 + 5  # x, data/c, data/d (data/a deleted)


def test_the_pypi_client_over_http(rest_server, pypi_venv):
    """Every operation of the PyPI client over HTTP with basic authentication and a quota."""
    server = rest_server(["--username", "borg", "--password", "pw", "--quota", "3000"], create=False)
    results = run_pypi_client(pypi_venv, f"http://borg:pw@127.0.0.1:{server.port}/")
    check(results, 3000)
    assert not server.store_path.exists()  # destroyed at the end
    assert " borg " in server.log(until=" borg ")


def test_the_pypi_client_over_stdio(tmp_path, pypi_venv):
    """The PyPI client's rest:/// URL spawns our server with --stdio and a FILE: path."""
    ours = os.path.dirname(sys.executable)
    env = {"PATH": f"{ours}{os.pathsep}{os.environ.get('PATH', '')}"}
    store = tmp_path / "stdio-store"
    script = CLIENT_SCRIPT.replace("backend.destroy()", "")
    result = subprocess.run(
        [str(pypi_venv / "python"), "-I", "-c", script, f"rest:///{store}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout)
    for key, value in EXPECTED.items():
        if key != "huge":  # no quota over stdio
            assert results[key] == value, key
    assert (store / "data" / "c").read_bytes() == b"0123456789"


def test_the_shortcuts_match_the_pypi_servers(pypi_venv):
    """Our permission shortcuts grant exactly what the PyPI server's grant."""
    script = "import json; from borgstore.server.rest import PERMISSION_SHORTCUTS as p; print(json.dumps(p))"
    result = subprocess.run(
        [str(pypi_venv / "python"), "-I", "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == PERMISSION_SHORTCUTS
