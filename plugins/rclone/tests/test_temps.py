"""Temp items: list_temp finds every .tmp item (the Store's stale-temp clean-up uses it), and the
temp a killed writer left on the remote is removed by Store.remove_stale_temps()."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from borgstore import Store
from borgstore.backends.toolkit import temp_name

HOUR = 3600.0


def temps_under(path) -> list:
    """The .tmp files below *path*, by path relative to it."""
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files if f.endswith(".tmp")
    )


def put_temp(store_path, name: str, age: float = 0.0) -> str:
    """A temp item of *name*'s temp-name form written straight into the store's directory, last
    changed *age* seconds ago (as a writer that died left it); return its backend name."""
    temp = temp_name(name)
    path = store_path / temp
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return temp


def test_list_temp_finds_every_temp_at_any_depth_and_nothing_else(backend, store_path):
    """list_temp(name) yields each .tmp item below directory name, at any depth, named relative
    to it, with the storage's mtime; items, directories named *.tmp and temps elsewhere are not
    yielded; list() and list_tree() never show temps."""
    backend.store("data/00/item", b"x")
    backend.store("config", b"c")
    backend.mkdir("data/odd.tmp")
    deep = put_temp(store_path, "data/00/item", age=2 * HOUR)
    shallow = put_temp(store_path, "data/new")
    top = put_temp(store_path, "config")
    before = time.time()
    everything = {info.name: info for info in backend.list_temp("")}
    assert sorted(everything) == sorted([deep, shallow, top])
    assert all(info.exists and not info.directory and info.size == 7 for info in everything.values())
    assert before - 2 * HOUR - 60 < everything[deep].mtime < before - 2 * HOUR + 60
    assert before - 60 < everything[shallow].mtime <= time.time() + 60
    below_data = sorted(info.name for info in backend.list_temp("data"))
    assert below_data == sorted([deep[len("data/") :], shallow[len("data/") :]])
    assert [info.name for info in backend.list_temp("data/00")] == [deep[len("data/00/") :]]
    assert not [i for i in backend.list_tree("") if i.name.endswith(".tmp")]
    assert [i.name for i in backend.list("data/00")] == ["item"]


def test_list_temp_of_a_missing_directory_or_an_item_yields_nothing(backend):
    """No directory there (or an item of that name): no temps, no error."""
    backend.store("item", b"x")
    assert list(backend.list_temp("missing")) == []
    assert list(backend.list_temp("missing/deeper")) == []
    assert list(backend.list_temp("item")) == []
    assert list(backend.list_temp("")) == []


def test_the_backend_does_not_declare_store_new(backend):
    """rclone cannot create an item only if absent, atomically, on every remote: no store_new."""
    assert not backend.capabilities.store_new
    assert not hasattr(backend, "store_new")


@pytest.fixture
def killed_writer(rclone_binary, store_path):
    """Run a writer process that stores 4 MiB items through its own rclone, throttled to 1 MB/s
    (RCLONE_BWLIMIT) so that an upload takes seconds; once its temp item is on disk, stop the
    writer, kill its rclone (SIGKILL: no clean-up) and then the writer.  Return the temp left."""
    store_path.mkdir(exist_ok=True)
    program = textwrap.dedent(
        f"""
        import os
        from borgstore_backend_rclone import rclone_backend_from_url
        b = rclone_backend_from_url({f"rclone:{store_path}"!r})
        b.open()
        print(b.pid, flush=True)
        while True:
            b.store("data/00/big", os.urandom(4 * 1024 * 1024))
        """
    )
    env = dict(os.environ, RCLONE_BWLIMIT="1M")
    writer = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, env=env)
    rclone_pid = None
    try:
        rclone_pid = int(writer.stdout.readline())
        deadline = time.monotonic() + 60
        while not temps_under(store_path):
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never started an upload"
            time.sleep(0.01)
        # stopped first: a writer that saw its rclone die would remove its temp (or start anew)
        os.kill(writer.pid, signal.SIGSTOP)
        os.kill(rclone_pid, signal.SIGKILL)
        writer.kill()
        writer.wait()
        yield temps_under(store_path)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()


def test_a_killed_writers_temp_is_removed_as_stale_and_a_fresh_one_is_kept(killed_writer, store_path):
    """The temp of a writer killed in the middle of a store stays on the remote; the Store's
    clean-up keeps it while it is younger than older_than (a live writer's could be that young)
    and removes older ones, counting them; older_than=0 then takes the killed writer's too."""
    assert len(killed_writer) == 1 and killed_writer[0].startswith("data/00/big.")
    old = put_temp(store_path, "data/01/gone", age=2 * HOUR)
    store = Store(f"rclone:{store_path}", config={"data/": {"levels": [2]}})
    with store:
        assert store.remove_stale_temps(older_than=HOUR) == 1
        assert temps_under(store_path) == killed_writer
        assert old not in temps_under(store_path)
        assert store.stats["stale_temps_removed"] == 1
        assert store.remove_stale_temps(older_than=0) == 1
        assert temps_under(store_path) == []
        assert store.stats["stale_temps_removed"] == 2
        assert store.remove_stale_temps(older_than=0) == 0
