"""A frozen server: the sshd processes serving a connection stop (SIGSTOP) without closing
anything, as a hung machine or a dead link look to a client.

Every wait on the server ends after ``timeout`` with BackendTimeout (a reply, a send of pipelined
writes, a session being opened, a connect); through a Store's default chain (whose ``retry``
middleware retries temporary errors) the call is retried on a new connection, or reported within
the retry budget when nothing answers.  After SIGCONT the backend works again on the next call.
Each test runs its own sshd (own_sshd) because it freezes it.
"""

import inspect
import os
import signal
import threading
import time

import pytest
from borgstore_backend_sftp import SftpBackend, sftp_backend_from_url
from borgstore_backend_sftp._backend import DEFAULT_TIMEOUT

from borgstore import Store
from borgstore.backends.errors import BackendTimeout
from borgstore.middleware.retry import RetryMiddleware

#: the kit of failures runs with each transport (conftest.py)
TRANSPORTS = ("paramiko", "openssh")

TIMEOUT = 2.0
#: on a busy 2-core machine a timeout may fire late; generous, as an upper bound only
SLACK = 8.0
BIG = 32 * 1024 * 1024


class Frozen:
    """SIGSTOP the processes *pids* for the time of the ``with`` block, SIGCONT after."""

    def __init__(self, pids):
        self.pids = list(pids)
        assert self.pids, "nothing to freeze"

    def __enter__(self):
        frozen = 0
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGSTOP)
                frozen += 1
            except ProcessLookupError:
                pass  # it ended between the listing and now (e.g. sshd's pre-authentication child)
        assert frozen, f"none of {self.pids} was left to freeze"
        return self

    def __exit__(self, *exc):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def connection_processes(server):
    """The sshd processes serving the connections open now (the per-connection children of the
    listener, found through /proc)."""
    return server._session_pids()


def everything(server):
    """The listener too: new connections are accepted by the kernel but never answered."""
    return [server.process.pid, *connection_processes(server)]


def make_backend(server, path, **options):
    backend = sftp_backend_from_url(server.url("//" + str(path), alias=False), **server.backend_options(**options))
    backend.create()
    backend.open()
    return backend


def test_the_default_timeout_is_seconds_and_fits_the_retry_budget():
    """The default timeout is seconds, not minutes, and leaves the retry middleware's default
    budget room for several tries (a timeout longer than the budget would never be retried)."""
    assert inspect.signature(SftpBackend).parameters["timeout"].default == DEFAULT_TIMEOUT
    assert inspect.signature(SftpBackend).parameters["connect_timeout"].default is None  # = timeout
    budget = inspect.signature(RetryMiddleware).parameters["budget"].default
    assert DEFAULT_TIMEOUT <= 30 and 2 * DEFAULT_TIMEOUT < budget


# what each operation waits for when the server freezes
OPERATIONS = {
    "load (a reply)": lambda backend: backend.load("a"),
    "list (directory reads)": lambda backend: list(backend.list("")),
    "delete (a mutation)": lambda backend: backend.delete("a"),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_frozen_server_raises_backend_timeout_within_the_timeout(own_sshd, tmp_path, operation):
    """The process serving the connection freezes: the operation raises BackendTimeout within
    the timeout (plus slack), temporary, and maybe_applied only where its change had left; once
    the server runs again the next call works on a new connection."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root, timeout=TIMEOUT)
    backend.store("a", b"value")
    with Frozen(connection_processes(own_sshd)):
        started = time.monotonic()
        with pytest.raises(BackendTimeout) as excinfo:
            OPERATIONS[operation](backend)
        assert time.monotonic() - started < TIMEOUT + SLACK
    assert excinfo.value.temporary
    assert excinfo.value.maybe_applied == operation.startswith("delete")
    backend.store("b", b"after")
    assert backend.load("b") == b"after"
    assert [info.name for info in backend.list("")] == (["b"] if operation.startswith("delete") else ["a", "b"])
    backend.close()


def test_a_server_freezing_during_pipelined_writes_times_out(own_sshd, tmp_path):
    """The server freezes while a large value's writes are in flight (no more window, full
    buffers): store raises BackendTimeout within the timeout, nothing partial is visible, and the
    next call removes the broken write's temp file."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root, timeout=TIMEOUT)
    frozen = []

    def freeze_mid_write():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not frozen:
            for temp in root.glob("*.tmp"):
                if temp.stat().st_size >= 1 << 20:
                    frozen.append(Frozen(connection_processes(own_sshd)).__enter__())
                    return
            time.sleep(0.001)

    freezer = threading.Thread(target=freeze_mid_write)
    freezer.start()
    try:
        started = time.monotonic()
        with pytest.raises(BackendTimeout) as excinfo:
            backend.store("big", os.urandom(BIG))
        elapsed = time.monotonic() - started
        freezer.join()
        assert frozen, "the write ended before the server froze"
    finally:
        freezer.join()
        for frozen_processes in frozen:
            frozen_processes.__exit__()
    assert elapsed < TIMEOUT + SLACK + 5  # the write's own time before the freeze included
    assert not excinfo.value.maybe_applied  # the rename was never sent
    assert not (root / "big").exists() and list(root.glob("*.tmp"))
    backend.store("b", b"after")
    assert not list(root.glob("*.tmp"))
    assert backend.load("b") == b"after"
    backend.close()


@pytest.mark.transports("paramiko")
def test_the_watchdog_ends_a_connection_whose_wait_passes_the_timeout(own_sshd, tmp_path):
    """paramiko cannot time out every wait (a send stuck on a full socket, a subsystem request):
    the connection's watchdog ends the connection when a wait it watches lasts longer than the
    timeout, and what the session does next raises Timeout."""
    from borgstore_backend_sftp import _protocol as p

    backend = make_backend(own_sshd, tmp_path / "store", timeout=TIMEOUT)
    connection = backend._pool.connection
    session = connection.acquire()
    with Frozen(connection_processes(own_sshd)):
        started = time.monotonic()
        connection.watchdog.begin("a wait paramiko would never end")
        while not connection.dead and time.monotonic() - started < TIMEOUT + SLACK:
            time.sleep(0.01)
        assert connection.dead and not connection.transport.is_active()
        with pytest.raises(p.Timeout):
            session.request(p.STAT, p.string("/"))
    connection.release(session)
    backend.close()


def test_a_session_open_on_a_frozen_server_times_out(own_sshd, tmp_path):
    """Connected, but the server freezes before the first sftp session is open: open() raises
    BackendTimeout within the timeout, and works once the server runs again."""
    root = tmp_path / "store"
    make_backend(own_sshd, root).close()
    backend = sftp_backend_from_url(
        own_sshd.url("//" + str(root), alias=False), **own_sshd.backend_options(timeout=TIMEOUT)
    )
    backend._pool.connect()  # the SSH connection only, no session yet
    with Frozen(connection_processes(own_sshd)):
        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            backend.open()
        assert time.monotonic() - started < TIMEOUT + SLACK
    backend.open()
    backend.close()


def test_a_connect_to_a_frozen_server_times_out(own_sshd, tmp_path):
    """The listener itself is frozen (the kernel accepts the TCP connection, nobody answers):
    open() raises BackendTimeout after the timeout (connect_timeout defaults to it)."""
    root = tmp_path / "store"
    make_backend(own_sshd, root).close()
    backend = sftp_backend_from_url(
        own_sshd.url("//" + str(root), alias=False), **own_sshd.backend_options(timeout=TIMEOUT)
    )
    with Frozen([own_sshd.process.pid]):
        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            backend.open()
        assert time.monotonic() - started < TIMEOUT + SLACK
    backend.open()
    backend.close()


def make_store(server, root) -> Store:
    """A Store with the default chain on *root*, with the short timeout."""
    store = Store(
        server.url("//" + str(root), alias=False),
        config={"data/": {"levels": [0]}},
        backend_options=server.backend_options(timeout=TIMEOUT),
    )
    assert "retry" in store.middleware  # sftp declares transient errors
    store.create()
    store.open()
    return store


def test_through_the_default_chain_a_frozen_connection_is_replaced(own_sshd, tmp_path):
    """Only the connection's server process freezes (the server still accepts new ones): the
    default chain's retry middleware retries the timed-out call on a new connection, and it
    succeeds after one timeout."""
    store = make_store(own_sshd, tmp_path / "store")
    store.store("data/00", b"value")
    with Frozen(connection_processes(own_sshd)):
        started = time.monotonic()
        assert store.load("data/00") == b"value"
        assert time.monotonic() - started < TIMEOUT + SLACK
    assert store.stats["retry_attempts"] >= 1
    store.close()


def test_through_the_default_chain_a_frozen_server_is_reported_within_the_budget(own_sshd, tmp_path):
    """Everything freezes, the listener too: the default chain's retry middleware tries until its
    attempts or its time budget run out and reports BackendTimeout within the budget (plus one
    timeout, plus slack); after SIGCONT the store works again."""
    store = make_store(own_sshd, tmp_path / "store")
    store.store("data/00", b"value")
    budget = inspect.signature(RetryMiddleware).parameters["budget"].default
    with Frozen(everything(own_sshd)):
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match="gave up after"):
            store.load("data/00")
        assert time.monotonic() - started < budget + TIMEOUT + SLACK
    assert store.stats["retry_attempts"] >= 1 and store.stats["retry_giveups"] == 1
    assert store.load("data/00") == b"value"
    store.close()
