"""Stores are atomic: readers see the old or the new value, and a failed store leaves no trace."""

import os
import re
import resource
import signal
import threading

import pytest

from borgstore.backends.errors import BackendError


def all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def record_renames(monkeypatch) -> list:
    """Record each os.rename as (source, target, the directory it happened in) from now on."""
    renames = []
    real_rename = os.rename

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        assert src_dir_fd == dst_dir_fd, "a store renames within one directory"
        renames.append((src, dst, os.fstat(src_dir_fd)))
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "rename", rename)
    return renames


def test_temp_file_is_in_the_target_directory_and_renamed_into_place(backend, root, monkeypatch):
    """The value is written to a '<name>.<random>.tmp' file beside the target and renamed over it."""
    backend.mkdir("data/00")
    renames = record_renames(monkeypatch)
    backend.store("data/00/0011", b"x")
    [(temp, final, directory)] = renames
    assert final == "0011"
    assert os.path.samestat(directory, os.stat(os.path.join(root, "data", "00")))
    assert re.fullmatch(r"0011\.[0-9a-f]{13,}\.tmp", temp)  # toolkit.temp_name: 12 hex of prefix, a counter
    assert os.listdir(os.path.join(root, "data", "00")) == ["0011"]


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


def test_a_forked_child_uses_other_temp_names(backend, monkeypatch):
    """A forked child storing the same name as its parent writes another temp file."""
    renames = record_renames(monkeypatch)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            backend.store("data/item", b"child")
            os.write(write_end, renames[0][0].encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_temp = pipe.read().decode()
    os.waitpid(pid, 0)
    backend.store("data/item", b"parent")
    assert child_temp.startswith("item.") and child_temp != renames[0][0]
