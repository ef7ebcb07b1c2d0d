"""Failures for real: the server killed and restarted, connections cut mid-write, Ctrl-C, leaks.

The backend tries each call once; retrying is the ``retry`` middleware's job, so the tests of
recovery run through a chain with it (``retrying``), as a Store's default chain has it.  Each
test runs its own sshd (own_sshd) because it kills it.
"""

import _thread
import gc
import os
import threading
import time
import weakref

import pytest
from borgstore_backend_sftp import sftp_backend_from_url

from borgstore import build_chain
from borgstore._stats import empty_stats
from borgstore.backends.errors import BackendConnectionError

#: the kit of failures runs with each transport (conftest.py)
TRANSPORTS = ("paramiko", "openssh")

BIG = 48 * 1024 * 1024
#: generous: a restarting sshd must fit in; seeded, so the backoff delays are the same each run
RETRY = {"attempts": 20, "first_delay": 0.1, "max_delay": 1.0, "budget": 60.0, "breaker_failures": 0, "seed": 9}


def make_backend(server, path, **options):
    url = server.url("//" + str(path), alias=False)
    backend = sftp_backend_from_url(url, **server.backend_options(**options))
    backend.create()
    backend.open()
    return backend


def retrying(backend, **retry):
    """*backend* (open) inside the retry middleware, as in a Store's default chain."""
    return build_chain(backend, [("retry", {**RETRY, **retry})])


def retry_stats(chain) -> dict:
    stats = empty_stats()
    for link in chain.layers():
        link.contribute_stats(stats)
    return stats


def restart_after_first_retry(server, chain):
    """A thread that starts *server* again once *chain*'s retry layer has retried a call: the
    server was down for at least one try."""

    def restart():
        deadline = time.monotonic() + 30
        while not retry_stats(chain)["retry_attempts"] and time.monotonic() < deadline:
            time.sleep(0.01)
        server.start()

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


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
    """sshd and all its connections die; the backend alone raises a temporary
    BackendConnectionError, and through the retry middleware the call is retried until the server
    is back; every item stored before is still there, complete."""
    root = tmp_path / "store"
    backend = make_backend(own_sshd, root)
    chain = retrying(backend)
    values = {f"data/{i:02x}": os.urandom(1000 + i) for i in range(20)}
    for name, value in values.items():
        chain.store(name, value)
    own_sshd.kill()
    with pytest.raises(BackendConnectionError) as excinfo:
        backend.load("data/00")  # one try, no retry of its own
    assert excinfo.value.temporary and not excinfo.value.maybe_applied
    restarter = restart_after_first_retry(own_sshd, chain)
    assert chain.load("data/00") == values["data/00"]  # retried until the server is back
    restarter.join()
    assert retry_stats(chain)["retry_attempts"] >= 1
    chain.store("data/new", b"after the restart")
    for name, value in values.items():
        assert chain.load(name) == value
    assert [i.name for i in chain.list("data")] == sorted([*(n.split("/")[1] for n in values), "new"])
    assert not [f for f in files_under(root) if f.endswith(".tmp")]
    chain.close()


def test_server_down_too_long_gives_connection_error_then_recovers(own_sshd, tmp_path):
    """With the server gone past the retry layer's attempts an operation raises
    BackendConnectionError; once the server is back the same chain works again."""
    root = tmp_path / "store"
    chain = retrying(make_backend(own_sshd, root), attempts=2)
    chain.store("a", b"before")
    own_sshd.kill()
    with pytest.raises(BackendConnectionError, match="2 tries"):
        chain.load("a")
    with pytest.raises(BackendConnectionError, match="2 tries"):
        chain.store("b", b"while down")
    own_sshd.start()
    assert chain.load("a") == b"before"
    assert not chain.info("b").exists
    assert retry_stats(chain)["retry_giveups"] == 2
    chain.close()


def test_connection_cut_during_a_large_write_is_retried_completely(own_sshd, tmp_path):
    """The connection dies while a large value is being written: the retry middleware repeats
    the store on a new connection, the value arrives complete and no temp file is left (the
    backend removes the broken try's temp file after the reconnect)."""
    root = tmp_path / "store"
    chain = retrying(make_backend(own_sshd, root, timeout=10.0))
    value = os.urandom(BIG)
    killer = threading.Thread(target=lambda: (wait_for_temp_file(root, 1 << 20), own_sshd.kill(), own_sshd.start()))
    killer.start()
    chain.store("big", value)
    killer.join()
    assert retry_stats(chain)["retry_attempts"] >= 1
    assert (root / "big").read_bytes() == value
    assert files_under(root) == ["big"]
    chain.close()


def test_connection_cut_during_a_large_write_never_shows_a_partial_object(own_sshd, tmp_path):
    """The server dies mid-write and stays down: the store fails with BackendConnectionError (not
    applied: the rename was never sent), the target never appears (an old value stays intact),
    and the partial temp file is removed after the next reconnect."""
    root = tmp_path / "store"
    chain = retrying(make_backend(own_sshd, root, timeout=10.0), attempts=2)
    chain.store("big", b"the old value")
    killer = threading.Thread(target=lambda: (wait_for_temp_file(root, 1 << 20), own_sshd.kill()))
    killer.start()
    with pytest.raises(BackendConnectionError) as excinfo:
        chain.store("big", os.urandom(BIG))
    killer.join()
    assert not excinfo.value.maybe_applied
    assert (root / "big").read_bytes() == b"the old value"
    assert any(f.endswith(".tmp") for f in files_under(root))  # the cut really happened mid-write
    own_sshd.start()
    assert chain.load("big") == b"the old value"
    assert files_under(root) == ["big"]
    chain.close()


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


@pytest.mark.transports("paramiko")
def test_close_ends_the_connection_and_its_thread(own_sshd, tmp_path):
    """close() stops paramiko's transport thread; no thread outlives the backend."""
    backend = make_backend(own_sshd, tmp_path / "store")
    backend.store("x", b"1")
    transport = backend._pool.connection.transport
    assert transport.is_alive()
    backend.close()
    transport.join(5)
    assert not transport.is_alive()


@pytest.mark.transports("paramiko")
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
@pytest.mark.transports("paramiko")
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


def cut_connection(session):
    """End *session*'s connection from our side: paramiko's transport, or the ssh process."""
    channel = session.channel
    if hasattr(channel, "get_transport"):
        channel.get_transport().close()
    else:
        channel.process.popen.kill()
        channel.process.popen.wait()


def cut_after_request(monkeypatch, kind, done):
    """Break the connection right after a request of type *kind* left and the server carried it
    out (``done()`` turns true), before its reply is read: the client cannot know the outcome."""
    from borgstore_backend_sftp import _protocol

    original_send = _protocol.Session.send
    original_wait = _protocol.Session.wait
    cut = []

    def send(session, request_kind, *parts):
        request_id = original_send(session, request_kind, *parts)
        if request_kind == kind and not cut:
            session.flush()  # a request leaves with its batch: make it leave now
            cut.append((session, request_id))
            deadline = time.monotonic() + 10
            while not done() and time.monotonic() < deadline:
                time.sleep(0.001)
            cut_connection(session)
        return request_id

    def wait(session, request_id):
        if cut and cut[0] == (session, request_id) and not session.broken:
            # the reply may already sit in paramiko's buffer: make the loss certain
            session.broken = True
            raise _protocol.ConnectionLost("cut by the test after the server acted")
        return original_wait(session, request_id)

    monkeypatch.setattr(_protocol.Session, "send", send)
    monkeypatch.setattr(_protocol.Session, "wait", wait)
    return cut


def cut_before_request(monkeypatch, kind):
    """Break the connection just before a request of type *kind* would leave."""
    from borgstore_backend_sftp import _protocol

    original_send = _protocol.Session.send
    cut = []

    def send(session, request_kind, *parts):
        if request_kind == kind and not cut:
            cut.append(True)
            cut_connection(session)
            session.broken = True
            raise _protocol.ConnectionLost("cut by the test before the request left")
        return original_send(session, request_kind, *parts)

    monkeypatch.setattr(_protocol.Session, "send", send)
    return cut


def _lost_reply_cases(root):
    """(prepare(backend), the request to cut after, done(), call(link), check()) per mutation."""
    from borgstore_backend_sftp import _protocol as p

    return {
        "delete": (
            lambda b: b.store("d/x", b"1"),
            p.REMOVE,
            lambda: not (root / "d/x").exists(),
            lambda link: link.delete("d/x"),
            lambda: not (root / "d/x").exists(),
        ),
        "move": (
            lambda b: b.store("m/src", b"value"),
            p.EXTENDED,
            lambda: (root / "m/dst").exists(),
            lambda link: link.move("m/src", "m/dst"),
            lambda: (root / "m/dst").read_bytes() == b"value" and not (root / "m/src").exists(),
        ),
        "rmdir": (
            lambda b: b.mkdir("r/empty"),
            p.RMDIR,
            lambda: not (root / "r/empty").exists(),
            lambda link: link.rmdir("r/empty"),
            lambda: not (root / "r/empty").exists(),
        ),
        "store_new": (
            lambda b: b.mkdir("n"),
            p.RENAME,
            lambda: (root / "n/new").exists(),
            lambda link: link.store_new("n/new", b"fresh"),
            lambda: (root / "n/new").read_bytes() == b"fresh" and files_under(root / "n") == ["new"],
        ),
    }


def visible(root) -> list:
    """Every file and directory under *root* but temp files, as relative paths."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".tmp"))


@pytest.mark.parametrize("operation", ["delete", "move", "rmdir", "store_new"])
def test_a_lost_reply_is_maybe_applied_and_resolved_by_the_retry_layer(own_sshd, tmp_path, monkeypatch, operation):
    """The connection breaks after the server carried out a mutation but before its reply came:
    the backend raises a temporary BackendConnectionError with maybe_applied set (it cannot know),
    and the retry middleware resolves it by looking, instead of reporting "missing" or "exists"."""
    root = tmp_path / "alone"
    prepare, kind, done, call, check = _lost_reply_cases(root)[operation]
    backend = make_backend(own_sshd, root)
    prepare(backend)
    cut = cut_after_request(monkeypatch, kind, done)
    with pytest.raises(BackendConnectionError) as excinfo:
        call(backend)
    assert cut and excinfo.value.temporary and excinfo.value.maybe_applied
    assert check()
    monkeypatch.undo()
    backend.close()

    root = tmp_path / "retried"
    prepare, kind, done, call, check = _lost_reply_cases(root)[operation]
    backend = make_backend(own_sshd, root)
    prepare(backend)
    chain = retrying(backend)
    cut = cut_after_request(monkeypatch, kind, done)
    call(chain)
    assert cut and check()
    stats = retry_stats(chain)
    assert stats["retry_attempts"] == 1 and stats["retry_giveups"] == 0
    chain.close()


@pytest.mark.parametrize("operation", ["delete", "move", "rmdir", "store_new"])
def test_a_connection_lost_before_the_request_left_is_not_maybe_applied(own_sshd, tmp_path, monkeypatch, operation):
    """The connection breaks before the mutation's request left: BackendConnectionError with
    maybe_applied False, nothing changed, and the retry middleware simply repeats it."""
    root = tmp_path / "store"
    prepare, kind, _, call, check = _lost_reply_cases(root)[operation]
    backend = make_backend(own_sshd, root)
    prepare(backend)
    before = visible(root)
    cut = cut_before_request(monkeypatch, kind)
    with pytest.raises(BackendConnectionError) as excinfo:
        call(backend)
    assert cut and excinfo.value.temporary and not excinfo.value.maybe_applied
    assert visible(root) == before
    monkeypatch.undo()
    chain = retrying(backend)
    cut = cut_before_request(monkeypatch, kind)
    call(chain)
    assert cut and check()
    stats = retry_stats(chain)
    assert stats["retry_attempts"] == 1 and stats["retry_resolved"] == 0
    chain.close()


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
