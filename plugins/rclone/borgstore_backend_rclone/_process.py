"""The rclone binary and the processes around it: finding and checking the binary, the watchdog
that stops rclone when the application dies, and stopping a process."""

import os
import re
import shutil
import subprocess
import sys
import threading

from borgstore.backends.errors import BackendConnectionError, BackendNotInstalled

BINARY_ENV = "RCLONE_BINARY"  # the same variable the PyPI borgstore reads
MIN_VERSION = (1, 60)
START_TIMEOUT = 30.0  # seconds; a cold start on a loaded machine can take a few seconds
STOP_TIMEOUT = 5.0
STDERR_TAIL = 2000  # characters of rclone's output quoted in an error message

# The watchdog: a shell that waits for EOF on its stdin, a pipe whose write end only the
# application holds, so EOF means the application is gone, whichever thread started rclone and
# however the application died.  It then stops its process group, which rclone joined at its start
# (SIGTERM; SIGKILL for whatever still runs 5 s later, the watchdog included).  The application
# stops it with SIGKILL, which it cannot trap, so a normal stop never signals the group.  It ignores
# the signals a terminal or a careless kill sends; /bin/sh (no interpreter) starts in ~0.2 ms.
WATCHDOG_SCRIPT = 'trap "" HUP INT TERM; while read -r _; do :; done; kill -TERM 0; sleep 5; kill -KILL 0'
WATCHDOG_NAME = "borgstore-rclone-watchdog"  # its $0, so that `ps` says what the shell is for

_version_cache: dict = {}
_version_lock = threading.Lock()


def find_binary() -> str:
    """Return the path of the rclone binary: $RCLONE_BINARY if set, else ``rclone`` on PATH."""
    configured = os.environ.get(BINARY_ENV)
    if configured:
        path = shutil.which(configured)
        if path is None:
            raise BackendNotInstalled(
                f"{BINARY_ENV}={configured!r} does not name an executable file; "
                f"point it at an rclone >= {_dotted(MIN_VERSION)} binary or unset it"
            )
        return path
    path = shutil.which("rclone")
    if path is None:
        raise BackendNotInstalled(
            f"the rclone binary was not found on PATH; install rclone >= {_dotted(MIN_VERSION)} "
            f"(e.g. apt-get install rclone) or set {BINARY_ENV} to its path"
        )
    return path


def _dotted(version) -> str:
    return ".".join(str(part) for part in version)


def rclone_version(binary: str) -> tuple:
    """Return rclone's version as a tuple of ints, asking each binary once per process."""
    try:
        st = os.stat(binary)
    except OSError as exc:
        raise BackendNotInstalled(f"cannot run rclone at {binary!r}: {exc.strerror}") from None
    key = (binary, st.st_mtime_ns, st.st_size)
    with _version_lock:
        if key in _version_cache:
            return _version_cache[key]
    try:
        done = subprocess.run(
            [binary, "version"],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_TIMEOUT,
            env=child_environment(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendNotInstalled(f"cannot run rclone at {binary!r}: {exc}") from None
    output = (done.stdout + done.stderr).decode(errors="replace")
    match = re.search(r"^rclone v(\d+)\.(\d+)(?:\.(\d+))?", output, re.MULTILINE)
    if done.returncode != 0 or match is None:
        found = output.strip()[:STDERR_TAIL] or f"exit status {done.returncode}, no output"
        raise BackendNotInstalled(f"{binary} does not look like rclone: `{binary} version` said: {found}")
    version = tuple(int(part or 0) for part in match.groups())
    with _version_lock:
        _version_cache[key] = version
    return version


def check_version(binary: str) -> tuple:
    version = rclone_version(binary)
    if version[:2] < MIN_VERSION:
        raise BackendNotInstalled(
            f"{binary} is rclone {_dotted(version)}, too old: borgstore-backend-rclone needs "
            f"rclone >= {_dotted(MIN_VERSION)}"
        )
    return version


def child_environment() -> dict:
    # An inherited RCLONE_RC_* setting (another address, htpasswd, no-auth, a web GUI) would change
    # how our rcd listens or whom it lets in, so none of them reach the child.
    return {key: value for key, value in os.environ.items() if not key.startswith("RCLONE_RC_")}


def in_group(pgid: int) -> dict:
    """Popen arguments that put the child in process group *pgid* (0: a new one of its own)."""
    if sys.version_info >= (3, 11):
        return {"process_group": pgid}
    return {"preexec_fn": lambda: os.setpgid(0, pgid)}  # only a system call between fork and exec


def start_watchdog():
    """Start the watchdog in a new process group, for rclone to join; see WATCHDOG_SCRIPT.

    A group of its own, not the application's: the terminal's Ctrl-C goes to the foreground group
    only, so it reaches the application and neither the watchdog nor rclone."""
    try:
        return subprocess.Popen(
            ["/bin/sh", "-c", WATCHDOG_SCRIPT, WATCHDOG_NAME],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": os.defpath},
            close_fds=True,
            **in_group(0),
        )
    except OSError as exc:
        raise BackendConnectionError(f"cannot start the watchdog for rclone rcd (/bin/sh): {exc}") from None


def stop_watchdog(watchdog):
    """Stop the watchdog without letting it signal its group, and reap it."""
    try:
        watchdog.kill()
    except OSError:
        pass
    watchdog.wait()
    watchdog.stdin.close()


def has_exited(process, grace: float = 2.0) -> bool:
    # A killed process closes its sockets a moment before it can be reaped (longer on a busy machine).
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return False
    return True


def exit_text(process) -> str:
    code = process.returncode
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"


def terminate(process, *, kill=False):
    """Stop *process* and reap it, politely first unless *kill* (a stopped process would not
    act on SIGTERM before it is continued)."""
    if process.poll() is None:
        try:
            if kill:
                process.kill()
            else:
                process.terminate()
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except OSError:
            pass
