"""The first stores into a fresh store: a missing directory costs no extra round trip.

A store into a directory not known to exist sends the MKDIRs of its missing levels in the same
batch as the OPEN of its temp file (docs/sftp.md, "Round trips per operation").  These tests
count the round trips and the requests on a real sshd, and check that a directory removed behind
the backend's back, or between its MKDIR and its OPEN, never loses a store, and that a store never
makes the store's own directory again.
"""

import os
import shutil
import threading

import pytest
from borgstore_backend_sftp import _protocol as p

from borgstore.backends.errors import BackendError, ObjectNotFound
from borgstore.store import Store

#: every test here runs with each transport (conftest.py)
TRANSPORTS = ("paramiko", "openssh")


class Requests:
    """Counts what *backend* sends: the kinds of the requests, and its round trips."""

    def __init__(self, backend, monkeypatch):
        self.backend = backend
        self.kinds = []
        real_send = p.Session.send

        def send(session, kind, *parts):
            self.kinds.append(kind)
            return real_send(session, kind, *parts)

        monkeypatch.setattr(p.Session, "send", send)

    def _round_trips(self) -> int:
        return sum(session.round_trips for session in self.backend._pool.connection.idle)

    def measure(self, operation) -> tuple:
        """(round trips, number of MKDIRs) of *operation*."""
        before, sent = self._round_trips(), len(self.kinds)
        operation()
        return self._round_trips() - before, self.kinds[sent:].count(p.MKDIR)


def test_first_store_into_a_fresh_level_costs_what_any_store_costs(location, monkeypatch):
    """Through a Store with one nesting level: the very first store (data/ and its level
    directory missing), the first into another missing level directory and a store into an
    existing one all wait twice (the value goes with the OPEN, on the guessed handle); the layout
    is the usual one."""
    store = Store(
        url=location.url, config={"data/": {"levels": [1]}}, backend_options=location.server.backend_options()
    )
    store.create()
    with store:
        requests = Requests(store.backend, monkeypatch)
        first = "data/" + "ab" + "0" * 30
        assert requests.measure(lambda: store.store(first, b"first")) == (2, 2)  # data/, data/ab/
        assert requests.measure(lambda: store.store("data/" + "cd" + "1" * 30, b"x")) == (2, 1)
        assert requests.measure(lambda: store.store("data/" + "ab" + "2" * 30, b"y")) == (2, 0)
        assert store.load(first) == b"first"
    assert (location.local / "data" / "ab" / first.removeprefix("data/")).read_bytes() == b"first"
    assert sorted(os.listdir(location.local / "data")) == ["ab", "cd"]
    store.destroy()


def test_missing_grandparents_are_made_in_the_same_batch(backend, location, monkeypatch):
    """A store three levels deep into a fresh store: 2 round trips, one MKDIR per level, and the
    later stores into those directories send none; store_new alike."""
    requests = Requests(backend, monkeypatch)
    assert requests.measure(lambda: backend.store("a/b/c/item", b"deep")) == (2, 3)
    assert requests.measure(lambda: backend.store("a/b/c/other", b"x")) == (2, 0)
    assert requests.measure(lambda: backend.store_new("a/b/new/item", b"n")) == (2, 1)
    assert (location.local / "a" / "b" / "c" / "item").read_bytes() == b"deep"
    assert backend.load("a/b/new/item") == b"n"


def test_mkdir_and_rmdir_keep_the_known_directories_right(backend, monkeypatch):
    """A directory made by mkdir() needs no MKDIR at the next store; one removed by rmdir() gets
    it again, in the OPEN's batch (2 round trips, not a failed OPEN first)."""
    requests = Requests(backend, monkeypatch)
    backend.mkdir("m/n")
    assert requests.measure(lambda: backend.store("m/n/x", b"x")) == (2, 0)
    backend.delete("m/n/x")
    backend.rmdir("m/n")
    assert requests.measure(lambda: backend.store("m/n/y", b"y")) == (2, 1)
    assert backend.load("m/n/y") == b"y"


def test_directories_removed_behind_the_backends_back(backend, location, monkeypatch):
    """Directories the backend knows of, removed on the server by someone else: the store's OPEN
    fails, and the next batch makes every level again; nothing is lost."""
    backend.store("d/e/x", b"x")
    shutil.rmtree(location.local / "d")
    requests = Requests(backend, monkeypatch)
    round_trips, mkdirs = requests.measure(lambda: backend.store("d/e/y", b"y"))
    assert (round_trips, mkdirs) == (3, 2)  # the failed OPEN, then MKDIR d, d/e + OPEN, ...
    assert (location.local / "d" / "e" / "y").read_bytes() == b"y"
    assert [info.name for info in backend.list("d/e")] == ["y"]


def test_directory_removed_between_the_mkdir_and_the_open(backend, location, monkeypatch):
    """The directory goes after the server made it for our MKDIR and before our OPEN reaches it
    (made certain: the OPEN is held back until the MKDIR's reply is in, then the directory is
    removed on the disk): the store still succeeds."""
    real_send, real_wait = p.Session.send, p.Session.wait
    removed = []
    last_kind = [None]
    answered = set()  # ids whose replies were taken

    def send(session, kind, *parts):
        if kind == p.OPEN and last_kind[0] == p.MKDIR and not removed:
            mkdir_id = session.next_id - 1  # the MKDIR of r/s, sent just before
            if mkdir_id not in answered:
                session.replies[mkdir_id] = real_wait(session, mkdir_id)
            os.rmdir(location.local / "r" / "s")
            removed.append(True)
        last_kind[0] = kind
        return real_send(session, kind, *parts)

    def wait(session, request_id):
        answered.add(request_id)
        return real_wait(session, request_id)

    monkeypatch.setattr(p.Session, "send", send)
    monkeypatch.setattr(p.Session, "wait", wait)
    backend.store("r/s/item", b"value")
    assert removed
    assert (location.local / "r" / "s" / "item").read_bytes() == b"value"


def test_racing_rmdir_and_mkdir_lose_no_data(location):
    """One backend stores, loads and deletes items in a few directories while another removes
    and makes those directories again as fast as it can: every store is there to load."""
    writer, remover = location.backend(), location.backend()
    writer.create()
    writer.open()
    remover.open()
    directories = [f"race/{i}" for i in range(4)]
    done = threading.Event()
    removals = []

    def remove_and_make():
        while not done.is_set():
            for directory in directories:
                try:
                    remover.rmdir(directory)
                    removals.append(directory)
                except (BackendError, ObjectNotFound):
                    pass  # not empty, or already gone
                remover.mkdir(directory)

    thread = threading.Thread(target=remove_and_make)
    thread.start()
    try:
        for i in range(200):
            name = f"{directories[i % len(directories)]}/item{i}"
            writer.store(name, name.encode())
            assert writer.load(name) == name.encode()
            writer.delete(name)
    finally:
        done.set()
        thread.join()
    assert removals, "the race never happened: the test proves nothing"
    for directory in directories:
        writer.store(f"{directory}/last", b"last")
        assert (location.local / directory / "last").read_bytes() == b"last"
    writer.close()
    remover.close()


@pytest.mark.parametrize("operation", ["store", "store_new", "mkdir"])
def test_never_makes_the_stores_own_directory_again(backend, location, operation):
    """The store's directory removed on the server: a store or mkdir fails (not as a missing
    item) and leaves it missing, instead of making it and its parents again."""
    backend.store("data/ab/item", b"x")  # known directories: the store's OPEN fails first
    shutil.rmtree(location.local)
    calls = {
        "store": lambda: backend.store("data/ab/x", b"x"),
        "store_new": lambda: backend.store_new("data/cd/x", b"x"),
        "mkdir": lambda: backend.mkdir("data/ab"),
    }
    with pytest.raises(BackendError) as excinfo:
        calls[operation]()
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert not location.local.exists()
