"""The PyPI borgstore 0.7's REST client against our server: the conformance kit (backend and
Store) holds it to the contract, through PyPIClientBackend (the client in its own venv).

Wire compatibility the other way round (our client, the PyPI server) is in test_client_*.py."""

import itertools
import os

import pytest
from borgstore_backend_rest.pypi_bridge import PyPIClientBackend
from borgstore_backend_rest.testserver import OUR_SERVER, ServerProcess

from borgstore.testing import BackendTests, StoreTests

_counter = itertools.count()
# the PyPI pair itself, when set to its server command (to tell their deviations from ours apart)
SERVER_COMMAND = os.environ.get("BORGSTORE_TEST_REST_SERVER_COMMAND", "").split()


@pytest.fixture
def pypi_client(tmp_path, pypi_venv):
    """A factory: a fresh server of ours on a fresh store, and the PyPI client for it."""
    made = []

    def make():
        store = tmp_path / f"store{next(_counter)}"
        server = ServerProcess(
            ["--backend", f"file://{store}"],
            command=SERVER_COMMAND or OUR_SERVER,
            log_path=str(tmp_path / "server.log"),
        ).start()
        client = PyPIClientBackend(str(pypi_venv / "python"), server.url)
        made.append((server, client))
        return client

    yield make
    for server, client in made:
        client.close_child()
        assert server.stop() == 0, server.log()[-2000:]


#: where the PyPI 0.7 client itself breaks the contract, whatever the server (each fails the same
#: way against the PyPI server); test_server_pypi.py drives that client through every operation
PYPI_CLIENT_LIMITS = {
    "state-machine": "the PyPI client refuses backend names over 100 characters (a 98-character key "
    "nested in a directory), which the contract allows",
    "open-missing": "the PyPI client's open() sends nothing, so it cannot notice a missing store",
    "lifecycle": "the PyPI client's open() sends nothing, so it cannot notice a destroyed store",
    "names-stay-inside-root": "the PyPI client (requests) sends 'a/./b' as 'a/b' before any server sees it",
    "load-invalid-range": "the PyPI client raises TypeError for size='3' instead of ValueError",
}
PYPI_CLIENT_STORE_LIMITS = {
    "store-state-machine": "the PyPI client refuses backend names over 100 characters (a key nested in a "
    "namespace's directories), which the Store allows",
    "store-open-missing": "the PyPI client's open() sends nothing, so it cannot notice a missing store",
    "store-destroy": "the PyPI client's open() sends nothing, so it cannot notice a destroyed store",
}


class TestPyPIClientAgainstOurServer(BackendTests):
    waived_rules = PYPI_CLIENT_LIMITS

    @pytest.fixture
    def backend(self, pypi_client):
        return pypi_client()


class TestPyPIClientStoreAgainstOurServer(StoreTests):
    waived_rules = PYPI_CLIENT_STORE_LIMITS

    @pytest.fixture
    def store_location(self, pypi_client):
        client = pypi_client()  # the first instance; every later one talks to the same server
        python, url = client._python, client._url
        instances = iter([client])
        return lambda: next(instances, None) or PyPIClientBackend(python, url)
