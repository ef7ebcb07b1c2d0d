"""What concerns writers: store_new (write only where nothing is, atomically), list_temp, and the
stale temp items of killed writers, which Store.remove_stale_temps() removes.

Racing writers run as threads on one backend and as processes with a backend each, against the
same real sshd; the killed writer is a real process killed with SIGKILL in the middle of a store.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from borgstore_backend_sftp import _protocol as p
from borgstore_backend_sftp import sftp_backend_from_url

from borgstore import Store
from borgstore.backends.errors import BackendError, ObjectAlreadyExists
from borgstore.backends.toolkit import temp_name


def disk_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def spy_on_requests(monkeypatch) -> list:
    """Record the type of every request sent (the requests still go to the real server)."""
    kinds = []
    real_send = p.Session.send

    def send(session, kind, *parts):
        kinds.append((kind, bytes(parts[0][4:]) if kind == p.EXTENDED else None))
        return real_send(session, kind, *parts)

    monkeypatch.setattr(p.Session, "send", send)
    return kinds


# --- store_new ---


def test_store_new_writes_once_and_refuses_an_existing_item(backend, location, monkeypatch):
    """store_new stores a new name (its directory made on the way) with a plain SFTP RENAME, not
    posix-rename (which would replace); an existing item raises ObjectAlreadyExists, keeps its
    value, and no temp file is left."""
    kinds = spy_on_requests(monkeypatch)
    backend.store_new("n/x", b"first")
    assert (p.RENAME, None) in kinds
    assert not [k for k in kinds if k == (p.EXTENDED, b"posix-rename@openssh.com")]
    assert backend.load("n/x") == b"first"
    with pytest.raises(ObjectAlreadyExists, match="n/x"):
        backend.store_new("n/x", b"second")
    backend.store("n/y", b"by store")
    with pytest.raises(ObjectAlreadyExists):
        backend.store_new("n/y", b"other")
    assert backend.load("n/x") == b"first" and backend.load("n/y") == b"by store"
    assert disk_files(location.local) == ["n/x", "n/y"]


def test_store_new_onto_a_directory_fails_and_writes_nothing(backend, location):
    """A directory of that name is no item, but nothing can be stored there either: a permanent
    BackendError (not ObjectAlreadyExists), and no temp file is left."""
    backend.mkdir("d/sub")
    with pytest.raises(BackendError) as excinfo:
        backend.store_new("d/sub", b"value")
    assert not isinstance(excinfo.value, ObjectAlreadyExists) and not excinfo.value.temporary
    assert disk_files(location.local) == []


@pytest.mark.parametrize("custom_sshd", [{"sftp_options": "-P posix-rename"}], indirect=True)
def test_store_new_without_posix_rename(custom_sshd, tmp_path):
    """store_new does not need posix-rename@openssh.com: it works the same on a server without it."""
    root = tmp_path / "store"
    backend = sftp_backend_from_url(custom_sshd.url("//" + str(root), alias=False), **custom_sshd.backend_options())
    backend.create()
    backend.open()
    backend.store_new("x", b"1")
    with pytest.raises(ObjectAlreadyExists):
        backend.store_new("x", b"2")
    assert (root / "x").read_bytes() == b"1" and disk_files(root) == ["x"]
    backend.close()


def _race_in_threads(backend, name, threads_per_round, round_number) -> dict:
    """{thread index: ("won", value) or ("exists", None) or ("error", text)} of threads calling
    store_new(name) at once."""
    barrier = threading.Barrier(threads_per_round, timeout=60)
    outcomes = {}

    def race(index):
        value = f"thread {index} round {round_number} ".encode() * 1000
        barrier.wait()
        try:
            backend.store_new(name, value)
            outcomes[index] = ("won", value)
        except ObjectAlreadyExists:
            outcomes[index] = ("exists", None)
        except Exception as exc:  # noqa: BLE001 (reported by the caller, with the thread's number)
            outcomes[index] = ("error", repr(exc))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(threads_per_round)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_racing_threads_on_one_new_name_exactly_one_wins(backend, location):
    """Threads calling store_new on one new name at once, several rounds: exactly one succeeds
    per round, the others get ObjectAlreadyExists, and the item holds the winner's value."""
    threads_per_round = 6
    for round_number in range(8):
        name = f"race/{round_number}"
        outcomes = _race_in_threads(backend, name, threads_per_round, round_number)
        winners = [value for outcome, value in outcomes.values() if outcome == "won"]
        assert sorted(o for o, _ in outcomes.values()) == ["exists"] * (threads_per_round - 1) + ["won"], outcomes
        assert backend.load(name) == winners[0]
    assert not [f for f in disk_files(location.local) if f.endswith(".tmp")]


def _race_in_a_process(url, options, index, rounds, barrier, results):
    """One racing process: its own backend, store_new on race/<round> each round."""
    backend = sftp_backend_from_url(url, **options)
    backend.open()
    try:
        for round_number in range(rounds):
            value = f"process {index} round {round_number} ".encode() * 1000
            barrier.wait()
            try:
                backend.store_new(f"race/{round_number}", value)
                results.put((round_number, index, "won"))
            except ObjectAlreadyExists:
                results.put((round_number, index, "exists"))
            except Exception as exc:  # noqa: BLE001 (the parent reports it)
                results.put((round_number, index, f"error {exc!r}"))
    finally:
        backend.close()


def test_racing_processes_on_one_new_name_exactly_one_wins(absolute_location):
    """Processes, each with its own backend and connection, racing store_new on one new name,
    several rounds: exactly one wins each round, and the item holds its value."""
    processes, rounds = 4, 8
    backend = absolute_location.backend()
    backend.create()
    backend.open()
    context = multiprocessing.get_context("spawn")  # no fork of a process with paramiko's threads
    barrier = context.Barrier(processes, timeout=120)
    results = context.Queue()
    options = absolute_location.server.backend_options()
    workers = [
        context.Process(target=_race_in_a_process, args=(absolute_location.url, options, i, rounds, barrier, results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=180) for _ in range(processes * rounds)]
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    for round_number in range(rounds):
        got = sorted((outcome, index) for r, index, outcome in outcomes if r == round_number)
        assert [outcome for outcome, _ in got] == ["exists"] * (processes - 1) + ["won"], got
        winner = got[-1][1]
        assert backend.load(f"race/{round_number}") == f"process {winner} round {round_number} ".encode() * 1000
    assert not [f for f in disk_files(absolute_location.local) if f.endswith(".tmp")]
    backend.close()


# --- list_temp ---


def test_list_temp_finds_temp_items_at_any_depth(backend, location):
    """list_temp(d): every .tmp file below d, named relative to d, with its mtime; nothing else
    (no items, no directories); a missing directory or an item's name yields nothing."""
    local = location.local
    for relative in ("data/a.tmp", "data/00/b.x1.tmp", "data/00/11/c.tmp", "top.tmp"):
        (local / relative).parent.mkdir(parents=True, exist_ok=True)
        (local / relative).write_bytes(b"partial")
    (local / "data/00/item").write_bytes(b"an item")
    (local / "data/dir.tmp").mkdir()  # a directory is no temp item
    now = time.time()
    found = {info.name: info for info in backend.list_temp("data")}
    assert sorted(found) == ["00/11/c.tmp", "00/b.x1.tmp", "a.tmp"]
    assert all(not info.directory and info.size == 7 and abs(info.mtime - now) < 600 for info in found.values())
    assert sorted(info.name for info in backend.list_temp("")) == [
        "data/00/11/c.tmp",
        "data/00/b.x1.tmp",
        "data/a.tmp",
        "top.tmp",
    ]
    assert [info.name for info in backend.list_temp("data/00/11")] == ["c.tmp"]
    assert list(backend.list_temp("no/such/dir")) == []
    assert list(backend.list_temp("data/00/item")) == []


def test_list_temp_reads_a_level_of_directories_in_a_few_round_trips(backend, location):
    """300 directories with a temp file each: list_temp reads each level's directories with
    their requests in flight together, not two round trips per directory."""
    for i in range(300):
        directory = location.local / f"{i:03x}"
        directory.mkdir(parents=True)
        (directory / "w.tmp").write_bytes(b"x")
    (session,) = backend._pool.connection.idle
    before = session.round_trips
    assert len(list(backend.list_temp(""))) == 300
    # the root (300 entries, 100 per READDIR): 3; 300 directories in 2 batches: 2 each (two
    # round trips per directory, one after the other, would be 600)
    assert session.round_trips - before <= 10


# --- stale temp items of killed writers ---


def make_store(location) -> Store:
    return Store(location.url, config={"data/": {"levels": [1]}}, backend_options=location.server.backend_options())


def test_stale_temps_of_a_writer_are_removed_and_counted(absolute_location):
    """Temp files of the toolkit's temp-name form, as a killed writer leaves them beside its
    target (written on the server's file system): a young one stays with the default age, all go
    with older_than=0, and Store.stats counts what was removed."""
    store = make_store(absolute_location)
    store.create()
    with store:
        store.store("data/ab01", b"kept")
        local = absolute_location.local
        temps = [local / temp_name("data/a/ab02"), local / temp_name("data/b/bc03"), local / temp_name("top")]
        for temp in temps:
            temp.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(b"half a value")
        old = time.time() - 7200
        os.utime(temps[0], (old, old))
        assert store.remove_stale_temps() == 1  # only the one two hours old
        assert not temps[0].exists() and temps[1].exists() and temps[2].exists()
        assert store.remove_stale_temps(older_than=0) == 2
        assert not any(temp.exists() for temp in temps)
        assert store.stats["stale_temps_removed"] == 3
        assert store.load("data/ab01") == b"kept"
        assert not [f for f in disk_files(local) if f.endswith(".tmp")]


WRITER = """
import os, sys
from borgstore import Store
store = Store(sys.argv[1], config={"data/": {"levels": [1]}}, backend_options={"ssh_config": sys.argv[2], "use_agent": False})
store.open()
print("open", flush=True)
store.store("data/ff00", os.urandom(256 * 1024 * 1024))
print("stored", flush=True)
"""


def test_a_writer_killed_mid_store_leaves_a_temp_that_remove_stale_temps_removes(absolute_location):
    """A real writer process is killed (SIGKILL) in the middle of storing a large value: its temp
    file stays on the server, young (kept by the default age), and remove_stale_temps(older_than=0)
    removes it and counts it; the target never appeared."""
    store = make_store(absolute_location)
    store.create()
    local = absolute_location.local
    server = absolute_location.server
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, absolute_location.url, str(server.ssh_config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "open"
        deadline = time.monotonic() + 60
        partial = []
        while not partial and time.monotonic() < deadline:
            partial = [p for p in local.rglob("*.tmp") if p.stat().st_size >= 1 << 20]
            time.sleep(0.002)
        assert partial, "the writer never started writing"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert not (local / "data/f/ff00").exists()
    with store:
        assert store.remove_stale_temps() == 0  # young: it could be a live writer's
        assert list(local.rglob("*.tmp"))
        assert store.remove_stale_temps(older_than=0) == 1
        assert store.stats["stale_temps_removed"] == 1
    assert not list(local.rglob("*.tmp"))
