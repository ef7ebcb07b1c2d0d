"""File system failures become borgstore errors that name the path, and a failure is never
taken for "missing" (ObjectNotFound, exists=False, an empty listing)."""

import os
import shutil
import tempfile

import errno

import pytest

from borgstore.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore_backend_posixfs import PosixFSBackend
from borgstore_backend_posixfs._errors import os_error


def permission_errors(root) -> list:
    """Try a store into a read-only directory and a load of a private file; return the errors."""
    backend = PosixFSBackend(root, durability="none")
    backend.open()
    lines = []
    for call in (lambda: backend.store("locked/new", b"x"), lambda: backend.load("secret")):
        try:
            call()
            lines.append("no error")
        except Exception as exc:
            lines.append(f"{type(exc).__name__} {exc}")
    backend.close()
    return lines


def as_unprivileged_user(function, *args) -> list:
    """Run *function* in a forked child that dropped root's privileges (root ignores file modes)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, "\n".join(function(*args)).encode())
        except BaseException as exc:
            os.write(write_end, f"the unprivileged child failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    os.waitpid(pid, 0)
    return output.splitlines()


def test_file_system_permission_errors_are_permission_denied_naming_the_path():
    """EACCES from the file system becomes PermissionDenied naming the path; nothing is written."""
    import shutil
    import tempfile

    # a place the unprivileged user can reach (pytest's tmp_path is private to root)
    base = tempfile.mkdtemp(prefix="borgstore-perm-")
    root = os.path.join(base, "store")
    try:
        os.chmod(base, 0o755)
        os.makedirs(os.path.join(root, "locked"))
        with open(os.path.join(root, "secret"), "wb") as f:
            f.write(b"s")
        os.chmod(os.path.join(root, "secret"), 0o600)
        os.chmod(os.path.join(root, "locked"), 0o555)
        lines = as_unprivileged_user(permission_errors, root) if os.geteuid() == 0 else permission_errors(root)
        assert len(lines) == 2, lines
        assert lines[0].startswith("PermissionDenied store 'locked/new'"), lines[0]
        assert os.path.join(root, "locked") in lines[0]
        assert lines[1].startswith("PermissionDenied load 'secret'"), lines[1]
        assert os.path.join(root, "secret") in lines[1]
        assert os.listdir(os.path.join(root, "locked")) == []
    finally:
        os.chmod(os.path.join(root, "locked"), 0o755)
        shutil.rmtree(base)


@pytest.fixture
def shared_root():
    """A store root the unprivileged user can reach (pytest's tmp_path is private to root)."""
    base = tempfile.mkdtemp(prefix="borgstore-errors-")
    os.chmod(base, 0o755)
    root = os.path.join(base, "store")
    backend = PosixFSBackend(root, durability="none")
    backend.create()
    os.chmod(root, 0o777)
    yield root
    for directory, dirs, _ in os.walk(base):
        for name in dirs:
            os.chmod(os.path.join(directory, name), 0o755)
    shutil.rmtree(base)


def failures_not_missing(root) -> list:
    """Name each call's outcome through a directory the user may not search or read."""
    backend = PosixFSBackend(root, durability="none")
    backend.open()
    calls = {
        "info": lambda: backend.info("locked/item"),
        "load": lambda: backend.load("locked/item"),
        "hash": lambda: backend.hash("locked/item"),
        "delete": lambda: backend.delete("locked/item"),
        "move": lambda: backend.move("locked/item", "elsewhere"),
        "rmdir": lambda: backend.rmdir("locked/sub"),
        "list": lambda: list(backend.list("locked")),
        "list_tree": lambda: list(backend.list_tree("")),
        "list_tree-unreadable": lambda: list(backend.list_tree("unreadable")),
        "list-entries": lambda: list(backend.list("unreadable")),
        "list_temp": lambda: list(backend.list_temp("locked")),
        "list_temp-unreadable": lambda: list(backend.list_temp("unreadable")),
        "store_new": lambda: backend.store_new("locked/new", b"x"),
    }
    lines = []
    for what, call in calls.items():
        try:
            lines.append(f"{what}: no error, {call()!r}")
        except Exception as exc:
            lines.append(f"{what}: {type(exc).__name__} {exc}")
    backend.close()
    return lines


def test_permission_failures_are_never_reported_as_missing(shared_root):
    """A directory the user cannot search or read: every operation below it raises
    PermissionDenied naming the path, not ObjectNotFound, exists=False or an empty listing."""
    root = shared_root
    os.makedirs(os.path.join(root, "locked", "sub"))
    os.makedirs(os.path.join(root, "unreadable", "deeper"))
    for name in ("locked/item", "unreadable/deeper/item"):
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"x")
    os.chmod(os.path.join(root, "locked"), 0o000)
    os.chmod(os.path.join(root, "unreadable"), 0o311)  # search, but no listing
    lines = as_unprivileged_user(failures_not_missing, root) if os.geteuid() == 0 else failures_not_missing(root)
    assert len(lines) == 13, lines
    for line in lines:
        assert ": PermissionDenied " in line, line
        assert root in line, line


@pytest.mark.parametrize(
    "code, cls, temporary",
    [
        (errno.EIO, BackendConnectionError, True),
        (errno.ESTALE, BackendConnectionError, True),
        (errno.ETIMEDOUT, BackendTimeout, True),
        (errno.EAGAIN, BackendUnavailable, True),
        (errno.EBUSY, BackendUnavailable, True),
        (errno.ENOSPC, BackendError, False),
        (errno.EDQUOT, BackendError, False),
        (errno.EACCES, PermissionDenied, False),
        (errno.EROFS, PermissionDenied, False),
        (errno.ELOOP, BackendError, False),
        (errno.ENOENT, ObjectNotFound, False),
    ],
)
def test_each_errno_gets_the_class_every_backend_gives_it(code, cls, temporary):
    """os_error maps through the toolkit's errno table (docs/errors.md): the class and whether to
    try again; the message names the operation, the item, the path and the errno."""
    error = os_error(OSError(code, os.strerror(code)), "store 'data/00/item'", "/srv/store/data/00/item")
    assert type(error) is cls
    assert error.temporary is temporary and error.maybe_applied is False
    text = str(error)
    assert text.startswith("store 'data/00/item': ")
    assert "(/srv/store/data/00/item)" in text and f"[{errno.errorcode[code]}]" in text
    if code == errno.ELOOP:
        assert "symbolic link" in text
    elif cls is PermissionDenied:
        assert "denied access" in text


def test_a_temporary_failure_of_a_change_may_have_been_applied():
    """A change that failed with a temporary errno (EIO of a network file system whose server
    stopped answering) may have happened: maybe_applied, so a retry looks before it repeats."""
    failed = os_error(OSError(errno.EIO, "I/O error"), "move 'a' to 'b'", mutation=True)
    assert failed.temporary and failed.maybe_applied
    permanent = os_error(OSError(errno.ENOSPC, "No space left on device"), "store 'a'", mutation=True)
    assert not permanent.temporary and not permanent.maybe_applied
