"""rclone's sftp remote against a real OpenSSH sshd on 127.0.0.1 (the sftp plugin's test server).

A remote that is not local: rclone hashes server-side (md5sum/sha1sum over ssh), its moves go
through SFTP rename, and it is configured through an rclone config file like a user's remote.
"""

import hashlib
import os

import pytest

from borgstore.testing import BackendTests


@pytest.fixture(scope="module")
def sftp_remote(tmp_path_factory, rclone_binary, skip_or_fail_ci):
    """The name of an rclone remote (in a private rclone.conf) that reaches a running test sshd."""
    try:
        from borgstore_backend_sftp.testserver import TestSSHServer, find_sshd
    except ImportError:
        skip_or_fail_ci("the sftp plugin's test server (borgstore-backend-sftp) is not installed")
    if find_sshd() is None:
        skip_or_fail_ci("OpenSSH sshd is not installed (apt-get install openssh-server)")
    workdir = tmp_path_factory.mktemp("rclone-sftp")
    server = TestSSHServer(workdir / "sshd")
    server.start()
    config = workdir / "rclone.conf"
    config.write_text(
        "[sftptest]\n"
        "type = sftp\n"
        "host = 127.0.0.1\n"
        f"port = {server.port}\n"
        f"user = {server.user}\n"
        f"key_file = {server.client_key}\n"
        f"known_hosts_file = {server.known_hosts}\n"
    )
    previous = os.environ.get("RCLONE_CONFIG")
    os.environ["RCLONE_CONFIG"] = str(config)
    yield "sftptest"
    if previous is None:
        del os.environ["RCLONE_CONFIG"]
    else:
        os.environ["RCLONE_CONFIG"] = previous
    server.stop()


@pytest.fixture
def sftp_url(sftp_remote, tmp_path):
    return f"rclone:{sftp_remote}:{tmp_path / 'store'}"


def test_items_round_trip_through_sftp(make_backend, sftp_url, tmp_path):
    """Stores land in the sshd's file system, loads and tail loads read them back, overwrites replace."""
    b = make_backend(sftp_url)
    b.create()
    b.open()
    value = os.urandom(300_000)
    b.store("data/01/item", value)
    assert (tmp_path / "store/data/01/item").read_bytes() == value
    assert b.load("data/01/item", offset=-10) == value[-10:]
    b.store("data/01/item", b"replaced")
    b.store("data/01/other", b"moved")
    b.move("data/01/other", "data/01/item")
    assert b.load("data/01/item") == b"moved"
    assert [i.name for i in b.list("data/01")] == ["item"]
    assert not [f for f in os.listdir(tmp_path / "store/data/01") if f.endswith(".tmp")]


def test_hashing_happens_on_the_sftp_server(make_backend, sftp_url, request):
    """On a remote remote, hash() uses rclone's server-side hashing (declared), downloading nothing."""
    b = make_backend(sftp_url)
    b.create()
    b.open()
    assert {"md5", "sha1"} <= b.capabilities.hash_algorithms
    value = os.urandom(200_000)
    b.store("data/item", value)
    methods = request.getfixturevalue("rc_methods")  # only what comes after the store above
    assert b.hash("data/item", "md5") == hashlib.md5(value).hexdigest()
    assert b.hash("data/item", "sha1") == hashlib.sha1(value).hexdigest()
    assert "GET" not in methods


def test_overwrites_are_declared_not_atomic(make_backend, sftp_url):
    """rclone 1.60 moves onto an existing sftp item by deleting it first (SFTP rename does not
    replace), so the backend must not promise atomic overwrites there."""
    b = make_backend(sftp_url)
    assert b.capabilities.atomic_store  # the default, before rclone was asked
    b.create()
    b.open()
    assert not b._atomic_move
    assert not b.capabilities.atomic_store


class TestRcloneSftpConformance(BackendTests):
    @pytest.fixture
    def backend(self, make_backend, sftp_url):
        # what the remote can do is learnt at open(); the kit reads the capabilities after it
        return make_backend(sftp_url)

    def test_state_machine(self, backend):
        """The kit's random sequences, with a few examples: every sftp round trip is
        slow, and the local-directory run covers the backend's own logic at full budget."""
        from borgstore.testing import kit_settings, run_backend_machine
        from borgstore.testing._pytest_classes import run_check

        run_check(run_backend_machine, backend, kit_settings(self.conformance_profile, max_examples=3))
