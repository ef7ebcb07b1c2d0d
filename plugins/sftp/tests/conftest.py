"""Fixtures: a real OpenSSH sshd on 127.0.0.1 and sftp backends talking to it.

Transports: a test module that sets ``TRANSPORTS = ("paramiko", "openssh")`` runs each of its
tests with each transport (the ``transport`` fixture, which every server's backend_options()
then gives); ``@pytest.mark.transports("paramiko")`` narrows one test.  Other modules run with
paramiko (the backend's own default, ``auto``, takes openssh where ssh is installed; the modules
that run both cover it).

The server runs with its own host key, authorized key, known_hosts and ssh config (see
borgstore_backend_sftp.testserver); nothing of the user's ~/.ssh is used.  Without sshd the
tests skip, except in CI (env CI set), where a missing server is a failure.
"""

import itertools
import os
import shutil

import pytest
from borgstore_backend_sftp import sftp_backend_from_url
from borgstore_backend_sftp.testserver import TestSSHServer, find_sshd

from borgstore.backends.errors import BackendMustBeOpen

_counter = itertools.count()

ALL_TRANSPORTS = ("paramiko", "openssh")


def pytest_configure(config):
    config.addinivalue_line("markers", "transports(*names): the sftp transports a test runs with")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("transports")
    names = marker.args if marker else getattr(metafunc.module, "TRANSPORTS", None)
    if names:
        metafunc.parametrize("transport", names, indirect=True)


def skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this must not be skipped)")
    pytest.skip(reason)


def release(backend):
    """End *backend*'s connection, whether a test left it open or closed it already."""
    try:
        backend.close()
    except BackendMustBeOpen:
        pass  # close() ends a connection left by create() all the same


def _server(path) -> TestSSHServer:
    if find_sshd() is None:
        skip_or_fail("OpenSSH sshd is not installed (apt-get install openssh-server)")
    server = TestSSHServer(path)
    server.start()
    return server


@pytest.fixture(name="skip_or_fail")
def skip_or_fail_fixture():
    """skip_or_fail(reason): a skip, or a failure when CI is set."""
    return skip_or_fail


@pytest.fixture
def require_binary():
    """require_binary(name): skip (fail in CI) unless the program *name* is installed."""

    def require(name: str):
        if shutil.which(name) is None:
            skip_or_fail(f"{name} is not installed (apt-get install openssh-client)")

    return require


@pytest.fixture(autouse=True)
def transport(request, monkeypatch):
    """The sftp transport of this run of the test (see the module docstring)."""
    name = getattr(request, "param", "paramiko")
    if name == "openssh" and shutil.which("ssh") is None:
        skip_or_fail("the OpenSSH client ssh is not installed (apt-get install openssh-client)")
    monkeypatch.setattr(TestSSHServer, "transport", name)
    return name


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One sshd shared by the tests that do not disturb it."""
    server = _server(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def own_sshd(tmp_path):
    """A private sshd for a test that kills, restarts or reconfigures it."""
    server = _server(tmp_path / "sshd")
    yield server
    server.stop()


@pytest.fixture
def custom_sshd(tmp_path, request):
    """A private sshd built with the TestSSHServer options of the test's parameter (a dict, e.g.
    ``{"sftp_options": "-P fsync"}`` to refuse a request, ``{"sshd_options": "MaxSessions 2"}``)."""
    if find_sshd() is None:
        skip_or_fail("OpenSSH sshd is not installed (apt-get install openssh-server)")
    server = TestSSHServer(tmp_path / "sshd", **request.param)
    server.start()
    yield server
    server.stop()


class Location:
    """A store location on the test server: its URL and where it is on the local disk."""

    def __init__(self, server: TestSSHServer, form: str):
        self.server = server
        leaf = f"store-{os.getpid()}-{next(_counter)}"
        if form == "absolute":
            self.local = server.workdir / "abs" / leaf
            self.url = server.url("/" + str(self.local), alias=False)
        else:
            self.local = server.home / "rel" / leaf
            self.url = server.url(f"rel/{leaf}")

    def backend(self, **options):
        return sftp_backend_from_url(self.url, **self.server.backend_options(**options))


@pytest.fixture(params=["absolute", "relative"])
def location(request, sshd):
    """A fresh store location in both URL forms: //absolute/path (user, address, port spelled out)
    and relative/path (host alias resolved through the ssh config)."""
    return Location(sshd, request.param)


@pytest.fixture
def backend(location):
    """A created and opened backend on a fresh location."""
    backend = location.backend()
    backend.create()
    backend.open()
    yield backend
    release(backend)


@pytest.fixture
def backend_on():
    """backend_on(server, **options): a created and opened backend on a fresh location of
    *server* (any of the server fixtures), released after the test."""
    made = []

    def open_on(server: TestSSHServer, **options):
        backend = Location(server, "absolute").backend(**options)
        made.append(backend)
        backend.create()
        backend.open()
        return backend

    yield open_on
    for backend in made:
        release(backend)


@pytest.fixture
def ssh_config_with(tmp_path):
    """ssh_config_with(server, line): a copy of *server*'s ssh config with *line* set for every
    host (put first: a config's first value wins)."""

    def write(server: TestSSHServer, line: str):
        config = tmp_path / "ssh_config"
        config.write_text(f"Host *\n    {line}\n" + server.ssh_config.read_text())
        return config

    return write


@pytest.fixture
def absolute_location(sshd):
    """A fresh store location named by an absolute-path URL."""
    return Location(sshd, "absolute")


@pytest.fixture
def relative_location(sshd):
    """A fresh store location named by a path relative to the login directory (host alias URL)."""
    return Location(sshd, "relative")
