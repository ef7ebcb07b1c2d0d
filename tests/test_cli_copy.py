"""`borgstore copy` as users run it: real processes, a real sshd, real rclone, a pseudo-terminal."""

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios

import pytest

from borgstore import _plugins
from borgstore.constants import QUOTA_STORE_NAME
from borgstore.store import Store

from .test_copy import tree, without_temps

CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [2]}}
#: seconds a command may take before the test gives up on it (a hang, not a timing assertion)
LIMIT = 300


def make_store(path, items: int, size: int = 300) -> str:
    """A BorgBackup-style store: two-level nesting, a flat namespace, soft-deleted items,
    quota.hid, an empty nesting directory and a temp item a dead writer left behind."""
    store = Store(f"file://{path}", config=CONFIG, quota=10**9)
    store.create()
    with store:
        store.store("config/manifest", b"manifest")
        for i in range(items):
            store.store(f"data/{i:04x}" + "cd" * 30, os.urandom(size + i))
        for i in range(0, items, 5):
            store.move(f"data/{i:04x}" + "cd" * 30, delete=True)
    os.makedirs(path / "data" / "ff" / "ff")
    (path / "data" / "00" / "00" / ("0000" + "cd" * 30 + ".tmp")).write_bytes(b"a dead writer's half")
    return f"file://{path}"


def borgstore(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "borgstore", *args],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        env=env,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _needs_posixfs(file_backend):
    """Every test here has a file: store at one end."""


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, skip_or_fail_ci):
    """A real OpenSSH sshd on 127.0.0.1, and an environment whose ~/.ssh/config leads to it."""
    if "sftp" not in _plugins.backends():
        skip_or_fail_ci("the sftp plugin (borgstore-backend-sftp) is not installed")
    from borgstore_backend_sftp.testserver import TestSSHServer, find_sshd

    if find_sshd() is None:
        skip_or_fail_ci("OpenSSH sshd is not installed (apt-get install openssh-server)")
    workdir = tmp_path_factory.mktemp("sshd")
    server = TestSSHServer(workdir / "server")
    server.start()
    home = workdir / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(server.ssh_config, home / ".ssh" / "config")
    env = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}
    env["HOME"] = str(home)
    server.client_env = env
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rclone(skip_or_fail_ci):
    """rclone is installed and usable, with its plugin."""
    if "rclone" not in _plugins.backends():
        skip_or_fail_ci("the rclone plugin (borgstore-backend-rclone) is not installed")
    from borgstore.backends.errors import BackendNotInstalled
    from borgstore_backend_rclone._daemon import check_version, find_binary

    try:
        check_version(find_binary())
    except BackendNotInstalled as exc:
        skip_or_fail_ci(f"no usable rclone: {exc}")


def test_file_to_sftp_to_rclone_and_back_reproduces_the_store(tmp_path, sshd, rclone):
    """file -> sftp -> rclone, then a --verify copy back to file: the same tree byte for byte, no temp item."""
    source = make_store(tmp_path / "a", items=40)
    on_sftp = tmp_path / "sftp"
    sftp_url = sshd.url("/" + str(on_sftp))
    steps = [
        (source, sftp_url, []),
        (sftp_url, f"rclone:{tmp_path}/b", ["--transfers", "3"]),
        (f"rclone:{tmp_path}/b", f"file://{tmp_path}/c", ["--verify"]),
    ]
    expected = without_temps(tree(tmp_path / "a"))
    for src, dst, options in steps:
        done = borgstore("copy", "--json", *options, src, dst, env=sshd.client_env)
        assert done.returncode == 0, done.stderr
        summary = json_lines(done.stdout)[-1]
        assert (summary["event"], summary["copied"], summary["failed"]) == ("summary", 42, 0)
        assert summary["mismatches"] == []
    for copy in (on_sftp, tmp_path / "b", tmp_path / "c"):
        assert tree(copy) == expected
    assert any(name.endswith(".del") for name in expected) and QUOTA_STORE_NAME in expected
    assert expected["data/ff/ff"] is None  # the empty nesting directory travelled too


def run_until_first_progress(command: list, env) -> tuple:
    """Start *command*, send SIGINT once its first JSON progress event arrives; return (exit
    status, events)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events, sent = [], False
    try:
        for line in process.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "progress" and not sent:
                process.send_signal(signal.SIGINT)
                sent = True
        process.wait(timeout=LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert sent, events
    return process.returncode, events, process.stderr.read()


def test_interrupted_copy_resumes_without_copying_anything_twice(tmp_path, sshd):
    """SIGINT mid-copy exits 130 with a summary and nothing partial; the rerun copies exactly the rest."""
    source = make_store(tmp_path / "a", items=400, size=4000)
    destination = tmp_path / "sftp"
    command = [sys.executable, "-m", "borgstore", "copy", "--json", "--progress-interval", "0", "--transfers", "2"]
    command += [source, sshd.url("/" + str(destination))]
    status, events, stderr = run_until_first_progress(command, sshd.client_env)
    assert status == 130, stderr
    first = events[-1]
    assert first["event"] == "summary" and first["interrupted"] and first["failed"] == 0
    assert any(event["event"] == "interrupted" for event in events)
    assert 1 <= first["copied"] < first["items"], "the copy finished before the interrupt arrived"
    assert first["not_started"] == first["items"] - first["copied"]
    # nothing partial: no temp item, and every item there is complete
    source_tree, copied = tree(tmp_path / "a"), tree(destination)
    assert not [name for name in copied if name.endswith(".tmp")]
    assert {name: data for name, data in copied.items() if data is not None} == {
        name: source_tree[name] for name, data in copied.items() if data is not None
    }
    assert QUOTA_STORE_NAME not in copied  # it travels last, only with everything else
    done = borgstore("copy", "--json", *command[-2:], env=sshd.client_env)
    assert done.returncode == 0, done.stderr
    second = json_lines(done.stdout)[-1]
    assert second["copied"] + first["copied"] == second["items"] == first["items"]
    assert second["skipped"] == first["copied"]
    assert tree(destination) == without_temps(source_tree)


def under_a_terminal(command: list, env=None) -> tuple:
    """Run *command* with stderr on a pseudo-terminal 120 columns wide; return (status, what
    the terminal showed, stdout)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, env=env)
    os.close(terminal)
    shown = b""
    while True:
        ready, _, _ = select.select([controller], [], [], LIMIT)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    out = process.stdout.read()
    process.wait(timeout=LIMIT)
    return process.returncode, shown.decode(errors="replace"), out


def test_progress_bar_on_a_terminal(tmp_path, skip_or_fail_ci):
    """On a terminal copy shows a tqdm bar with percentage, bytes, items, elapsed<remaining and rate."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        skip_or_fail_ci("tqdm is not installed (pip install 'borgstore[cli]')")
    source = make_store(tmp_path / "a", items=30)
    status, shown, out = under_a_terminal([sys.executable, "-m", "borgstore", "copy", source, f"file://{tmp_path}/b"])
    assert status == 0, shown
    final = shown.replace("\r", "\n").splitlines()
    bars = [line for line in final if line.startswith("copy ")]
    assert re.fullmatch(
        r"copy 100%\|█+\| [\d.]+ ?[kMG]?B/[\d.]+ ?[kMG]?B, 32/32 items \[\d\d:\d\d<\d\d:\d\d, [\d.]+ ?[kMG]?B/s\]",
        bars[-1].strip(),
    ), bars
    assert "copied 32 of 32 items" in shown and out == b""


def test_plain_progress_lines_on_a_terminal_without_tqdm(tmp_path):
    """Without tqdm a terminal gets plain progress lines (items, bytes, rate, ETA) and the summary."""
    source = make_store(tmp_path / "a", items=10)
    hide_tqdm = "import sys; sys.modules['tqdm'] = None; from borgstore._cli import main; sys.exit(main())"
    command = [sys.executable, "-c", hide_tqdm, "copy", "--progress-interval", "0", source, f"file://{tmp_path}/b"]
    status, shown, _ = under_a_terminal(command)
    assert status == 0, shown
    lines = shown.replace("\r", "").splitlines()
    assert "listing the source ..." in lines and "copying 12 items (" in shown
    progress = [line for line in lines if re.fullmatch(r"\d+/12 items, \S+ \S*B/\S+ \S*B, \S+ \S*B/s, ETA \S+ s", line)]
    assert [int(line.split("/")[0]) for line in progress] == list(range(1, 13))
    assert "copied 12 of 12 items" in shown


def test_json_lines_without_a_terminal_and_quiet_by_default(tmp_path):
    """Off a terminal: --json prints start, progress and summary events on stdout; else only the summary, on stderr."""
    source = make_store(tmp_path / "a", items=10)
    done = borgstore("copy", "--json", "--progress-interval", "0", source, f"file://{tmp_path}/b")
    assert done.returncode == 0 and done.stderr == ""
    events = json_lines(done.stdout)
    kinds = [event["event"] for event in events]
    assert kinds[:3] == ["listing", "listing", "start"] and kinds[-1] == "summary"
    assert events[2]["items"] == 12 and events[2]["bytes"] == sum(
        len(data) for data in without_temps(tree(tmp_path / "a")).values() if data is not None
    )
    progress = [event for event in events if event["event"] == "progress"]
    assert [event["items_done"] for event in progress] == list(range(1, 13))
    assert {"bytes_done", "rate", "eta", "seconds"} <= set(progress[-1])
    quiet = borgstore("copy", source, f"file://{tmp_path}/c")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert quiet.stderr.startswith("copied 12 of 12 items")


def test_dry_run_changes_nothing(tmp_path):
    """--dry-run says what would be copied and leaves the destination as it was (or absent)."""
    source = make_store(tmp_path / "a", items=10)
    done = borgstore("copy", "--dry-run", source, f"file://{tmp_path}/b")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "b").exists()
    assert "dry run: would copy 12 of 12 items" in done.stderr and "nothing was changed" in done.stderr
    borgstore("copy", source, f"file://{tmp_path}/b")
    victim = next(path for path in (tmp_path / "b" / "data").rglob("*") if path.is_file())
    victim.unlink()
    before = tree(tmp_path / "b")
    done = borgstore("copy", "-n", "--json", source, f"file://{tmp_path}/b")
    assert tree(tmp_path / "b") == before
    summary = json_lines(done.stdout)[-1]
    assert (summary["dry_run"], summary["copied"], summary["skipped"]) == (True, 1, 11)


def test_verify_names_a_corrupted_destination_item(tmp_path):
    """A flipped byte at the destination: --verify names the item and exits 1; it is replaced, the next run is clean."""
    source = make_store(tmp_path / "a", items=10)
    borgstore("copy", source, f"file://{tmp_path}/b")
    victim = sorted(path for path in (tmp_path / "b" / "data").rglob("*") if path.is_file())[3]
    data = bytearray(victim.read_bytes())
    data[7] ^= 0x40
    victim.write_bytes(bytes(data))
    name = str(victim.relative_to(tmp_path / "b"))
    done = borgstore("copy", "--verify", source, f"file://{tmp_path}/b")
    assert done.returncode == 1
    assert f"verify mismatch: {name}: the destination held other content (same size): replaced" in done.stderr
    assert f"verify: 1 mismatch(es): {name}" in done.stderr
    again = borgstore("copy", "--verify", source, f"file://{tmp_path}/b")
    assert again.returncode == 0 and "skipped 12 already at the destination" in again.stderr


def test_usage_errors_exit_2_and_change_nothing(tmp_path):
    """A bad --transfers, a store copied into itself, a missing source: exit 2 with a message, nothing made."""
    bad = borgstore("copy", "--transfers", "0", "file:///x", f"file://{tmp_path}/b")
    assert bad.returncode == 2 and "--transfers: must be a whole number >= 1" in bad.stderr
    nested = borgstore("copy", f"file://{tmp_path}/a", f"file://{tmp_path}/a/b")
    assert nested.returncode == 2 and "error: one store lies inside the other" in nested.stderr
    missing = borgstore("copy", f"file://{tmp_path}/a", f"file://{tmp_path}/b")
    assert missing.returncode == 2 and "error: the source file://" in missing.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "a").exists()


def test_help_shows_every_option():
    """`borgstore copy --help` lists every option and the exit statuses."""
    shown = borgstore("copy", "--help").stdout
    for option in ("--transfers", "--verify", "--dry-run", "--json", "--progress-interval", "130 interrupted"):
        assert option in shown
