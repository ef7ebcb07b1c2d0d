"""Failure paths, caused for real: a missing or wrong rclone, a killed rcd, an unwritable remote,
and the rclone child process never outliving its store."""

import base64
import gc
import http.client
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from borgstore_backend_rclone import rclone_backend_from_url

from borgstore.backends.errors import (
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendNotInstalled,
    PermissionDenied,
)

# --- the rclone binary ---


def test_a_missing_binary_is_a_clear_error(make_backend, monkeypatch, tmp_path, children):
    """RCLONE_BINARY naming nothing: open() and create() say so, naming the path; no process is left."""
    missing = str(tmp_path / "no-such-rclone")
    monkeypatch.setenv("RCLONE_BINARY", missing)
    b = make_backend()
    with pytest.raises(BackendNotInstalled, match="no-such-rclone"):
        b.create()
    with pytest.raises(BackendNotInstalled, match="RCLONE_BINARY"):
        b.open()
    assert children() == []


def test_no_rclone_on_path_is_a_clear_error(make_backend, monkeypatch, tmp_path):
    """Without RCLONE_BINARY and without rclone on PATH, the error says how to install it."""
    monkeypatch.delenv("RCLONE_BINARY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendNotInstalled, match="not found on PATH"):
        make_backend().create()


def fake_binary(tmp_path, name, script):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_a_too_old_rclone_is_refused_with_its_version(make_backend, monkeypatch, tmp_path):
    """An rclone older than 1.60 is refused, and the message names the version found."""
    old = fake_binary(tmp_path, "old-rclone", 'echo "rclone v1.53.3-DEV"\necho "- os/version: debian"\n')
    monkeypatch.setenv("RCLONE_BINARY", old)
    with pytest.raises(BackendNotInstalled, match=r"rclone 1\.53\.3, too old.*>= 1\.60"):
        make_backend().open()


def test_something_that_is_not_rclone_is_refused(make_backend, monkeypatch, tmp_path):
    """A binary that does not answer like rclone is refused with what it said."""
    other = fake_binary(tmp_path, "not-rclone", 'echo "usage: something else" >&2\nexit 2\n')
    monkeypatch.setenv("RCLONE_BINARY", other)
    with pytest.raises(BackendNotInstalled, match="does not look like rclone.*something else"):
        make_backend().open()


# --- the rcd dies ---
# The backend tries each call once; the retry layer (the Store's default chain for rclone) tries
# again, and the backend's part is to start a new rclone for the next call.


def test_a_killed_rcd_is_restarted_by_the_next_operation(backend, retrying, store_path, children):
    """After SIGKILL of rclone, the next operations (through retry) start a new one; nothing
    stored is lost."""
    chain = retrying(backend)
    stored = {f"data/{i:02x}": os.urandom(100 + i) for i in range(20)}
    for name, value in stored.items():
        chain.store(name, value)
    first = backend.pid
    os.kill(first, signal.SIGKILL)
    assert chain.load("data/00") == stored["data/00"]
    assert backend.pid != first
    chain.store("data/new", b"after the restart")
    for name, value in stored.items():
        assert chain.load(name) == value
    assert (store_path / "data/new").read_bytes() == b"after the restart"
    assert children() == [backend.pid]


def test_a_lost_answer_to_a_change_says_it_may_have_been_applied(backend):
    """A mutation whose answer is lost because rclone died raises a temporary
    BackendConnectionError with maybe_applied; the next call starts a new rclone."""
    backend.store("data/a", b"a")
    os.kill(backend.pid, signal.SIGKILL)
    try:
        backend.delete("data/a")
    except BackendConnectionError as exc:  # the death was noticed in the middle of the call
        assert exc.temporary and exc.maybe_applied
        assert "killed by signal 9" in str(exc)
        backend.delete("data/a")
    else:  # rclone was found dead before the request went out, and started again first
        pass
    assert not backend.info("data/a").exists


def test_a_delete_and_a_move_survive_a_killed_rcd(backend, retrying):
    """Operations that change state are carried out exactly once across a restart."""
    chain = retrying(backend)
    chain.store("data/a", b"a")
    chain.store("data/b", b"b")
    os.kill(backend.pid, signal.SIGKILL)
    chain.delete("data/a")
    os.kill(backend.pid, signal.SIGKILL)
    chain.move("data/b", "data/c")
    assert [i.name for i in chain.list("data")] == ["c"]
    assert chain.load("data/c") == b"b"


def test_a_rcd_that_cannot_restart_gives_rclones_own_error(backend, retrying, monkeypatch):
    """If rclone dies and cannot start again, the retry layer gives up with a BackendConnectionError
    quoting rclone; once the cause is gone, the next operation works again."""
    chain = retrying(backend, attempts=3, first_delay=0.01)
    chain.store("data/a", b"kept")
    monkeypatch.setenv("RCLONE_LOG_LEVEL", "NO-SUCH-LEVEL")  # the new rclone refuses to start
    os.kill(backend.pid, signal.SIGKILL)
    with pytest.raises(BackendConnectionError) as raised:
        chain.load("data/a")
    message = str(raised.value)
    assert "killed by signal 9" in message
    assert "NO-SUCH-LEVEL" in message  # rclone's own complaint
    assert "gave up after 3 tries" in message
    assert raised.value.temporary
    with pytest.raises(BackendConnectionError, match="(?s)killed by signal 9.*could not be started again"):
        chain.info("data/a")
    monkeypatch.delenv("RCLONE_LOG_LEVEL")
    assert chain.load("data/a") == b"kept"


# --- the remote is not writable ---


@pytest.fixture
def immutable(tmp_path):
    """Make a directory immutable (even root cannot write into it); undone at the end."""
    made = []

    def make(path):
        result = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"this file system cannot make a directory immutable: {result.stderr.strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_remote_refuses_stores_and_keeps_what_is_there(backend, store_path, immutable):
    """Stores into a directory that cannot be written raise PermissionDenied with rclone's reason;
    the existing items stay as they were and no temporary item is left."""
    backend.store("data/present", b"old")
    immutable(store_path / "data")
    with pytest.raises(PermissionDenied, match="not permitted"):
        backend.store("data/new", b"value")
    with pytest.raises(PermissionDenied):
        backend.store("data/present", b"replacement")
    with pytest.raises(PermissionDenied):
        backend.delete("data/present")
    assert sorted(os.listdir(store_path / "data")) == ["present"]
    assert backend.load("data/present") == b"old"


def test_a_file_where_a_directory_should_be_fails_cleanly(backend, store_path):
    """A store below a path that is a file fails with a BackendError and changes nothing."""
    backend.store("data", b"i am a file")
    with pytest.raises(BackendError) as raised:
        backend.store("data/00/item", b"value")
    assert "not a directory" in str(raised.value)
    assert sorted(os.listdir(store_path)) == ["data"]
    assert (store_path / "data").read_bytes() == b"i am a file"


# --- the child process never outlives its store ---


def test_many_open_close_cycles_leave_no_process(make_backend, store_path, children):
    """20 open/close cycles plus create/destroy leave no rclone process (nor zombie) behind."""
    b = make_backend()
    b.create()
    pids = set()
    for i in range(20):
        b.open()
        pids.add(b.pid)
        b.store(f"data/{i}", b"x")
        b.close()
        assert children() == []
    assert len(pids) == 20
    b.destroy()
    assert children() == []


def test_a_forgotten_backend_stops_its_rclone(rclone_binary, store_path, alive):
    """A backend that is garbage collected while open stops its rclone."""
    store_path.mkdir()
    backend = rclone_backend_from_url(f"rclone:{store_path}")
    backend.open()
    pid = backend.pid
    assert alive(pid)
    del backend
    gc.collect()
    assert not alive(pid)


def test_rclone_stops_at_interpreter_exit(rclone_binary, store_path, alive):
    """A program that exits without closing its store does not leave rclone running."""
    store_path.mkdir()
    program = textwrap.dedent(
        f"""
        import sys
        from borgstore_backend_rclone import rclone_backend_from_url
        b = rclone_backend_from_url("rclone:{store_path}")
        b.open()
        b.store("data/x", b"x")
        print(b.pid, flush=True)
        sys.exit(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", program], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    pid = int(done.stdout.split()[0])
    assert not alive(pid)


def test_the_terminals_ctrl_c_reaches_the_application_not_rclone(rclone_binary, store_path):
    """Ctrl-C (SIGINT to the foreground process group) interrupts the application, whose store
    keeps working afterwards: rclone did not get the signal."""
    store_path.mkdir()
    program = textwrap.dedent(
        f"""
        import os, time
        from borgstore_backend_rclone import rclone_backend_from_url
        b = rclone_backend_from_url("rclone:{store_path}")
        b.open()
        try:
            print(b.pid, flush=True)  # inside the try: the Ctrl-C may come at once
            time.sleep(60)
        except KeyboardInterrupt:
            b.store("data/after-ctrl-c", b"the application decided")
            print("stored", b.load("data/after-ctrl-c").decode(), flush=True)
            print(b.pid, flush=True)
        b.close()
        """
    )
    # a process group of its own stands in for the terminal's foreground job
    app = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        rclone_pid = int(app.stdout.readline())
        os.killpg(app.pid, signal.SIGINT)
        out, _ = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0
    stored, pid_afterwards = out.splitlines()
    assert stored == "stored the application decided"
    assert int(pid_afterwards) == rclone_pid  # the same rclone: it was not interrupted
    assert (store_path / "data/after-ctrl-c").read_bytes() == b"the application decided"


# --- credentials ---


def rc_port(pid) -> int:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        addr = next(arg for arg in f.read().split(b"\0") if arg.startswith(b"--rc-addr="))
    host, port = addr.split(b"=", 1)[1].decode().rsplit(":", 1)
    assert host == "127.0.0.1"
    return int(port)


def http_status(port: int, method: str, path: str, credentials: str = "") -> int:
    """The status of one plain request to rclone, with or without basic-auth credentials."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()} if credentials else {}
    try:
        connection.request(method, path, body=b"" if method == "POST" else None, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_credentials_never_appear_on_the_command_line_or_in_the_environment(backend):
    """rclone checks a random password against a hash in a file only we can read; ps and
    /proc/PID/environ show no secret, rclone refuses requests without the password, and the
    file is gone when the store is closed."""
    import stat

    pid = backend.pid
    authorization = backend._daemon._client._fixed_headers.split(b"Authorization: Basic ")[1].split(b"\r\n")[0]
    user, password = base64.b64decode(authorization).split(b":", 1)
    assert len(password) >= 32
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read()
    assert password not in cmdline and password not in environ
    htpasswd = next(a for a in cmdline.split(b"\0") if a.startswith(b"--rc-htpasswd=")).split(b"=", 1)[1].decode()
    with open(htpasswd, "rb") as f:
        content = f.read()
    assert content.startswith(user + b":{SHA}") and password not in content
    assert stat.S_IMODE(os.stat(htpasswd).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(htpasswd)).st_mode) == 0o700
    port = rc_port(pid)
    backend.store("data/secret", b"only for us")
    item = backend._item_url("data/secret")
    assert http_status(port, "POST", "/rc/noop") == 401
    assert http_status(port, "GET", item) == 401
    assert http_status(port, "POST", "/rc/noop", f"{user.decode()}:not-the-password") == 401
    assert http_status(port, "GET", item, f"{user.decode()}:not-the-password") == 401
    assert http_status(port, "POST", "/rc/noop", f"{user.decode()}:{password.decode()}") == 200
    assert http_status(port, "GET", item, f"{user.decode()}:{password.decode()}") == 200
    backend.close()
    assert not os.path.exists(os.path.dirname(htpasswd))


def test_an_inherited_rc_setting_cannot_open_rclone_to_everyone(make_backend, store_path, monkeypatch):
    """RCLONE_RC_NO_AUTH in the application's environment does not switch off our credentials."""
    monkeypatch.setenv("RCLONE_RC_NO_AUTH", "true")
    monkeypatch.setenv("RCLONE_RC_ADDR", "0.0.0.0:0")
    b = make_backend()
    b.create()
    b.open()
    with open(f"/proc/{b.pid}/environ", "rb") as f:
        assert b"RCLONE_RC_NO_AUTH" not in f.read()
    port = rc_port(b.pid)
    assert http_status(port, "POST", "/rc/list") == 401


def test_threads_carry_on_across_a_killed_rcd(backend, retrying):
    """Four threads storing and loading through retry while rclone is killed: it is restarted
    once, no thread sees an error, and every value is intact."""
    chain = retrying(backend)
    errors = []
    done = []  # one entry per finished store+load pair
    rounds = 100

    def work(t):
        try:
            for i in range(rounds):
                name, value = f"data/{t}/{i:03d}", os.urandom(500 + i)
                chain.store(name, value)
                assert chain.load(name) == value
                done.append(name)
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's number
            errors.append((t, exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    while len(done) < 20 and not errors:
        time.sleep(0.001)
    first = backend.pid
    os.kill(first, signal.SIGKILL)
    done_at_kill = len(done)
    for thread in threads:
        thread.join()
    assert errors == []
    assert done_at_kill < 4 * rounds  # the threads were still at work when rclone died
    assert backend.pid != first
    assert sum(1 for t in range(4) for _ in backend.list(f"data/{t}")) == 4 * rounds


def test_an_unknown_remote_is_reported_with_rclones_words(make_backend):
    """A remote name that is not in the rclone config: open() raises BackendDoesNotExist quoting rclone."""
    with pytest.raises(BackendDoesNotExist, match="no-such-remote.*didn't find section in config file"):
        make_backend("rclone:no-such-remote:some/path").open()


def test_a_forked_child_leaves_the_parents_rclone_alone(backend, alive):
    """A child forked while the store is open runs the store's finalizer (as its normal exit would)
    without stopping the parent's rclone."""
    pid = backend.pid
    child = os.fork()
    if child == 0:
        try:
            backend._finalizer()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert alive(pid)
    backend.store("data/after-fork", b"still served")
    assert backend.pid == pid
