"""Stores are atomic: readers see the old or the new value, and a failed store leaves no trace."""

import os
import resource
import signal
import threading

import pytest

from borgstore.backends.errors import BackendError
from borgstore_backend_posixfs import PosixFSBackend


def all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_temp_file_is_in_the_target_directory_and_renamed_into_place(backend, root, monkeypatch):
    """The value is written to a '.tmp' file beside the target and renamed over it."""
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda src, dst: (renames.append((src, dst)), real_rename(src, dst)))
    backend.store("data/00/0011", b"x")
    [(temp, final)] = renames
    assert final == os.path.join(root, "data", "00", "0011")
    assert os.path.dirname(temp) == os.path.dirname(final)
    assert temp.endswith(".tmp") and os.path.basename(temp).startswith("0011.")


def test_a_value_that_cannot_be_written_leaves_the_old_value_and_no_temp_file(backend, root):
    """A value without a buffer fails the write; the old item stays, no temp file remains."""

    class NoBuffer:
        def __len__(self):
            return 10

    backend.store("data/item", b"old")
    with pytest.raises(TypeError):
        backend.store("data/item", NoBuffer())
    assert backend.load("data/item") == b"old"
    assert all_files(root) == ["data/item"]


def test_an_interrupted_store_leaves_no_temp_file(backend, root, monkeypatch):
    """A KeyboardInterrupt during the write propagates unchanged and the temp file is removed."""

    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.store("data/item", b"value")
    monkeypatch.undo()
    assert all_files(root) == []


def test_a_write_failing_half_way_raises_backend_error_and_cleans_up(backend, root):
    """A write the kernel refuses half way (EFBIG from a file size limit) raises BackendError
    naming the item and the error; the old value stays and no temp file remains."""
    backend.store("data/item", b"old")
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
    try:
        with pytest.raises(BackendError, match=r"store 'data/item'.*EFBIG"):
            backend.store("data/item", b"x" * 5000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert backend.load("data/item") == b"old"
    assert all_files(root) == ["data/item"]


def test_readers_never_see_a_partial_value(backend):
    """Concurrent loads during overwrites always return one complete value."""
    values = [bytes([i]) * (256 * 1024) for i in (1, 2)]
    backend.store("data/item", values[0])
    stop = threading.Event()
    seen = []

    def read():
        while not stop.is_set():
            seen.append(backend.load("data/item"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            backend.store("data/item", values[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen and all(value in values for value in seen)


def test_concurrent_stores_from_threads_leave_one_value_and_no_temp_files(backend, root):
    """Threads storing into the same new directories at once all succeed; nothing is left over."""
    errors = []

    def work(n):
        try:
            for i in range(100):
                backend.store(f"data/{i % 7:02x}/{i:04x}", bytes([n]) * 100)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    files = all_files(root)
    assert len(files) == 100 and not any(f.endswith(".tmp") for f in files)


def test_a_forked_child_uses_other_temp_names():
    """After fork the child gets its own temp name prefix."""
    from borgstore_backend_posixfs import _backend

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write_end, _backend._temp.prefix.encode())
        os._exit(0)
    os.close(write_end)
    child_prefix = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_prefix and child_prefix != _backend._temp.prefix


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
