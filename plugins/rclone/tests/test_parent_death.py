"""An application that dies without stopping its rclone (SIGKILL, a crash) does not leave it running.

Real rclone, real processes: a child Python process opens a store and reports its rclone's pid,
the test kills the child and watches that pid disappear."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from borgstore_backend_rclone import rclone_backend_from_url

GONE_WITHIN = 10.0  # seconds; a generous bound: rclone stops on SIGTERM in milliseconds


def process_state(pid: int):
    """The state letter of *pid* in /proc (e.g. "S", "Z"), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def is_running(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state != "Z"


def wait_until_gone(pid: int, bound: float = GONE_WITHIN) -> bool:
    """Poll until *pid* is gone or a zombie; False if it still runs after *bound* seconds."""
    deadline = time.monotonic() + bound
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill_leftover(pid: int):
    # a failing test must not leave an rclone behind for the next ones
    if is_running(pid):
        os.kill(pid, signal.SIGKILL)


def group_members(pgid: int) -> list:
    """Live processes in process group *pgid*."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid and is_running(int(entry)):
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture
def application(rclone_binary, store_path):
    """Start a child Python process running *body* (with ``b``, an unopened rclone backend on
    store_path); return it and the lines it printed before it stopped to wait."""
    started = []

    def start(body: str):
        store_path.mkdir(exist_ok=True)
        header = textwrap.dedent(
            f"""
            import sys, threading, time
            from borgstore_backend_rclone import rclone_backend_from_url
            b = rclone_backend_from_url({f"rclone:{store_path}"!r})
            """
        )
        program = header + textwrap.dedent(body) + 'print("ready", flush=True)\ntime.sleep(120)\n'
        app = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
        started.append(app)
        lines = []
        for line in app.stdout:
            if line.strip() == "ready":
                return app, lines
            lines.append(line.strip())
        app.wait(timeout=60)
        pytest.fail(f"the application stopped early (exit {app.returncode}); it printed {lines}")

    yield start
    for app in started:
        if app.poll() is None:
            app.kill()
        app.wait()
        app.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_rclone_dies_with_an_application_killed_by_any_signal(application, sig):
    """The application is killed by a signal that runs none of its own clean-up; its rclone stops
    and so does the watchdog that stopped it (the whole process group rclone ran in empties)."""
    app, lines = application(
        """
        b.open()
        b.store("data/x", b"x")
        print(b.pid, flush=True)
        """
    )
    rclone_pid = int(lines[0])
    group = os.getpgid(rclone_pid)
    assert is_running(rclone_pid)
    try:
        app.send_signal(sig)
        assert app.wait(timeout=60) == -sig
        assert wait_until_gone(rclone_pid), f"rclone {rclone_pid} still runs after its application was killed"
        # the watchdog gives rclone 5 s to stop before it ends the group with SIGKILL
        deadline = time.monotonic() + GONE_WITHIN + 5
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(group) == []
    finally:
        kill_leftover(rclone_pid)


def test_a_store_opened_by_a_thread_that_ended_keeps_its_rclone(application, store_path):
    """The thread that started rclone has exited but the process lives on: rclone keeps serving
    (a parent-death signal tied to that thread would have stopped it); when the process is then
    killed, rclone stops."""
    app, lines = application(
        """
        opener = threading.Thread(target=b.open)
        opener.start()
        opener.join()
        print(b.pid, flush=True)
        time.sleep(0.5)  # a signal fired at the thread's exit would have arrived by now
        b.store("data/after-thread", b"still served")
        print(b.load("data/after-thread").decode(), flush=True)
        print(b.pid, flush=True)
        """
    )
    rclone_pid = int(lines[0])
    try:
        assert lines[1] == "still served"
        assert int(lines[2]) == rclone_pid  # the same rclone: it was never restarted
        assert is_running(rclone_pid)
        assert (store_path / "data/after-thread").read_bytes() == b"still served"
        app.kill()
        app.wait(timeout=60)
        assert wait_until_gone(rclone_pid)
    finally:
        kill_leftover(rclone_pid)


def test_a_restarted_rclone_is_guarded_too(application):
    """rclone dies and the next operation (through retry, as in a Store) starts a new one: the
    new one also stops with the application."""
    app, lines = application(
        """
        import os, signal
        from borgstore import build_chain
        b.open()
        first = b.pid
        os.kill(first, signal.SIGKILL)
        build_chain(b, ["retry"]).store("data/x", b"after the restart")
        print(first, flush=True)
        print(b.pid, flush=True)
        """
    )
    first, second = int(lines[0]), int(lines[1])
    try:
        assert second != first
        assert is_running(second)
        app.kill()
        app.wait(timeout=60)
        assert wait_until_gone(second)
    finally:
        kill_leftover(second)


def test_rclone_and_its_watchdog_are_outside_the_applications_process_group(backend):
    """The terminal's Ctrl-C goes to the application's process group; rclone is not in it."""
    assert os.getpgid(backend.pid) != os.getpgrp()


def test_open_close_cycles_leave_no_watchdog(rclone_binary, store_path, child_pids):
    """close() stops the watchdog too and reaps it: no child process of any kind is left, not
    even a zombie; and a close from a thread other than the opener's works the same."""
    store_path.mkdir()
    before = child_pids()
    b = rclone_backend_from_url(f"rclone:{store_path}")
    for i in range(5):
        b.open()
        b.store(f"data/{i}", b"x")
        if i % 2:
            closer = threading.Thread(target=b.close)
            closer.start()
            closer.join()
        else:
            b.close()
        assert child_pids() == before
