"""Requests on a guessed handle (``Session.guess_handle``): a store's write and a load's first
read go in the batch of their OPEN.  On the real sshd: the guesses are right and save a round
trip; a wrong guess (the session's idea of the next handle spoilt on purpose) or a failed OPEN
loses and changes nothing, and a wrong guess ends guessing on that session."""

import os

import pytest
from borgstore_backend_sftp import _protocol as p

from borgstore.backends.errors import ObjectNotFound

#: every test here runs with each transport (conftest.py)
TRANSPORTS = ("paramiko", "openssh")


def the_session(backend) -> p.Session:
    (session,) = backend._pool.connection.idle
    return session


def round_trips(backend, operation) -> int:
    session = the_session(backend)
    before = session.round_trips
    operation()
    assert the_session(backend) is session  # the same session, still reusable
    return session.round_trips - before


def files_under(root) -> dict:
    return {
        os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
        for d, _, names in os.walk(root)
        for f in names
    }


def test_a_new_session_guesses_handle_0_and_keeps_guessing_right(backend):
    backend.store("g/warm", b"w")
    session = the_session(backend)
    assert session.guess_handle() == b"\0\0\0\0"
    for i in range(5):
        assert round_trips(backend, lambda i=i: backend.store(f"g/{i}", bytes([i]) * 100)) == 2
        assert round_trips(backend, lambda i=i: backend.load(f"g/{i}")) == 1
    assert [backend.load(f"g/{i}") for i in range(5)] == [bytes([i]) * 100 for i in range(5)]
    assert session.guess_handle() is not None


def test_a_wrong_guess_loses_nothing_and_ends_guessing(backend, location):
    backend.store("w/old", b"old value")
    session = the_session(backend)
    session._next_handle = b"\0\0\0\x07"  # no handle of that number is open
    before = files_under(location.local)
    # the OPEN gets handle 0: the write on handle 7 fails, the value is written on 0, one
    # round trip more than a right guess
    assert round_trips(backend, lambda: backend.store("w/new", b"new value")) == 3
    assert files_under(location.local) == {**before, os.path.join("w", "new"): b"new value"}
    assert session.guess_handle() is None
    assert round_trips(backend, lambda: backend.load("w/new")) == 2  # no guess any more
    assert backend.load("w/old") == b"old value"


def test_a_wrong_guess_on_a_load_reads_the_right_item(backend):
    backend.store("w/item", os.urandom(300 * 1024))
    value = backend.load("w/item")
    session = the_session(backend)
    session._next_handle = b"\0\0\0\x05"
    assert round_trips(backend, lambda: backend.load("w/item")) == 3  # the miss, then as without
    assert backend.load("w/item") == value
    assert session.guess_handle() is None


def test_failed_opens_with_a_guess_keep_the_session_and_the_guess(backend, location):
    backend.store("f/item", b"value")
    session = the_session(backend)
    with pytest.raises(ObjectNotFound):
        backend.load("f/missing")
    with pytest.raises(ObjectNotFound):
        backend.load("f/missing", offset=2, size=1)
    assert the_session(backend) is session and not session.broken
    assert round_trips(backend, lambda: backend.load("f/item")) == 1
    with pytest.raises(Exception):  # noqa: B017  the server's refusal, whatever class it maps to
        backend.store("f/item/under", b"x")  # f/item is a file: every OPEN of the temp fails
    assert the_session(backend) is session and session.guess_handle() is not None
    assert round_trips(backend, lambda: backend.store("f/other", b"x")) == 2
    assert files_under(location.local / "f") == {"item": b"value", "other": b"x"}


def test_no_guess_while_a_handle_of_the_session_is_open(backend):
    backend.store("o/item", b"value")
    session = the_session(backend)
    path = p.string(backend._root.path_of("o/item"))
    handle = p.Reader(session.request(p.OPEN, path, p.u32(p.FLAG_READ), p.attrs_request(), expect=p.HANDLE)).bytes()
    assert session.guess_handle() is None
    session.request(p.CLOSE, p.string(handle))
    assert session.guess_handle() == handle  # the one just freed is handed out next
