"""Failures for real: the server killed and restarted, connections cut mid-write, Ctrl-C, leaks.

Each test runs its own sshd (own_sshd) because it kills it.
"""

import _thread
import gc
import os
import threading
import time
import weakref

import pytest
from borgstore_backend_sftp import sftp_backend_from_url

from borgstore.backends.errors import BackendConnectionError

BIG = 48 * 1024 * 1024


def make_backend(server, path, **options):
    url = server.url("//" + str(path), alias=False)
    options = {"retries": 4, "retry_time": 30.0, **options}
    backend = sftp_backend_from_url(url, **server.backend_options(**options))
    backend.create()
    backend.open()
    return backend


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def wait_for_temp_file(root, min_size=1, timeout=20.0):
    """Wait until a .tmp file of at least *min_size* bytes exists under *root* (a write is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d, _, files in os.walk(root):
            for f in files:
                if f.endswith(".tmp"):
                    try:
                        if os.path.getsize(os.path.join(d, f)) >= min_size:
                            return os.path.join(d, f)
                    except FileNotFoundError:
                        pass
        time.sleep(0.002)
    raise AssertionError("no write started")


def test_server_killed_and_restarted_between_operations(own_sshd, tmp_path):
    """After sshd and all its connections die and come back, the next operations reconnect and
    every item stored before is still there, complete."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    values = {f"data/{i:02x}": os.urandom(1000 + i) for i in range(20)}
    for name, value in values.items():
        backend.store(name, value)
    own_sshd.kill()
    threading.Timer(0.5, own_sshd.start).start()
    assert backend.load("data/00") == values["data/00"]  # retried until the server is back
    backend.store("data/new", b"after the restart")
    for name, value in values.items():
        assert backend.load(name) == value
    assert [i.name for i in backend.list("data")] == sorted([*(n.split("/")[1] for n in values), "new"])
    assert not [f for f in files_under(root) if f.endswith(".tmp")]
    backend.close()


def test_server_down_too_long_gives_connection_error_then_recovers(own_sshd, tmp_path):
    """With the server gone past the retry budget an operation raises BackendConnectionError
    (a bounded number of tries); once the server is back the same backend works again."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root, retries=2, retry_time=5.0)
    backend.store("a", b"before")
    own_sshd.kill()
    with pytest.raises(BackendConnectionError):
        backend.load("a")
    with pytest.raises(BackendConnectionError):
        backend.store("b", b"while down")
    own_sshd.start()
    assert backend.load("a") == b"before"
    assert not backend.info("b").exists
    backend.close()


def test_connection_cut_during_a_large_write_is_retried_completely(own_sshd, tmp_path):
    """The connection dies while a large value is being written: the store is repeated on a new
    connection, the value arrives complete and no temp file is left."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root, timeout=10.0)
    value = os.urandom(BIG)
    killer = threading.Thread(target=lambda: (wait_for_temp_file(root, 1 << 20), own_sshd.kill(), own_sshd.start()))
    killer.start()
    backend.store("big", value)
    killer.join()
    assert (root / "big").read_bytes() == value
    assert files_under(root) == ["big"]
    backend.close()


def test_connection_cut_during_a_large_write_never_shows_a_partial_object(own_sshd, tmp_path):
    """The server dies mid-write and stays down: the store fails with BackendConnectionError, the
    target never appears (an old value stays intact), and the partial temp file is removed after
    the next reconnect."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root, retries=1, timeout=10.0)
    backend.store("big", b"the old value")
    killer = threading.Thread(target=lambda: (wait_for_temp_file(root, 1 << 20), own_sshd.kill()))
    killer.start()
    with pytest.raises(BackendConnectionError):
        backend.store("big", os.urandom(BIG))
    killer.join()
    assert (root / "big").read_bytes() == b"the old value"
    assert any(f.endswith(".tmp") for f in files_under(root))  # the cut really happened mid-write
    own_sshd.start()
    assert backend.load("big") == b"the old value"
    assert files_under(root) == ["big"]
    backend.close()


def test_ctrl_c_during_a_write_is_not_swallowed(own_sshd, tmp_path):
    """KeyboardInterrupt during a store reaches the caller; nothing partial becomes visible and the
    backend keeps working (the temp file is cleaned up)."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    threading.Thread(target=lambda: (wait_for_temp_file(root, 1 << 20), _thread.interrupt_main())).start()
    with pytest.raises(KeyboardInterrupt):
        backend.store("big", os.urandom(BIG))
        time.sleep(5)  # the interrupt may land just after the store returned
    assert not (root / "big").exists()
    backend.store("small", b"still works")
    assert backend.load("small") == b"still works"
    assert files_under(root) == ["small"]
    backend.close()


def test_close_ends_the_connection_and_its_thread(own_sshd, tmp_path):
    """close() stops paramiko's transport thread; no thread outlives the backend."""
    backend = make_backend(own_sshd, tmp_path / "store")
    backend.store("x", b"1")
    transport = backend._pool.connection.transport
    assert transport.is_alive()
    backend.close()
    transport.join(5)
    assert not transport.is_alive()


def test_a_forgotten_open_backend_closes_its_connection(own_sshd, tmp_path):
    """An open backend that is garbage-collected without close() does not leak its connection."""
    backend = make_backend(own_sshd, tmp_path / "store")
    backend.store("x", b"1")
    transport = backend._pool.connection.transport
    ref = weakref.ref(backend)
    del backend
    gc.collect()
    assert ref() is None
    transport.join(5)
    assert not transport.is_alive()


def run_threads(backend, count):
    """*count* threads storing and loading through one backend at once; return their errors."""
    errors = []

    def work(n):
        try:
            for i in range(30):
                value = os.urandom(100 + 1000 * (i % 5)) + bytes([n])
                backend.store(f"t{n}/{i}", value)
                assert backend.load(f"t{n}/{i}") == value
        except Exception as exc:  # reported by the caller with the thread's number
            errors.append((n, exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_use_from_threads(own_sshd, tmp_path):
    """Many threads using one backend at once all get their own data; more threads than
    OpenSSH's default MaxSessions (10) share a bounded pool of sessions."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    assert run_threads(backend, 14) == []
    assert len(files_under(root)) == 14 * 30
    assert backend._pool.connection.count <= 8
    backend.close()


@pytest.mark.parametrize("custom_sshd", [{"sshd_options": "MaxSessions 2"}], indirect=True)
def test_a_server_allowing_fewer_sessions_is_shared(custom_sshd, tmp_path):
    """A server with MaxSessions 2: the pool shrinks to what the server allows instead of
    dropping the connection."""
    root = tmp_path / "store"
    backend = make_backend(custom_sshd, root)
    assert run_threads(backend, 5) == []
    assert len(files_under(root)) == 5 * 30
    assert backend._pool.connection.count <= 2
    backend.close()


@pytest.mark.parametrize("custom_sshd", [{"sftp_options": "-P fsync"}], indirect=True)
def test_durability_needs_fsync_on_the_server(custom_sshd, tmp_path):
    """A server without fsync@openssh.com: durability 'always'/'close' refuse to open with a clear
    error instead of silently not syncing; 'none' works."""
    from borgstore.backends.errors import BackendError

    root = tmp_path / "store"
    make_backend(custom_sshd, root).close()
    for durability in ("always", "close"):
        backend = sftp_backend_from_url(
            custom_sshd.url("//" + str(root), alias=False),
            **custom_sshd.backend_options(durability=durability),
        )
        with pytest.raises(BackendError, match="fsync@openssh.com"):
            backend.open()


@pytest.mark.parametrize("custom_sshd", [{"sftp_options": "-P posix-rename"}], indirect=True)
def test_without_posix_rename_overwrites_stay_atomic(custom_sshd, tmp_path):
    """Without posix-rename@openssh.com the plain-rename fallback still replaces values and
    targets, and leaves no temp or set-aside files."""
    root = tmp_path / "store"
    backend = make_backend(custom_sshd, root)
    backend.store("a/x", b"first")
    assert "posix-rename@openssh.com" not in backend._pool.connection.idle[0].extensions
    backend.store("a/x", b"second")
    assert backend.load("a/x") == b"second"
    backend.store("a/y", b"other")
    backend.move("a/y", "a/x")
    assert backend.load("a/x") == b"other"
    backend.move("a/x", "b/new/x")
    assert files_under(root) == ["b/new/x"]
    assert (root / "b/new/x").read_bytes() == b"other"
    backend.close()


def cut_after_request(monkeypatch, kind, done):
    """Break the connection right after a request of type *kind* left and the server carried it
    out (``done()`` turns true), before its reply is read: the client cannot know the outcome."""
    from borgstore_backend_sftp import _protocol

    original_send = _protocol.Session.send
    cut = []

    def send(session, request_kind, *parts):
        request_id = original_send(session, request_kind, *parts)
        if request_kind == kind and not cut:
            cut.append(request_id)
            deadline = time.monotonic() + 10
            while not done() and time.monotonic() < deadline:
                time.sleep(0.001)
            session.channel.get_transport().close()
            # the reply may already sit in paramiko's buffer: make the loss certain
            session.broken = True
            raise _protocol.ConnectionLost("cut by the test after the server acted")
        return request_id

    monkeypatch.setattr(_protocol.Session, "send", send)
    return cut


def test_delete_whose_reply_was_lost_is_not_reported_missing(own_sshd, tmp_path, monkeypatch):
    """The connection breaks after the server removed the item but before the reply came: the
    repeated delete finds nothing and must count that as done, not raise ObjectNotFound."""
    from borgstore_backend_sftp import _protocol

    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    backend.store("d/x", b"1")
    cut = cut_after_request(monkeypatch, _protocol.REMOVE, lambda: not (root / "d/x").exists())
    backend.delete("d/x")
    assert cut and not (root / "d/x").exists()
    backend.close()


def test_move_whose_reply_was_lost_is_not_reported_missing(own_sshd, tmp_path, monkeypatch):
    """Same for move: the source is gone and the target holds the value, so the repeat is done."""
    from borgstore_backend_sftp import _protocol

    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    backend.store("m/src", b"value")
    cut = cut_after_request(monkeypatch, _protocol.EXTENDED, lambda: (root / "m/dst").exists())
    backend.move("m/src", "m/dst")
    assert cut
    assert (root / "m/dst").read_bytes() == b"value" and not (root / "m/src").exists()
    backend.close()


def test_rmdir_whose_reply_was_lost_is_not_reported_missing(own_sshd, tmp_path, monkeypatch):
    """Same for rmdir: the directory is gone after the cut, so the repeat is done."""
    from borgstore_backend_sftp import _protocol

    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    backend.mkdir("r/empty")
    cut = cut_after_request(monkeypatch, _protocol.RMDIR, lambda: not (root / "r/empty").exists())
    backend.rmdir("r/empty")
    assert cut and not (root / "r/empty").exists()
    backend.close()


def test_a_server_that_stops_answering_times_out_and_is_replaced(own_sshd, tmp_path):
    """The connection's server process freezes (SIGSTOP): the reply timeout ends the wait, and the
    operation succeeds on a new connection."""
    import signal

    root = tmp_path / "store"
    backend = make_backend(own_sshd, root, timeout=1.0)
    backend.store("a", b"value")
    frozen = []
    for pid in own_sshd._session_pids():
        try:
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        except ProcessLookupError:
            pass  # a helper process that ended meanwhile
    assert frozen
    try:
        assert backend.load("a") == b"value"
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    backend.close()


@pytest.mark.parametrize("custom_sshd", [{"sftp_options": "-P limits"}], indirect=True)
def test_a_server_without_limits_extension_gets_safe_request_sizes(custom_sshd, tmp_path):
    """Without limits@openssh.com the request sizes fall back to what OpenSSH accepts, and large
    values still round-trip."""
    root = tmp_path / "store"
    backend = make_backend(custom_sshd, root)
    value = os.urandom(3 * 1024 * 1024 + 5)
    backend.store("big", value)
    assert backend.load("big") == value
    (session,) = backend._pool.connection.idle
    assert session.max_write <= 255 * 1024
    backend.close()


@pytest.mark.parametrize("custom_sshd", [{"file_size_limit": 1024 * 1024}], indirect=True)
def test_a_write_failing_on_the_server_leaves_no_trace(custom_sshd, tmp_path):
    """The server cannot write the whole value (as with a full disk): store raises a BackendError,
    the old value stays, no temp file remains, and the backend goes on working."""
    from borgstore.backends.errors import BackendError

    root = tmp_path / "store"
    backend = make_backend(custom_sshd, root)
    backend.store("v", b"the old value")
    with pytest.raises(BackendError) as excinfo:
        backend.store("v", os.urandom(3 * 1024 * 1024))
    assert not isinstance(excinfo.value, BackendConnectionError)  # the server's refusal, reported
    assert (root / "v").read_bytes() == b"the old value"
    assert files_under(root) == ["v"]
    backend.store("w", b"small values still fit")
    assert backend.load("w") == b"small values still fit"
    backend.close()


def test_durability_modes_fsync_on_the_server(own_sshd, tmp_path, require_binary, skip_or_fail):
    """Watched with strace on the server: 'always' fsyncs each item before its rename, 'close'
    fsyncs the stored items at close(), 'none' never fsyncs."""
    import re
    import subprocess

    require_binary("strace")
    trace = tmp_path / "trace"
    tracer = subprocess.Popen(
        ["strace", "-f", "-e", "trace=fsync,rename", "-o", str(trace), "-p", str(own_sshd.process.pid)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = tracer.stderr.readline()
        if "attached" not in first:
            skip_or_fail(f"strace cannot trace sshd here: {first.strip()}")
        root = tmp_path / "store"
        make_backend(own_sshd, root).close()
        for durability in ("always", "close", "none"):
            backend = sftp_backend_from_url(
                own_sshd.url("//" + str(root), alias=False), **own_sshd.backend_options(durability=durability)
            )
            backend.open()
            backend.store(f"a-{durability}", b"1")
            backend.store(f"b-{durability}", b"2")
            backend.close()
        time.sleep(0.2)
    finally:
        tracer.terminate()
        tracer.wait()
    events = []  # ("fsync", pid) or ("rename", pid, target name)
    for line in trace.read_text().splitlines():
        pid = line.split()[0]
        # with several traced processes strace may split a call into "fsync(5 <unfinished ...>"
        # and "<... fsync resumed>) = 0": count it where it returns
        if (" fsync(" in line or "<... fsync resumed>" in line) and line.rstrip().endswith("= 0"):
            events.append(("fsync", pid))
        elif " rename(" in line:
            events.append(("rename", pid, re.findall(r'"([^"]+)"', line)[1].rsplit("/", 1)[1]))
    by_mode = {}
    for event in events:
        if event[0] == "rename" and event[2].startswith(("a-", "b-")):
            by_mode.setdefault(event[2].split("-", 1)[1], set()).add(event[1])
    sequence = {
        mode: [e[0] if e[0] == "fsync" else e[2] for e in events if e[1] in pids] for mode, pids in by_mode.items()
    }
    assert sequence["always"] == ["fsync", "a-always", "fsync", "b-always"]
    assert sequence["close"] == ["a-close", "b-close", "fsync", "fsync"]
    assert sequence["none"] == ["a-none", "b-none"]
