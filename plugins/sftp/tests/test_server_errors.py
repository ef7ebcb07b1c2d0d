"""Failures the server reports are never taken for missing items.

Only SSH_FX_NO_SUCH_FILE means missing.  SSH_FX_PERMISSION_DENIED is PermissionDenied, and
SSH_FX_FAILURE (the server's "it did not work": an I/O error, no file descriptors left, ...) is a
BackendError naming the path and the server's message.  Real failures of a real sshd: a directory
the login user may not read (the server runs without root's right to ignore file modes), and a
server process out of file descriptors.
"""

import os

import pytest
from borgstore_backend_sftp import sftp_backend_from_url

from borgstore.backends.errors import BackendError, ObjectNotFound, PermissionDenied


def make_backend(server, path, **options):
    url = server.url("//" + str(path), alias=False)
    backend = sftp_backend_from_url(url, **server.backend_options(**options))
    backend.create()
    backend.open()
    return backend


def assert_not_missing(excinfo, error_type):
    assert isinstance(excinfo.value, error_type)
    assert not isinstance(excinfo.value, ObjectNotFound), f"reported as missing: {excinfo.value}"


@pytest.mark.parametrize("custom_sshd", [{"obey_file_modes": True}], indirect=True)
def test_an_unreadable_directory_is_denied_not_missing(custom_sshd, tmp_path):
    """Under a directory the login user may not enter, every operation raises PermissionDenied:
    info does not say exists=False, list and load do not say ObjectNotFound."""
    root = tmp_path / "store"
    backend = make_backend(custom_sshd, root)
    backend.store("locked/x", b"value")
    backend.mkdir("locked/sub")
    os.chmod(root / "locked", 0)
    try:
        calls = {
            "info": lambda: backend.info("locked/x"),
            "list": lambda: list(backend.list("locked")),
            "list below": lambda: list(backend.list("locked/sub")),
            "load": lambda: backend.load("locked/x"),
            "load empty": lambda: backend.load("locked/x", size=0),
            "gather": lambda: backend.gather([("locked/x", 0, 1)]),
            "hash": lambda: backend.hash("locked/x"),
            "delete": lambda: backend.delete("locked/x"),
            "store": lambda: backend.store("locked/y", b"new"),
            "move": lambda: backend.move("locked/x", "elsewhere"),
            "mkdir": lambda: backend.mkdir("locked/new"),
            "rmdir": lambda: backend.rmdir("locked/sub"),
        }
        for what, call in calls.items():
            with pytest.raises(PermissionDenied) as excinfo:
                call()
            assert_not_missing(excinfo, PermissionDenied)
            assert "locked" in str(excinfo.value), what
        assert backend.info("locked").directory  # the directory itself may be looked at
    finally:
        os.chmod(root / "locked", 0o755)
    assert backend.load("locked/x") == b"value"
    backend.close()


def exhaust_file_descriptors(session, path) -> int:
    """Open *path* on the server through *session* until the server process has no file
    descriptor left; return how many opens worked."""
    from borgstore_backend_sftp import _protocol as p

    for count in range(10_000):
        try:
            session.request(p.OPEN, p.string(path), p.u32(p.FLAG_READ), p.attrs_request(), expect=p.HANDLE)
        except p.StatusError as exc:
            assert exc.code == p.FAILURE, exc
            return count
    raise AssertionError("the server never ran out of file descriptors")


@pytest.mark.parametrize("custom_sshd", [{"open_files_limit": 64}], indirect=True)
def test_a_generic_failure_is_an_error_naming_the_path_not_a_missing_item(custom_sshd, tmp_path):
    """The server process runs out of file descriptors, so it answers every open with
    SSH_FX_FAILURE: list, load and gather raise a BackendError that names the path and the
    server's message, never ObjectNotFound; info (a stat needs no descriptor) still works."""
    root = tmp_path / "store"
    backend = make_backend(custom_sshd, root)
    backend.store("d/x", b"value")
    (session,) = backend._pool.connection.idle  # the one session every call below uses
    assert exhaust_file_descriptors(session, str(root / "d" / "x")) > 0
    calls = {
        "list": (lambda: list(backend.list("d")), "d"),
        "list root": (lambda: list(backend.list("")), str(root)),
        "load": (lambda: backend.load("d/x"), "d/x"),
        "gather": (lambda: backend.gather([("d/x", 0, 2), ("d/x", 3, 2)]), "d/x"),
    }
    for what, (call, named) in calls.items():
        with pytest.raises(BackendError) as excinfo:
            call()
        assert_not_missing(excinfo, BackendError)
        assert not isinstance(excinfo.value, PermissionDenied), what
        message = str(excinfo.value)
        assert named in message and "Failure" in message and "status 4" in message, (what, message)
        assert backend._pool.connection.idle == [session], what  # the failure did not break the session
    assert backend.info("d/x").exists
    backend.close()


def test_info_of_a_generic_failure_raises(backend, monkeypatch):
    """A server answering a stat with SSH_FX_FAILURE (an I/O error, say; OpenSSH's sftp-server
    only does so for errors a test cannot cause) makes info raise, not report exists=False."""
    from borgstore_backend_sftp import _protocol as p

    backend.store("i/x", b"value")
    real_request = p.Session.request

    def request(session, kind, *parts, expect=None):
        if kind == p.STAT:
            raise p.StatusError(p.FAILURE, "Failure")
        return real_request(session, kind, *parts, expect=expect)

    monkeypatch.setattr(p.Session, "request", request)
    for name in ("i/x", "i/missing", ""):
        with pytest.raises(BackendError) as excinfo:
            backend.info(name)
        assert_not_missing(excinfo, BackendError)
        assert "Failure" in str(excinfo.value) and backend.path in str(excinfo.value)
