"""The private ``rclone rcd`` child process and the HTTP connection to it.

One :class:`RcDaemon` is one rclone process, bound to 127.0.0.1 on a free port and protected by a
random user name and password that reach it through its environment (``ps`` shows command lines
to every user on the machine, environments only to the owner).  If the process dies, the next
request starts a new one; if that fails too, the caller gets rclone's own error text.  A watchdog
stops rclone when the application dies without stopping it (SIGKILL, a crash, ``os._exit``).
"""

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

from borgstore.backends.errors import BackendConnectionError, BackendError, BackendNotInstalled
from borgstore.backends.http import ConnectionLost, HttpClient

BINARY_ENV = "RCLONE_BINARY"  # the same variable the PyPI borgstore reads
MIN_VERSION = (1, 60)
START_TIMEOUT = 30.0  # seconds; a cold start on a loaded machine can take a few seconds
STOP_TIMEOUT = 5.0
# Reads stay open while rclone talks to a slow remote; a dead rclone is noticed through the socket.
READ_TIMEOUT = 600.0
# Connections kept alive per daemon: one per thread that uses the store at the same time; more
# threads than this still work, with connections that are opened and closed per request.
POOL_SIZE = 4
STDERR_TAIL = 2000  # characters of rclone's output quoted in an error message
# rclone 1.60 logs this for every rc call after its first 1000, whatever the log level
_OUTPUT_NOISE = "Max number of stats groups reached"

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
            env=_child_environment(),
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


def _child_environment() -> dict:
    # An inherited RCLONE_RC_* setting (another address, htpasswd, no-auth, a web GUI) would change
    # how our rcd listens or whom it lets in, so none of them reach the child.
    return {key: value for key, value in os.environ.items() if not key.startswith("RCLONE_RC_")}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _in_group(pgid: int) -> dict:
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
            **_in_group(0),
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


class _OutputTail:
    """Keeps the last lines rclone printed, read from its pipe by a thread that ends with rclone.

    A pipe, not a file: rclone prints a line per request in long sessions, which would fill a
    file without bound (and a pipe that nobody reads would stop rclone)."""

    def __init__(self, stream):
        self._lines = deque(maxlen=50)
        self._thread = threading.Thread(target=self._read, args=(stream,), name="rclone-output", daemon=True)
        self._thread.start()

    def _read(self, stream):
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                if line and _OUTPUT_NOISE not in line:
                    self._lines.append(line)

    def text(self, wait: float = 0.0) -> str:
        """The tail of the output; *wait* for the rest of it if rclone has exited."""
        if wait:
            self._thread.join(wait)
        text = "\n".join(self._lines)[-STDERR_TAIL:]
        return text or "(no output)"


class RcResponse:
    """An HTTP response from rclone: status, body, and whether rclone was restarted to get it."""

    __slots__ = ("after_restart", "data", "headers", "status")

    def __init__(self, status, data, headers, after_restart):
        self.status = status
        self.data = data
        self.headers = headers
        self.after_restart = after_restart

    def json(self) -> dict:
        try:
            return json.loads(self.data) if self.data else {}
        except ValueError:
            return {"error": self.data[:STDERR_TAIL].decode(errors="replace")}


class RcDaemon:
    """One ``rclone rcd`` process; thread safe.

    *scrub* hides secrets in rclone's output before it is quoted in an error message (rclone may
    print the connection string it was given)."""

    def __init__(self, binary: str, extra_args=(), *, scrub=None):
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self._scrub = scrub or (lambda text: text)
        self._lock = threading.Lock()
        self._process = None
        self._watchdog = None
        self._client = None
        self._secrets_dir = None
        self._output = None
        self._generation = 0  # counts starts, so a thread notices that another one restarted rclone
        self._closed = True
        self._owner = os.getpid()

    # --- process lifecycle ---
    @property
    def pid(self):
        process = self._process
        return process.pid if process is not None else None

    def start(self):
        with self._lock:
            self._closed = False
            if self._process is None:
                self._start_locked()

    def _start_locked(self):
        check_version(self.binary)
        for _attempt in range(3):
            if self._spawn_and_wait():
                self._generation += 1
                return
        # only a port taken by someone else between our probe and rclone's bind gets here
        raise BackendConnectionError(f"rclone rcd could not bind a port on 127.0.0.1: {self._stderr_tail()}")

    def _spawn_and_wait(self) -> bool:
        """Start rclone and wait until it answers.  False if its port was taken meanwhile."""
        port = _free_port()
        user = "borgstore-" + secrets.token_hex(8)
        password = secrets.token_urlsafe(32)
        args = [
            self.binary,
            "rcd",
            f"--rc-addr=127.0.0.1:{port}",
            f"--rc-htpasswd={self._write_htpasswd(user, password)}",
            "--rc-serve",  # GET /[remote:path]/name with Range: partial loads move only what is asked for
            # Two uploads of the same size within the remote's modtime precision must not look
            # "unchanged" to rclone: a move onto an existing name must always replace it.
            "--ignore-times",
            "--use-server-modtime",
            *self.extra_args,
        ]
        try:
            watchdog = start_watchdog()
        except BackendError:
            self._remove_secrets()
            raise
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=_child_environment(),
                close_fds=True,  # the watchdog's pipe must have one writer: this process
                # the watchdog's group: stopped with it, and away from the terminal's Ctrl-C
                **_in_group(watchdog.pid),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            stop_watchdog(watchdog)
            self._remove_secrets()
            raise BackendConnectionError(f"cannot start {self.binary} rcd: {exc}") from None
        self._process = process
        self._watchdog = watchdog
        self._output = _OutputTail(process.stdout)
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        headers = {"Authorization": authorization}
        self._client = HttpClient(
            "127.0.0.1", port, headers=headers, pool_size=POOL_SIZE, connect_timeout=10.0, read_timeout=READ_TIMEOUT
        )
        return self._wait_until_answering(process)

    def _wait_until_answering(self, process) -> bool:
        """Wait until the new rclone answers.  False if its port was taken meanwhile."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                text = self._stderr_tail()
                self._stop_locked()
                if "address already in use" in text:
                    return False
                raise BackendConnectionError(f"rclone rcd exited at start ({_exit_text(process)}): {text}")
            try:
                response = self._client.request("POST", "/rc/noop")
            except ConnectionLost:
                response = None
            if response is not None:
                if response.status == 200:
                    return True
                text = self._scrub(response.data[:STDERR_TAIL].decode(errors="replace"))
                self._stop_locked()
                raise BackendConnectionError(
                    f"rclone rcd does not accept our requests (HTTP {response.status}): {text}"
                )
            if time.monotonic() > deadline:
                self._stop_locked()
                raise BackendConnectionError(f"rclone rcd did not answer within {START_TIMEOUT:.0f} s")
            time.sleep(0.01)

    def _write_htpasswd(self, user: str, password: str) -> str:
        """Write the credentials rclone checks, as a hash in a file only we can read; return its path.

        rclone 1.60 checks --rc-user/--rc-pass (or RCLONE_RC_USER/RCLONE_RC_PASS) with an
        md5-crypt hash on every request, which costs it 0.17 ms per request, more than a whole
        small load; a {SHA} entry is checked in microseconds.  The password is 256 random bits,
        so its unsalted hash gives nothing away.  rclone re-reads the file on every request, so it
        stays until rclone is stopped."""
        self._remove_secrets()
        self._secrets_dir = tempfile.mkdtemp(prefix="borgstore-rclone-")  # mode 0700
        path = os.path.join(self._secrets_dir, "htpasswd")
        digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{user}:{{SHA}}{digest}\n")
        return path

    def _remove_secrets(self):
        directory, self._secrets_dir = self._secrets_dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _stop_locked(self):
        client, self._client = self._client, None
        if client is not None:
            client.close()
        process, self._process = self._process, None
        if process is not None:
            terminate(process)
        # after rclone: stopped first, the watchdog would leave rclone unguarded meanwhile
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            stop_watchdog(watchdog)
        self._remove_secrets()

    def close(self):
        """Stop rclone and release everything; the daemon can be started again."""
        if os.getpid() != self._owner:
            # a forked child exiting must not stop the rclone of the process that started it
            return
        with self._lock:
            self._closed = True
            self._stop_locked()

    def _stderr_tail(self) -> str:
        output, process = self._output, self._process
        if output is None:
            return "(no output)"
        exited = process is None or process.poll() is not None
        return self._scrub(output.text(wait=1.0 if exited else 0.0))

    # --- requests ---
    def request(self, method: str, path: str, *, body=(), headers=None, idempotent=False) -> RcResponse:
        """Send one request to rclone; see :meth:`pipeline`."""
        return self.pipeline([(method, path, headers, body)], idempotent=idempotent)[0]

    def pipeline(self, requests, *, idempotent=False) -> list:
        """Send ``(method, path, headers, body)`` requests at once, restarting rclone once if
        it has died; return an RcResponse for each.

        ``after_restart`` in the result tells the caller that the request may have been carried
        out already by the rclone that died (a repeated delete then finds nothing to delete).
        An *idempotent* request is also repeated when rclone cut its response short (it does
        when the item it serves is replaced meanwhile)."""
        after_restart = False
        retries_left = 3
        while True:
            with self._lock:
                if self._closed:
                    raise BackendConnectionError("rclone rcd was stopped (the store is closed)")
                if self._process is None:
                    # an earlier restart failed; maybe the cause is gone by now
                    try:
                        self._start_locked()
                    except BackendError as exc:
                        raise BackendConnectionError(
                            f"rclone rcd is not running and could not be started: {exc}"
                        ) from None
                client, generation = self._client, self._generation
            try:
                responses = client.pipeline(requests)
            except ConnectionLost as exc:
                error = exc
            else:
                return [RcResponse(r.status, r.data, r.headers, after_restart) for r in responses]
            # rclone closed a kept-alive connection while it was idle (so it never saw this
            # request), or the request may simply be repeated
            repeatable = idempotent or (error.reused and not error.answered)
            if repeatable and retries_left and self._process_alive(generation):
                retries_left -= 1
                continue
            with self._lock:
                if self._generation != generation:
                    continue  # another thread restarted rclone meanwhile
                process = self._process
                if self._closed or process is None:
                    raise BackendConnectionError(
                        f"rclone rcd was stopped while a request was running: {error}"
                    ) from None
                if not _has_exited(process):
                    raise BackendConnectionError(f"lost the connection to rclone rcd: {error}") from None
                if after_restart:
                    raise BackendConnectionError(
                        f"rclone rcd died again ({_exit_text(process)}): {self._stderr_tail()}"
                    ) from None
                died = f"rclone rcd died ({_exit_text(process)}); its last output: {self._stderr_tail()}"
                self._stop_locked()
                try:
                    self._start_locked()
                except BackendError as exc:
                    raise BackendConnectionError(f"{died}; restarting it failed: {exc}") from None
                after_restart = True

    def _process_alive(self, generation) -> bool:
        with self._lock:
            process = self._process
            return self._generation == generation and process is not None and process.poll() is None

    def rc(self, command: str, params: dict) -> RcResponse:
        return self.pipeline([rc_request(command, params)])[0]


def rc_request(command: str, params: dict) -> tuple:
    """The request (for RcDaemon.pipeline) that calls rc *command* with *params*."""
    return ("POST", "/" + command, {"Content-Type": "application/json"}, (json.dumps(params).encode(),))


def _has_exited(process, grace: float = 2.0) -> bool:
    # A killed process closes its sockets a moment before it can be reaped (longer on a busy machine).
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return False
    return True


def _exit_text(process) -> str:
    code = process.returncode
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"


def terminate(process):
    """Stop *process* and reap it, politely first."""
    if process.poll() is None:
        try:
            process.terminate()
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except OSError:
            pass
