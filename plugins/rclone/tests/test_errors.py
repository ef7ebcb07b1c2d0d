"""rclone's answers mapped onto the error taxonomy (docs/errors.md, docs/rclone.md "Errors"):
what rclone says for real, racing writers included, and what its words mean where the status
(500 for nearly everything) does not say."""

import os
import threading

import pytest
from borgstore_backend_rclone._rc import RcFailed, rclone_error

from borgstore.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ObjectNotFound,
    PermissionDenied,
)

# --- rclone's words ---


@pytest.mark.parametrize(
    "status, message, expected, temporary",
    [
        (404, "object not found", ObjectNotFound, False),
        (404, "error in ListJSON: directory not found", ObjectNotFound, False),
        (500, "rename /s/data/a /s/data/b: no such file or directory", ObjectNotFound, False),
        (500, "remove /s/data/a: no such file or directory", ObjectNotFound, False),
        (500, "file does not exist", ObjectNotFound, False),
        (500, "open /s/data/a: permission denied", PermissionDenied, False),
        (500, "mkdir /s/data: read-only file system", PermissionDenied, False),
        (500, "is a directory not a file", BackendError, False),
        (500, "mkdir /s/item: not a directory", BackendError, False),
        (500, "remove /s/data: directory not empty", BackendError, False),
        (500, "couldn't connect SSH: dial tcp 127.0.0.1:22: connect: connection refused", BackendConnectionError, True),
        (500, "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer", BackendConnectionError, True),
        (500, "Get https://s3.example/x: context deadline exceeded", BackendTimeout, True),
        (500, "dial tcp 10.0.0.1:22: i/o timeout", BackendTimeout, True),
        (500, "SlowDown: Please reduce your request rate", BackendUnavailable, True),
        (500, "googleapi: Error 403: Rate Limit Exceeded, rateLimitExceeded", BackendUnavailable, True),
        (500, "something rclone never said before", BackendUnavailable, True),
        (400, 'Didn\'t find key "fs" in input', BackendError, False),
    ],
)
def test_rclone_words_decide_the_error_class(status, message, expected, temporary):
    """Each of rclone's typical answers becomes the class docs/rclone.md names, temporary where a
    later try may succeed; an answer with unknown words falls back to its HTTP status (an unknown
    500 is temporary: toolkit.error_for_http_status)."""
    error = rclone_error(RcFailed("operations/x", status, message), "rclone:/s: op 'x'")
    assert type(error) is expected
    assert error.temporary is temporary
    assert message in str(error) and "op 'x'" in str(error)


def test_a_temporary_error_of_a_change_may_have_been_applied():
    """rclone itself may have lost the remote's reply to a change: maybe_applied for mutations
    that failed temporarily, never for a permanent answer nor for a read."""
    lost = RcFailed("operations/movefile", 500, "connection reset by peer")
    assert rclone_error(lost, "move", mutation=True).maybe_applied
    assert not rclone_error(lost, "stat").maybe_applied
    refused = RcFailed("operations/movefile", 500, "permission denied")
    assert not rclone_error(refused, "move", mutation=True).maybe_applied


def test_the_stores_own_path_does_not_change_the_meaning(make_backend, tmp_path):
    """A store whose path contains one of rclone's words ("timeout", "not found") keeps its
    errors' classes: the words are looked for in rclone's message without the store's paths."""
    b = make_backend(f"rclone:{tmp_path / 'timeout not found'}")
    b.create()
    b.open()
    b.store("item", b"x")
    b.mkdir("full")
    b.store("full/inside", b"x")
    with pytest.raises(BackendError) as raised:
        b.rmdir("full")
    assert type(raised.value) is BackendError and not raised.value.temporary


# --- real answers ---


def test_permanent_conflicts_are_not_temporary(backend):
    """What another try cannot change is permanent, so the retry layer does not try again: a store
    below an item, a move onto a directory, an rmdir of a directory that is not empty."""
    backend.store("data/item", b"x")
    backend.store("data/dir/inside", b"x")
    calls = (
        lambda: backend.store("data/item/below", b"v"),
        lambda: backend.move("data/item", "data/dir"),
        lambda: backend.rmdir("data/dir"),
        lambda: backend.mkdir("data/item/sub"),
    )
    for call in calls:
        with pytest.raises(BackendError) as raised:
            call()
        assert not raised.value.temporary, raised.value
        assert not isinstance(raised.value, ObjectNotFound), raised.value


def test_no_item_of_that_name_is_object_not_found(backend):
    """Item operations on a missing name, a directory, or a name below an item raise ObjectNotFound."""
    backend.store("data/item", b"x")
    backend.mkdir("data/dir")
    for name in ("data/missing", "data/dir", "data/item/below", "nodir/missing"):
        for call in (backend.delete, backend.load, lambda n: backend.move(n, "data/target")):
            with pytest.raises(ObjectNotFound):
                call(name)
    with pytest.raises(ObjectNotFound):
        list(backend.list("nodir"))


ROUNDS = 150


def test_racing_moves_and_deletes_of_one_source_fail_only_with_object_not_found(backend):
    """Three threads move (or delete) the same item at the same moment, round after round: exactly
    one of them succeeds each round, and every other one fails with ObjectNotFound, including the
    loser whose source vanished between rclone's look and its rename ("rename ...: no such file
    or directory", a generic BackendError before; about 1 in 6 rounds here)."""
    barrier = threading.Barrier(4)
    outcomes = {t: [] for t in range(3)}

    def contender(t):
        for i in range(ROUNDS):
            barrier.wait()
            try:
                if t == 2 and i % 2:
                    backend.delete("data/src")
                else:
                    backend.move("data/src", f"data/dst{t}")
                outcomes[t].append("done")
            except Exception as exc:  # noqa: BLE001 - every outcome is recorded and checked
                outcomes[t].append(exc)
            barrier.wait()

    threads = [threading.Thread(target=contender, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(ROUNDS):
            backend.store("data/src", b"round %d" % i)
            barrier.wait()  # go
            barrier.wait()  # all three are done
    except BaseException:
        barrier.abort()  # the contenders stop waiting
        raise
    finally:
        for thread in threads:
            thread.join()
    failures = [o for t in outcomes for o in outcomes[t] if o != "done"]
    assert [f for f in failures if not isinstance(f, ObjectNotFound)] == []
    for i in range(ROUNDS):
        assert [outcomes[t][i] for t in range(3)].count("done") == 1, f"round {i}"
    assert not backend.info("data/src").exists


def test_a_store_racing_a_move_of_its_name_succeeds(backend, store_path):
    """A store whose item is moved away by another thread right after the store put it in place
    has stored it: rclone's look at the new item after its rename may find it gone, which is no
    failure of the store."""
    errors = []
    stop = threading.Event()

    def mover():
        while not stop.is_set():
            try:
                backend.move("data/x", "data/moved")
            except ObjectNotFound:
                pass
            except Exception as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

    thread = threading.Thread(target=mover)
    thread.start()
    try:
        for i in range(200):
            backend.store("data/x", b"%d" % i)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert not [f for f in os.listdir(store_path / "data") if f.endswith(".tmp")]


def test_a_refused_connection_to_rclone_is_a_connection_error(backend):
    """rclone running, but its port refusing connections (here: the client pointed at a port no
    one listens on): a temporary BackendConnectionError, not a timeout, quoting the refusal;
    maybe_applied only for a change."""
    import socket

    from borgstore.backends.http import HttpClient

    daemon = backend._daemon
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    original, daemon._client = daemon._client, HttpClient("127.0.0.1", port)
    try:
        with pytest.raises(BackendConnectionError) as read:
            backend.info("data/x")
        with pytest.raises(BackendConnectionError) as change:
            backend.delete("data/x")
    finally:
        daemon._client.close()
        daemon._client = original
    assert type(read.value) is BackendConnectionError and type(change.value) is BackendConnectionError
    assert "Connection refused" in str(read.value)
    assert read.value.temporary and not read.value.maybe_applied
    assert change.value.temporary and change.value.maybe_applied
    backend.store("data/x", b"the real client works")
