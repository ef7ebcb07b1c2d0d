"""rest://user@host:port//path through a real OpenSSH sshd (the sftp plugin's test server on
127.0.0.1): the conformance kit (backend and Store) with our client and our server, the PyPI
0.7 client against our server the same way, and a server process killed in the middle."""

import itertools
import os
import signal
import subprocess
import sys

import pytest
from borgstore_backend_rest import rest_backend_from_url
from borgstore_backend_rest.pypi_bridge import PyPIClientBackend
from borgstore_backend_rest.testserver import write_ssh_wrapper

from borgstore.backends.errors import ObjectNotFound
from borgstore.testing import BackendTests, StoreTests

from .conftest import skip_or_fail

_counter = itertools.count()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    try:
        from borgstore_backend_sftp.testserver import TestSSHServer, find_sshd
    except ImportError:
        skip_or_fail("the sftp plugin (its test sshd) is not installed: pip install -e plugins/sftp")
    if find_sshd() is None:
        skip_or_fail("OpenSSH sshd is not installed (apt-get install openssh-server)")
    server = TestSSHServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def our_rsh(sshd, tmp_path_factory):
    """A BORGSTORE_RSH reaching the test sshd, where our server is found on the PATH."""
    bin_dir = os.path.dirname(sys.executable)
    if not os.path.exists(os.path.join(bin_dir, "borgstore-server-rest")):
        skip_or_fail(f"no borgstore-server-rest in {bin_dir} (pip install -e plugins/rest)")
    return write_ssh_wrapper(str(tmp_path_factory.mktemp("rsh") / "rsh"), str(sshd.ssh_config), bin_dir)


@pytest.fixture
def ssh_url(sshd, our_rsh, tmp_path, monkeypatch):
    """A factory of rest:// URLs of fresh stores (absolute paths) through the test sshd."""
    monkeypatch.setenv("BORGSTORE_RSH", our_rsh)

    def make():
        return f"rest://{sshd.user}@127.0.0.1:{sshd.port}/{tmp_path}/store{next(_counter)}"

    return make


class TestKitOverSsh(BackendTests):
    quick_overrides = {"max_examples": 20}

    @pytest.fixture
    def backend(self, ssh_url):
        return rest_backend_from_url(ssh_url())


class TestStoreKitOverSsh(StoreTests):
    quick_overrides = {"max_examples": 15}

    @pytest.fixture
    def store_location(self, ssh_url):
        return ssh_url()


def test_pypi_client_over_ssh_against_our_server(sshd, our_rsh, pypi_venv, tmp_path):
    """The PyPI client's rest:// (its own ssh command line, BORGSTORE_RSH used verbatim) runs our
    server through sshd: what it stores is on our server's disk, and it reads it back."""
    url = f"rest://{sshd.user}@127.0.0.1:{sshd.port}/{tmp_path}/pypi-store"
    client = PyPIClientBackend(str(pypi_venv / "python"), url, env={"BORGSTORE_RSH": our_rsh})
    try:
        client.create()
        client.open()
        client.mkdir("data")
        client.store("data/0123", b"through ssh")
        assert client.load("data/0123") == b"through ssh"
        assert [info.name for info in client.list("data")] == ["0123"]
        client.move("data/0123", "data/0123.del")
        with pytest.raises(ObjectNotFound):
            client.load("data/0123")
        client.close()
    finally:
        client.close_child()
    assert (tmp_path / "pypi-store" / "data" / "0123.del").read_bytes() == b"through ssh"


def _server_pids(store_path) -> list:
    pattern = f"borgstore-server-rest --stdio --backend FILE:{store_path}$"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def test_remote_server_killed_mid_run_is_a_new_connection(ssh_url, tmp_path):
    """The server process at the far end of ssh is SIGKILLed between two operations: the next
    operation starts a new one (the reconnect) and sees everything stored before."""
    url = ssh_url()
    store_path = url.split(str(tmp_path), 1)[1]
    backend = rest_backend_from_url(url)
    backend.create()
    with backend:
        backend.store("data/before", b"stored before the kill")
        pids = _server_pids(f"{tmp_path}{store_path}")
        assert pids, "no server process found through ssh"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert backend.load("data/before") == b"stored before the kill"
        backend.store("data/after", b"stored after")
        assert sorted(info.name for info in backend.list("data")) == ["after", "before"]
        assert set(_server_pids(f"{tmp_path}{store_path}")).isdisjoint(pids)
    backend.destroy()
