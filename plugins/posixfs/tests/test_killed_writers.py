"""A writer killed in the middle of a store leaves its temp file behind; the Store's maintenance
call removes it once it is old enough, and counts it.  The writers here are real processes,
killed with SIGKILL after their temp file is complete and before its rename (the child's
os.rename blocks, so the moment is certain, not a race the test hopes to win)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from borgstore import Store

CONFIG = {"data/": {"levels": [1]}}
VALUE_SIZE = 1 << 20

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from borgstore import Store

    def stuck_rename(*args, **kwargs):
        print("written", flush=True)
        time.sleep(3600)  # killed here: the temp file is complete, its rename never happens

    store = Store(sys.argv[1], config={"data/": {"levels": [1]}})
    store.open()
    os.rename = stuck_rename
    store.store("data/" + sys.argv[2], b"v" * int(sys.argv[3]))
    """
)


def kill_a_writer_mid_store(url: str, key: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, key, str(VALUE_SIZE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def temps(root: Path) -> list:
    return sorted(path for path in root.rglob("*.tmp"))


def test_temps_of_killed_writers_are_removed_when_old_and_counted(tmp_path):
    root = tmp_path / "store"
    url = f"file://{root}"
    store = Store(url, config=CONFIG)
    store.create()
    keys = [f"{i:02x}" + "ab" * 15 for i in (1, 2, 3)]
    for key in keys:
        kill_a_writer_mid_store(url, key)
    left = temps(root)
    assert len(left) == 3 and all(path.stat().st_size == VALUE_SIZE for path in left)
    with store:
        assert [store.info("data/" + key).exists for key in keys] == [False] * 3  # never acknowledged
        assert list(store.list("data")) == []  # temp items are never listed
        assert store.remove_stale_temps() == 0  # young: a writer may still be at work
        assert temps(root) == left
        time.sleep(0.05)
        assert store.remove_stale_temps(older_than=0.01) == 3
        assert store.stats["stale_temps_removed"] == 3
    assert temps(root) == []


def test_a_store_that_completed_is_never_taken_for_a_stale_temp(tmp_path):
    root = tmp_path / "store"
    url = f"file://{root}"
    store = Store(url, config=CONFIG)
    store.create()
    kill_a_writer_mid_store(url, "01" + "cd" * 15)
    with store:
        store.store("data/02" + "ef" * 15, b"kept")
        old = time.time() - 7200
        for path in root.rglob("*"):
            os.utime(path, (old, old))  # everything looks old: only the temp file may go
        assert store.remove_stale_temps() == 1
        assert store.load("data/02" + "ef" * 15) == b"kept"
