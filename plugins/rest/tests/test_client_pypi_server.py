"""Our REST client against the PyPI borgstore 0.7's server (run from a venv of its own): over
TCP (``http://``) and on the server's stdio (``rest:///path``, the server's venv first on PATH).
The conformance kit holds the client to the contract wherever that server keeps it too."""

import hashlib
import itertools
import os
from typing import ClassVar

import pytest
from borgstore_backend_rest import rest_backend_from_url
from borgstore_backend_rest.testserver import ServerProcess

from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.testing import BackendTests, StoreTests

_counter = itertools.count()

#: what the PyPI 0.7 server cannot do, whoever its client is
PYPI_SERVER_LIMITS = {
    "state-machine": "the PyPI server refuses every name with '..' in it (the soft-deleted '0..del' too) "
    "and fails a negative offset past the start (HTTP 500); tests below cover the rest",
    "names-stay-inside-root": "the PyPI server refuses '0..del' (a valid name with '..' inside a component)",
    "operations": "the PyPI server fails a negative offset past the start (HTTP 500)",
    "empty-value": "the PyPI server fails a negative offset past the start (HTTP 500)",
}


@pytest.fixture
def pypi_server(tmp_path, pypi_venv):
    """A factory: a fresh PyPI server on a fresh (not yet created) store; its URL."""
    servers = []

    def make():
        store = tmp_path / f"store{next(_counter)}"
        command = [str(pypi_venv / "borgstore-server-rest")]
        server = ServerProcess(["--backend", f"file://{store}"], command=command, log_path=str(tmp_path / "server.log"))
        servers.append(server.start())
        return server.url

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def pypi_on_path(pypi_venv, monkeypatch):
    """The PyPI server's venv first on PATH: ``rest:///path`` runs its borgstore-server-rest."""
    monkeypatch.setenv("PATH", f"{pypi_venv}{os.pathsep}{os.environ['PATH']}")


class TestAgainstPyPIServer(BackendTests):
    waived_rules = PYPI_SERVER_LIMITS

    @pytest.fixture
    def backend(self, pypi_server):
        return rest_backend_from_url(pypi_server())


class TestStdioAgainstPyPIServer(BackendTests):
    waived_rules = PYPI_SERVER_LIMITS
    quick_overrides: ClassVar[dict] = {"max_examples": 10}

    @pytest.fixture
    def backend(self, tmp_path, pypi_on_path):
        return rest_backend_from_url(f"rest://{tmp_path}/store")


class TestStoreAgainstPyPIServer(StoreTests):
    waived_rules: ClassVar[dict] = {
        "store-state-machine": "the PyPI server refuses names longer than 100 characters (a 98-character key "
        "soft-deleted is 102) and names with '..' in them"
    }

    @pytest.fixture
    def store_location(self, pypi_server):
        return pypi_server()


@pytest.fixture(params=["http", "stdio"])
def pypi_url(request, tmp_path):
    """The URL of a store (not created yet) served by the PyPI server, over TCP or stdio."""
    if request.param == "http":
        return request.getfixturevalue("pypi_server")()
    request.getfixturevalue("pypi_on_path")
    return f"rest://{tmp_path}/stdio-store"


def test_operations_against_pypi_server(pypi_url):
    """Each operation as the PyPI server answers it (what the waived state machine would check)."""
    backend = rest_backend_from_url(pypi_url)
    with pytest.raises(BackendDoesNotExist):
        backend.open()
    with pytest.raises(BackendDoesNotExist):
        backend.destroy()
    backend.create()
    backend.create()  # an existing empty store is fine
    with backend:
        assert not backend.capabilities.store_new  # the PyPI server announces nothing
        backend.store("data/ab/item", b"0123456789")
        backend.store("data/ab/item", memoryview(b"abcdefghij"))
        assert backend.load("data/ab/item") == b"abcdefghij"
        assert backend.load("data/ab/item", offset=3, size=2) == b"de"
        assert backend.load("data/ab/item", offset=-4) == b"ghij"
        assert backend.load("data/ab/item", offset=-4, size=1) == b"g"
        assert backend.load("data/ab/item", offset=8, size=10) == b"ij"
        assert backend.load("data/ab/item", offset=20) == b""
        assert backend.load("data/ab/item", size=0) == b""
        info = backend.info("data/ab/item")
        assert (info.exists, info.size, info.directory) == (True, 10, False) and info.mtime > 0
        assert backend.info("data/ab").directory and not backend.info("data/none").exists
        assert [(i.name, i.directory) for i in backend.list("data")] == [("ab", True)]
        assert backend.hash("data/ab/item", "sha256") == hashlib.sha256(b"abcdefghij").hexdigest()
        assert backend.gather([("data/ab/item", 1, 2), ("data/ab/item", 8, 2)]) == b"bcij"
        backend.move("data/ab/item", "data/cd/moved")
        for call in (lambda: backend.load("data/ab/item"), lambda: backend.delete("data/ab/item")):
            with pytest.raises(ObjectNotFound):
                call()
        with pytest.raises(ObjectNotFound):
            backend.move("data/ab/item", "data/x")
        with pytest.raises(ValueError, match="Unsupported hash algorithm"):
            backend.hash("data/cd/moved", "nope")
        backend.delete("data/cd/moved")
        with pytest.raises(BackendError):
            backend.rmdir("data/none")
        assert backend.quota() == {"limit": -1, "usage": -1}
        backend.store("config/x", b"")
    with pytest.raises(BackendAlreadyExists):
        backend.create()
    backend.destroy()


def test_pypi_stdio_server_closing_after_errors(pypi_on_path, tmp_path):
    """The PyPI server marks every error answer ``Connection: close``: on stdio each one ends its
    process, and the next request runs a new one; none is left after close()."""
    backend = rest_backend_from_url(f"rest://{tmp_path}/store")
    backend.create()
    backend.open()
    processes = backend._client.processes
    pids = set()
    for _ in range(3):
        assert not backend.info("data/missing").exists
        backend.store("data/x", b"v")
        pids |= {process.popen.pid for process in processes._processes}
    assert len(pids) >= 3  # a new server after each error answer
    backend.close()
    assert processes.running() == 0
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    backend.destroy()


def test_pypi_server_with_authentication(tmp_path, pypi_venv, monkeypatch):
    """Basic authentication with the PyPI server: credentials from the URL or the environment;
    none, or wrong ones, are refused with a PermissionDenied that says so."""
    for name in ("BORGSTORE_REST_USERNAME", "BORGSTORE_REST_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    args = ["--backend", f"file://{tmp_path / 'store'}", "--username", "alice", "--password", "s3cret:@/"]
    command = [str(pypi_venv / "borgstore-server-rest")]
    with ServerProcess(args, command=command, log_path=str(tmp_path / "log")) as server:
        port = server.port
        backend = rest_backend_from_url(f"http://alice:s3cret%3A%40%2F@127.0.0.1:{port}/")
        backend.create()
        with backend:
            backend.store("data/x", b"authenticated")
        with pytest.raises(PermissionDenied, match="wants a user name and password"):
            rest_backend_from_url(f"http://127.0.0.1:{port}/").open()
        with pytest.raises(PermissionDenied, match="refused the user name and password") as info:
            rest_backend_from_url(f"http://alice:wrong@127.0.0.1:{port}/").open()
        assert "wrong" not in str(info.value)
        monkeypatch.setenv("BORGSTORE_REST_USERNAME", "alice")
        monkeypatch.setenv("BORGSTORE_REST_PASSWORD", "s3cret:@/")
        with rest_backend_from_url(f"http://127.0.0.1:{port}/") as backend:
            assert backend.load("data/x") == b"authenticated"
