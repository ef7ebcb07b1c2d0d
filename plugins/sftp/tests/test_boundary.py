"""What may cross the backend's boundary: hostile names never reach the server, and a password
in the URL never comes back out (repr, errors, logs).  Against the real sshd."""

import contextlib
import logging
import os

import pytest

from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
)
from borgstore.store import Store, get_backend

HOSTILE_NAMES = ["../escape", "data/../../x", "/etc/x", "a//b", "a\x00b", "..", "a/./b", "a/", "a\\b", "a\nb"]


def tree(root) -> dict:
    """{relative path: file content or None for a directory} of everything under *root*."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            found[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as file:
                found[os.path.relpath(path, root)] = file.read()
    return found


def hostile_calls(backend, name):
    """Every operation given *name* (in each position it can take)."""
    calls = {
        "store": lambda: backend.store(name, b"payload"),
        "load": lambda: backend.load(name),
        "load range": lambda: backend.load(name, size=1, offset=0),
        "delete": lambda: backend.delete(name),
        "move from": lambda: backend.move(name, "data/moved"),
        "move to": lambda: backend.move("data/ok", name),
        "mkdir": lambda: backend.mkdir(name),
        "rmdir": lambda: backend.rmdir(name),
        "hash": lambda: backend.hash(name),
        "gather": lambda: backend.gather([(name, 0, 1)]),
        "gather empty range": lambda: backend.gather([(name, 0, 0)]),
    }
    if name:  # "" is the root: info and list accept it
        calls["info"] = lambda: backend.info(name)
        calls["list"] = lambda: list(backend.list(name))
    return calls


def test_hostile_names_are_refused_before_anything_reaches_the_server(sshd, tmp_path, monkeypatch):
    """get_backend("sftp://...") returns a backend that refuses names leaving its root (or
    malformed) with ValueError, sending no request; nothing outside the root changes."""
    from borgstore_backend_sftp import _protocol

    root = tmp_path / "outer" / "store"
    backend = get_backend(sshd.url("//" + str(root), alias=False), **sshd.backend_options())
    backend.create()
    backend.open()
    backend.store("data/ok", b"stays")
    (tmp_path / "outer" / "x").write_bytes(b"a neighbour")
    before = tree(tmp_path)
    sent = []
    real_send = _protocol.Session.send

    def send(session, kind, *parts):
        sent.append(kind)
        return real_send(session, kind, *parts)

    monkeypatch.setattr(_protocol.Session, "send", send)
    refused = []
    for name in [*HOSTILE_NAMES, ""]:
        for what, call in hostile_calls(backend, name).items():
            with pytest.raises(ValueError):
                call()
            refused.append((name, what))
    assert sent == []  # refused before any request
    monkeypatch.undo()
    assert tree(tmp_path) == before
    assert not os.path.exists("/etc/x")
    assert backend.load("data/ok") == b"stays"  # still working
    assert [i.name for i in backend.list("")] == ["data"] and backend.info("").directory
    backend.close()
    assert len(refused) == 13 * len(HOSTILE_NAMES) + 11


SECRET = "hunter2-s3cret"


def test_a_password_in_the_url_is_never_shown(sshd, tmp_path, caplog):
    """A URL with user:password@ works (the password is ignored: public keys log in), and
    neither repr, nor any error message, nor any log line shows the password."""
    caplog.set_level(logging.DEBUG)
    url = f"sftp://{sshd.user}:{SECRET}@127.0.0.1:{sshd.port}//{tmp_path}/store"
    options = sshd.backend_options()
    shown = []

    def expect(error, call):
        with pytest.raises(error) as excinfo:
            call()
        shown.extend([str(excinfo.value), repr(excinfo.value)])

    backend = get_backend(url, **options)
    shown.append(repr(backend))
    expect(BackendDoesNotExist, backend.open)
    expect(BackendMustBeOpen, lambda: backend.load("x"))
    expect(BackendMustBeOpen, backend.close)
    expect(BackendDoesNotExist, backend.destroy)
    backend.create()
    backend.open()
    expect(BackendMustNotBeOpen, backend.create)
    backend.store("x", b"1")
    expect(BackendError, lambda: backend.rmdir("x"))
    backend.close()
    expect(BackendAlreadyExists, backend.create)
    store = Store(url, config={"": {"levels": [0]}}, backend_options=options)
    shown.append(repr(store))
    expect(BackendAlreadyExists, store.create)
    closed_port = url.replace(f":{sshd.port}/", f":{_closed_port()}/")
    expect(BackendConnectionError, get_backend(closed_port, **options).open)
    assert any(record.name.startswith("paramiko") for record in caplog.records)  # logs were captured
    for text in [*shown, caplog.text]:
        assert SECRET not in text
    assert f"{sshd.user}:***@127.0.0.1" in repr(backend)


def _closed_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
