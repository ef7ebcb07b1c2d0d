"""rest: URLs: the server runs as a process on a socketpair, one per connection.  No process
outlives close() or the backend's garbage collection, a dead process is a lost connection
(and the next request runs a new one), and what a dying server wrote to stderr is quoted."""

import gc
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from borgstore_backend_rest import rest_backend_from_url
from borgstore_backend_rest._backend import RestBackend
from borgstore_backend_rest._url import Location

from borgstore.backends import errors

from .conftest import skip_or_fail

# a stand-in for the server on stdio: what it does depends on the request's path
FAKE_SERVER = textwrap.dedent(
    """
    import os, sys, time
    if os.environ.get("FAKE_STARTUP") == "notfound":
        sys.stderr.write("bash: line 1: borgstore-server-rest: command not found\\n")
        sys.exit(127)
    if os.environ.get("FAKE_STARTUP") == "denied":
        sys.stderr.write("me@host: Permission denied (publickey).\\n")
        sys.exit(255)
    rfile, wfile = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = rfile.readline()
        if not line:
            sys.exit(0)
        method, target, _ = line.decode().split(" ", 2)
        length = 0
        while (raw := rfile.readline()) not in (b"\\r\\n", b""):
            name, _, value = raw.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        rfile.read(length)
        if target == "/die":
            sys.stderr.write("boom: the disk is on fire\\n")
            sys.stderr.flush()
            sys.exit(3)
        if target == "/hang":
            time.sleep(60)
        body = str(os.getpid()).encode() if target == "/pid" else b""
        wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        wfile.flush()
    """
)


@pytest.fixture
def fake(tmp_path):
    """A factory: an unopened backend whose server is the fake above."""
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)

    def make(timeout=10.0):
        location = Location("rest", command=(sys.executable, str(script)))
        return RestBackend(location, shown_url="rest:///fake", timeout=timeout)

    return make


def _gone(pid: int) -> bool:
    """The process is reaped (a zombie still has its /proc entry)."""
    return not os.path.exists(f"/proc/{pid}")


def _pids(backend) -> list:
    return [process.popen.pid for process in backend._client.processes._processes]


def _wait_gone(pids, seconds=5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


def test_processes_end_with_close(fake):
    backend = fake()
    backend.open()
    pids = set()

    def work():
        for _ in range(5):
            pids.add(int(backend.load("pid")))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pids  # several threads: several processes
    processes = backend._client.processes
    backend.close()
    assert processes.running() == 0
    assert all(_gone(pid) for pid in pids), [pid for pid in pids if not _gone(pid)]


def test_processes_end_when_garbage_collected(fake):
    backend = fake()
    backend.open()
    pid = int(backend.load("pid"))
    assert not _gone(pid)
    del backend
    gc.collect()
    assert _wait_gone([pid]), f"process {pid} outlived its backend"


def test_killed_process_is_a_new_connection(fake):
    backend = fake()
    backend.open()
    first = int(backend.load("pid"))
    os.kill(first, signal.SIGKILL)
    # the idle connection's process is dead: the request goes again on a new process
    second = int(backend.load("pid"))
    assert second != first
    assert _wait_gone([first])
    backend.close()


def test_dying_server_is_quoted_and_may_have_applied(fake):
    backend = fake()
    backend.open()
    backend.load("pid")  # a kept-alive process, so the next request goes on a reused connection
    with pytest.raises(errors.BackendConnectionError) as info:
        backend.store("die", b"x")
    # the request was answered by nothing: sent once more on a fresh process, which died too
    assert "boom: the disk is on fire" in str(info.value)
    assert "exit status 3" in str(info.value)
    assert info.value.maybe_applied and info.value.temporary
    with pytest.raises(errors.BackendConnectionError) as info:
        backend.load("die")
    assert not info.value.maybe_applied
    assert int(backend.load("pid"))  # and then it works again
    backend.close()


def test_missing_server_command_is_permanent(fake, monkeypatch):
    monkeypatch.setenv("FAKE_STARTUP", "notfound")
    backend = fake()
    with pytest.raises(errors.BackendError, match="not installed there.*command not found") as info:
        backend.open()
    assert not info.value.temporary
    assert not backend.opened


def test_ssh_login_refused_is_permission_denied(fake, monkeypatch):
    monkeypatch.setenv("FAKE_STARTUP", "denied")
    with pytest.raises(errors.PermissionDenied, match="ssh refused the login"):
        fake().open()


def test_command_that_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no borgstore-server-rest there
    backend = rest_backend_from_url(f"rest://{tmp_path}/store")
    with pytest.raises(errors.BackendError, match="cannot run 'borgstore-server-rest'") as info:
        backend.create()
    assert not info.value.temporary


def test_hanging_server_times_out_and_is_killed(fake):
    backend = fake(timeout=0.5)
    backend.open()
    processes = backend._client.processes
    with pytest.raises(errors.BackendTimeout):
        backend.load("hang")
    pids = [process.popen.pid for process in processes._processes]
    backend.close()  # the hanging process is killed, not waited for
    assert processes.running() == 0
    assert all(_gone(pid) for pid in pids)


SERVER_WORDS = ["borgstore-server-rest", "--stdio", "--backend"]
# a stand-in for ssh: drops its options and the host, and hands the rest to a shell joined by
# blanks, as ssh does with a remote command; records its argv
FAKE_SSH = textwrap.dedent(
    """
    import os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_SSH_LOG"], "a") as log:
        log.write(repr(args) + "\\n")
    while args[0].startswith("-"):
        args = args[2:] if args[0] in ("-p", "-o", "-i") else args[1:]
    os.execvp("sh", ["sh", "-c", " ".join(args[1:])])
    """
)


def test_rest_through_rsh_end_to_end(tmp_path, monkeypatch):
    """rest://user@host:port/path through BORGSTORE_RSH (a fake ssh that runs the remote command
    in a local shell): the path, blanks and all, reaches the server as one word."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "borgstore-server-rest").exists():
        skip_or_fail(f"no borgstore-server-rest in {bin_dir} (pip install -e plugins/rest)")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    script = tmp_path / "fake_ssh.py"
    script.write_text(FAKE_SSH)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("BORGSTORE_RSH", f"{sys.executable} {script} -o BatchMode=yes")
    store = tmp_path / "my store"
    backend = rest_backend_from_url(f"rest://me@example.org:2222/{store}")
    backend.create()
    with backend:
        backend.store("data/x", b"through the shell")
        assert backend.load("data/x") == b"through the shell"
    assert (store / "data" / "x").read_bytes() == b"through the shell"
    first = log.read_text().splitlines()[0]
    assert first == repr(["-o", "BatchMode=yes", "-p", "2222", "me@example.org", *SERVER_WORDS, f"'FILE:{store}'"])
