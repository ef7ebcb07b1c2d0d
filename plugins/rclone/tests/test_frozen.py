"""An rclone that stops answering (SIGSTOP: frozen, its sockets still open) is noticed within the
``timeout`` option, raw and through a Store's default chain; continued or killed, the store
carries on.  The time bounds are the issue's "within the configured time", with generous slack
for a loaded machine."""

import os
import signal
import threading
import time

import pytest

from borgstore import Store, default_middleware
from borgstore.backends.errors import BackendConnectionError, BackendTimeout

TIMEOUT = 1.0  # seconds: the backend's timeout option in these tests
SLACK = 10.0  # seconds on top of the configured time, for a busy machine


@pytest.fixture
def frozen():
    """The function that stops a process (SIGSTOP); every stopped process is continued at the end."""
    stopped = []

    def freeze(pid):
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        # the signal stops rclone's threads a moment after kill() returns: until then it answers
        deadline = time.monotonic() + 30
        while not all_threads_stopped(pid):
            assert time.monotonic() < deadline, f"rclone {pid} did not stop"
            time.sleep(0.001)

    yield freeze
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.fixture
def quick(make_backend):
    """An open backend whose rclone has TIMEOUT seconds to answer, holding data/a."""
    b = make_backend(timeout=TIMEOUT)
    b.create()
    b.open()
    b.store("data/a", b"a")
    return b


def timed(call):
    """(what *call* raised, seconds it took)."""
    start = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def process_state(pid, task=None):
    """The state letter of *pid* (or of its thread *task*) in /proc, None if there is none."""
    try:
        with open(f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def all_threads_stopped(pid) -> bool:
    return all(process_state(pid, task) in ("T", "t", None) for task in os.listdir(f"/proc/{pid}/task"))


def test_a_stopped_rcd_is_a_timeout_and_continued_it_carries_on(quick, frozen, request):
    """A read and a change sent to a stopped rclone each raise BackendTimeout (temporary; the
    change with maybe_applied: rclone may still carry it out) after one request, within the
    timeout; continued, the same rclone serves the next call."""
    pid = quick.pid
    frozen(pid)
    methods = request.getfixturevalue("rc_methods")
    error, took = timed(lambda: quick.delete("data/a"))
    assert isinstance(error, BackendTimeout), error
    assert error.temporary and error.maybe_applied
    assert f"did not answer within {TIMEOUT:g} s" in str(error)
    assert took < TIMEOUT + SLACK
    assert methods == ["POST"]  # one try: the backend does not send it again
    os.kill(pid, signal.SIGCONT)
    quick.store("data/b", b"after SIGCONT")
    assert quick.load("data/b") == b"after SIGCONT"
    assert quick.pid == pid  # it answered the check after the timeout, so it was kept


def test_a_read_from_a_stopped_rcd_is_not_a_change(quick, frozen):
    """A read that times out may be repeated at will: not maybe_applied."""
    frozen(quick.pid)
    error, took = timed(lambda: quick.load("data/a"))
    assert isinstance(error, BackendTimeout) and not error.maybe_applied
    assert took < TIMEOUT + SLACK


def test_an_rcd_that_stays_stopped_is_replaced_by_the_next_call(quick, frozen, children):
    """After a timeout, the next call checks that rclone answers; a stopped one is killed and a new
    one started, and the call succeeds: within the check's timeout and a start."""
    first = quick.pid
    frozen(first)
    error, _ = timed(lambda: quick.info("data/a"))
    assert isinstance(error, BackendTimeout)
    error, took = timed(lambda: quick.store("data/b", b"on a new rclone"))
    assert error is None
    assert took < TIMEOUT + SLACK
    assert quick.pid != first
    assert process_state(first) is None  # killed and reaped
    assert children() == [quick.pid]
    assert quick.load("data/a") == b"a"


def retry_chain(backend, **retry_options):
    """The Store's default chain for *backend* (rclone declares transient_errors, so it includes
    retry), with *retry_options* for the retry layer."""
    chain = default_middleware(backend=backend)
    assert "retry" in chain
    return [("retry", retry_options) if entry == "retry" else entry for entry in chain]


def open_store(make_backend, **retry_options) -> Store:
    backend = make_backend(timeout=TIMEOUT)
    store = Store(backend=backend, config={"data/": {"levels": [0]}}, middleware=retry_chain(backend, **retry_options))
    store.create()
    store.open()
    store.store("data/a", b"a")
    return store


def test_through_the_default_chain_a_stopped_rcd_is_reported_within_the_budget(make_backend, frozen):
    """A Store whose retry budget is shorter than the timeout reports BackendTimeout after one
    try, within the configured time; continued, the next call works."""
    store = open_store(make_backend, budget=TIMEOUT / 2)
    try:
        pid = store.chain.backend.pid
        frozen(pid)
        error, took = timed(lambda: store.load("data/a"))
        assert isinstance(error, BackendTimeout), error
        assert "gave up after 1 try" in str(error)
        assert took < TIMEOUT + SLACK
        assert store.stats["retry_giveups"] == 1
        os.kill(pid, signal.SIGCONT)
        assert store.load("data/a") == b"a"
    finally:
        store.close()


def test_through_the_default_chain_a_stopped_rcd_is_retried_on_a_new_one(make_backend, frozen):
    """With a budget for more than one try, the retry layer's second try finds rclone still not
    answering, the backend replaces it, and the call succeeds: a frozen rclone costs a Store
    call about twice the timeout."""
    store = open_store(make_backend, budget=2 * TIMEOUT + SLACK)
    try:
        first = store.chain.backend.pid
        frozen(first)
        error, took = timed(lambda: store.store("data/b", b"stored"))
        assert error is None
        assert took < 2 * TIMEOUT + SLACK
        assert store.stats["retry_attempts"] >= 1
        assert store.chain.backend.pid != first
        assert store.load("data/b") == b"stored"
    finally:
        store.close()


def rcd_has_our_request(port: int) -> bool:
    """True once a connection to 127.0.0.1:*port* holds bytes that rclone has not read (its
    socket's receive queue in /proc/net/tcp): a request sent to a stopped rclone."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if local == f"0100007F:{port:04X}" and state == "01" and int(queues.split(":")[1], 16) > 0:
                return True
    return False


def test_an_rcd_killed_while_a_change_waits_for_it_is_a_lost_reply(make_backend, frozen):
    """rclone dies with a request of ours unanswered: BackendConnectionError (not a timeout), temporary,
    maybe_applied for a change, naming the death; the next call starts a new rclone."""
    b = make_backend(timeout=60.0)
    b.create()
    b.open()
    b.store("data/a", b"a")
    pid = b.pid
    port = b._daemon._client.port
    frozen(pid)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(timed(lambda: b.delete("data/a"))[0]))
    thread.start()
    deadline = time.monotonic() + 30
    while not rcd_has_our_request(port) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rcd_has_our_request(port), "the delete never reached rclone's socket"
    os.kill(pid, signal.SIGKILL)
    thread.join()
    (error,) = outcome
    assert type(error) is BackendConnectionError, error
    assert error.temporary and error.maybe_applied
    assert "killed by signal 9" in str(error)
    assert b.info("data/a").exists  # a new rclone: the old one never got to the delete
    assert b.pid != pid


def test_a_call_that_takes_longer_than_the_timeout_succeeds_as_a_job(make_backend, store_path):
    """The timeout bounds how long rclone may take to answer a request, not how long its work may
    take: server-side hashing of a 1 GiB item (a sparse file: seconds of reading zeros) with a
    timeout of 0.5 s times out as one plain request, and succeeds as the rclone job hash() runs,
    whose status requests are answered at once."""
    b = make_backend(server_hash="always", timeout=0.5)
    b.create()
    b.open()
    with open(store_path / "big", "wb") as f:
        f.truncate(1 << 30)
    params = {"command": "hashsum", "arg": ["md5", b.fs + "big"], "returnType": "COMBINED_OUTPUT"}
    with pytest.raises(BackendTimeout):
        b._rc("core/command", params)
    assert b.hash("big", "md5") == "cd573cfaace07e7949bc0c46028904ff"  # md5 of 1 GiB of zeros
