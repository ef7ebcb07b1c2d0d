"""Our REST client against our server (``borgstore-server-rest`` of this distribution): over
TCP and on the server's stdio (``rest:///path``), with the extensions OPTIONS announces
(store_new), and under the conformance kit's faults profile."""

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from borgstore_backend_rest import rest_backend_from_url
from borgstore_backend_rest.testserver import OUR_SERVER, ServerProcess

from borgstore.backends.errors import BackendError, ObjectAlreadyExists, PermissionDenied
from borgstore.testing import BackendTests, StoreTests, kit_settings, run_backend_machine_under_faults

from .conftest import skip_or_fail

_counter = itertools.count()


@pytest.fixture(scope="module")
def our_server_runs():
    result = subprocess.run([*OUR_SERVER, "--help"], capture_output=True, check=False, timeout=60)
    if result.returncode != 0:
        skip_or_fail(f"our server does not run: {result.stderr[-500:]!r}")


@pytest.fixture
def our_server(tmp_path, our_server_runs):
    """A factory: a fresh server of ours on a fresh (not yet created) store; its URL."""
    servers = []

    def make():
        store = tmp_path / f"store{next(_counter)}"
        server = ServerProcess(["--backend", f"file://{store}"], log_path=str(tmp_path / "server.log"))
        servers.append(server.start())
        return server.url

    yield make
    for server in servers:
        assert server.stop() == 0, server.log()[-2000:]


@pytest.fixture
def ours_on_path(monkeypatch, our_server_runs):
    """The venv running the tests first on PATH: ``rest:///path`` runs our borgstore-server-rest."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "borgstore-server-rest").exists():
        skip_or_fail(f"no borgstore-server-rest in {bin_dir} (pip install -e plugins/rest)")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


class TestAgainstOurServer(BackendTests):
    @pytest.fixture
    def backend(self, our_server):
        return rest_backend_from_url(our_server())


class TestStoreAgainstOurServer(StoreTests):
    @pytest.fixture
    def store_location(self, our_server):
        return our_server()


class TestStdioAgainstOurServer(BackendTests):
    quick_overrides: ClassVar[dict] = {"max_examples": 15}

    @pytest.fixture
    def backend(self, tmp_path, ours_on_path):
        return rest_backend_from_url(f"rest://{tmp_path}/store")


def test_store_new_through_options(our_server):
    """Our server announces store_new; the client declares it and uses it."""
    backend = rest_backend_from_url(our_server())
    backend.create()
    with backend:
        assert backend.capabilities.store_new
        backend.store_new("data/a", b"first")
        with pytest.raises(ObjectAlreadyExists):
            backend.store_new("data/a", b"second")
        assert backend.load("data/a") == b"first"
    assert not backend.capabilities.store_new  # closed: back to what the class declares


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_store_new_race(our_server, tmp_path, transport, request):
    """8 threads racing store_new on one new name, round after round: exactly one wins, its value
    stays, and no temp item is left on the server's disk."""
    if transport == "stdio":
        request.getfixturevalue("ours_on_path")
        backend, root = rest_backend_from_url(f"rest://{tmp_path}/racing"), tmp_path / "racing"
    else:
        url = our_server()
        backend, root = rest_backend_from_url(url), tmp_path / f"store{next(_counter) - 1}"
    backend.create()
    with backend:
        for round_number in range(5):
            name = f"data/race/{round_number:03d}"
            barrier = threading.Barrier(8)
            results = {}

            def race(value, name=name, barrier=barrier, results=results):
                barrier.wait()
                try:
                    backend.store_new(name, value)
                    results[value] = "won"
                except ObjectAlreadyExists:
                    results[value] = "lost"

            threads = [threading.Thread(target=race, args=(b"value %d" % i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            winners = [value for value, result in results.items() if result == "won"]
            assert len(winners) == 1 and len(results) == 8, results
            assert backend.load(name) == winners[0]
    assert sorted(os.listdir(root / "data" / "race")) == [f"{n:03d}" for n in range(5)]


def test_https_with_ca_file_and_credentials(tmp_path, certificate, our_server_runs, monkeypatch):
    """https with the server's CA given as ca_file, and basic authentication from the URL; an
    untrusted certificate is a permanent error that names the remedy; a wrong password is refused."""
    cert, key = certificate
    args = ["--backend", f"file://{tmp_path / 'store'}", "--tls-cert", str(cert), "--tls-key", str(key)]
    monkeypatch.setenv("BORGSTORE_REST_PASSWORD", "pass word")
    args += ["--username", "alice"]
    with ServerProcess(args, tls=True, log_path=str(tmp_path / "log")) as server:
        url = f"https://alice:pass%20word@localhost:{server.port}/"
        backend = rest_backend_from_url(url, ca_file=str(cert))
        backend.create()
        with backend:
            backend.store("data/x", b"over tls")
            assert backend.load("data/x") == b"over tls"
        with pytest.raises(BackendError, match="not trusted.*ca_file") as info:
            rest_backend_from_url(url).open()
        assert not info.value.temporary and "pass" not in str(info.value)
        wrong = rest_backend_from_url(f"https://alice:wrong@localhost:{server.port}/", ca_file=str(cert))
        with pytest.raises(PermissionDenied, match="refused the user name and password"):
            wrong.open()
    assert (tmp_path / "store" / "data" / "x").read_bytes() == b"over tls"


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_state_machine_under_faults(our_server, tmp_path, transport, request):
    """The backend state machine below the retry middleware, with injected faults."""
    if transport == "stdio":
        request.getfixturevalue("ours_on_path")
        url = f"rest://{tmp_path}/faults"
    else:
        url = our_server()
    settings = kit_settings("faults", max_examples=8, stateful_step_count=20)
    run_backend_machine_under_faults(rest_backend_from_url(url), settings)
