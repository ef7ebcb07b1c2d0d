"""The private ``rclone rcd`` child process and the HTTP connection to it.

One :class:`RcDaemon` is one rclone process, bound to 127.0.0.1 on a free port and protected by a
random user name and password kept in a file only we can read (``ps`` shows command lines to every
user on the machine).  Every request is sent once: a lost connection or a missing answer is
reported (BackendConnectionError, BackendTimeout) and the ``retry`` middleware decides about
trying again.  What stays here is keeping an rclone to send to: if the process died, the next
request starts a new one (if that fails too, the caller gets rclone's own error text); if it
stopped answering, the next request checks it and replaces it.  A watchdog stops rclone when the
application dies without stopping it (SIGKILL, a crash, ``os._exit``).
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque

from borgstore.backends.errors import BackendConnectionError, BackendError, BackendTimeout
from borgstore.backends.http import ConnectionLost, HttpClient
from borgstore.backends.toolkit import free_local_port, lost_reply

from ._process import (  # noqa: F401 - BINARY_ENV, MIN_VERSION, find_binary: importable from here as before
    BINARY_ENV,
    MIN_VERSION,
    START_TIMEOUT,
    STDERR_TAIL,
    check_version,
    child_environment,
    exit_text,
    find_binary,
    has_exited,
    in_group,
    start_watchdog,
    stop_watchdog,
    terminate,
)

# Seconds rclone has to answer a request (the backend's ``timeout`` option; docs/rclone.md says
# why 20).  A call that may take longer (a listing of many items) runs as an rclone job, whose
# every status request is answered at once.
DEFAULT_TIMEOUT = 20.0
# the longest pause between two status requests of a running job
JOB_POLL_MAX = 0.2
# Connections kept alive per daemon: one per thread that uses the store at the same time; more
# threads than this still work, with connections that are opened and closed per request.
POOL_SIZE = 4
# rclone 1.60 logs this for every rc call after its first 1000, whatever the log level
_OUTPUT_NOISE = "Max number of stats groups reached"


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


class CutShort(BackendConnectionError):
    """rclone, still running, ended an answer before its end: it does so when the item it serves
    is replaced by a shorter one meanwhile (it announced the older length)."""


class RcResponse:
    """An HTTP response from rclone (or a finished job's result): status, body, headers."""

    __slots__ = ("_parsed", "data", "headers", "status")

    def __init__(self, status, data, headers, parsed=None):
        self.status = status
        self.data = data
        self.headers = headers
        self._parsed = parsed  # a job's result, already parsed from its status answer

    def json(self) -> dict:
        if self._parsed is not None:
            return self._parsed
        try:
            return json.loads(self.data) if self.data else {}
        except ValueError:
            return {"error": self.data[:STDERR_TAIL].decode(errors="replace")}


class RcDaemon:
    """One ``rclone rcd`` process; thread safe.

    *scrub* hides secrets in rclone's output before it is quoted in an error message (rclone may
    print the connection string it was given).  *timeout*: seconds rclone has to answer a request."""

    def __init__(self, binary: str, extra_args=(), *, scrub=None, timeout: float = DEFAULT_TIMEOUT):
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self._scrub = scrub or (lambda text: text)
        self.timeout = timeout
        self._unanswered = False  # a request timed out: check that rclone answers before the next
        self._death: str | None = None  # how the last rclone ended, quoted until a new one has started
        self._lock = threading.Lock()
        # set while an rclone runs (from its start to its stop)
        self._process: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._client: HttpClient | None = None
        self._secrets_dir: str | None = None
        self._output: _OutputTail | None = None
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
                self._death, self._unanswered = None, False
                return
        # only a port taken by someone else between our probe and rclone's bind gets here
        raise BackendConnectionError(f"rclone rcd could not bind a port on 127.0.0.1: {self._stderr_tail()}")

    def _spawn_and_wait(self) -> bool:
        """Start rclone and wait until it answers.  False if its port was taken meanwhile."""
        port = free_local_port()
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
                env=child_environment(),
                close_fds=True,  # the watchdog's pipe must have one writer: this process
                # the watchdog's group: stopped with it, and away from the terminal's Ctrl-C
                **in_group(watchdog.pid),
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
        client = self._client = HttpClient(
            "127.0.0.1",
            port,
            headers=headers,
            pool_size=POOL_SIZE,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
        )
        return self._wait_until_answering(process, client)

    def _wait_until_answering(self, process: subprocess.Popen, client: HttpClient) -> bool:
        """Wait until the new rclone (*process*, reached through *client*) answers.  False if its
        port was taken meanwhile."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                text = self._stderr_tail()
                self._stop_locked()
                if "address already in use" in text:
                    return False
                raise BackendConnectionError(f"rclone rcd exited at start ({exit_text(process)}): {text}")
            try:
                response = client.request("POST", "/rc/noop")
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

    def _stop_locked(self, *, kill=False):
        client, self._client = self._client, None
        if client is not None:
            client.close()
        process, self._process = self._process, None
        if process is not None:
            terminate(process, kill=kill)
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
    def request(self, method: str, path: str, *, body=(), headers=None, mutation=False) -> RcResponse:
        """Send one request to rclone; see :meth:`pipeline`."""
        return self.pipeline([(method, path, headers, body)], mutation=mutation)[0]

    def pipeline(self, requests, *, mutation=False) -> list:
        """Send ``(method, path, headers, body)`` requests at once and return an RcResponse for
        each; once, never again.

        A lost connection raises BackendConnectionError, no answer within the timeout
        BackendTimeout; with ``maybe_applied`` if the requests change something (*mutation*):
        rclone may have carried them out."""
        return self._pipeline(requests, mutation)[0]

    def _pipeline(self, requests, mutation) -> tuple:
        """:meth:`pipeline`, and the generation of the rclone that answered."""
        client, generation = self._ready_client()
        try:
            responses = client.pipeline(requests)
        except ConnectionLost as exc:
            raise self._lost(exc, generation, mutation) from None
        return [RcResponse(r.status, r.data, r.headers) for r in responses], generation

    def _ready_client(self) -> tuple:
        """The client of a running rclone that answers, and its generation: an rclone that died
        is started again, one that stopped answering is replaced."""
        with self._lock:
            if self._closed:
                raise BackendConnectionError("rclone rcd was stopped (the store is closed)")
            process = self._process
            if process is not None and process.poll() is not None:
                self._death = f"rclone rcd died ({exit_text(process)}); its last output: {self._stderr_tail()}"
                self._stop_locked()
            elif process is not None and self._unanswered:
                self._check_answering_locked()
            if self._process is None:
                try:
                    self._start_locked()
                except BackendError as exc:
                    before = self._death or "rclone rcd is not running"
                    raise BackendConnectionError(f"{before}; it could not be started again: {exc}") from None
            return self._client, self._generation

    def _check_answering_locked(self):
        """After a request went unanswered: keep rclone if it answers now (it was busy, or stopped
        and continued), else kill it (it is stuck or stopped) so that a new one is started."""
        try:
            answered = self._client.request("POST", "/rc/noop").status == 200
        except ConnectionLost:
            answered = False
        if answered:
            self._unanswered = False
            return
        self._death = f"rclone rcd (pid {self._process.pid}) did not answer within {self.timeout:g} s and was killed"
        self._stop_locked(kill=True)

    def _lost(self, exc: ConnectionLost, generation: int, mutation: bool) -> BackendConnectionError:
        """The error for a request that got no (whole) answer."""
        if exc.timed_out:
            with self._lock:
                if self._generation == generation:
                    self._unanswered = True
            return BackendTimeout(f"rclone rcd did not answer within {self.timeout:g} s", maybe_applied=mutation)
        with self._lock:
            process = self._process
            if self._closed or process is None or self._generation != generation:
                what = "rclone rcd was stopped or replaced while a request was running"
            elif exc.answered and process.poll() is None:
                return CutShort(f"rclone rcd ended its answer early: {exc}", maybe_applied=mutation)
            elif has_exited(process):
                what = f"rclone rcd died ({exit_text(process)}); its last output: {self._stderr_tail()}"
                self._death = what
                self._stop_locked()  # the next request starts a new one
            else:
                what = "lost the connection to rclone rcd"
        return lost_reply(what, mutation=mutation, cause=exc)

    def rc(self, command: str, params: dict, *, mutation=False) -> RcResponse:
        return self.pipeline([rc_request(command, params)], mutation=mutation)[0]

    def job(self, command: str, params: dict, *, mutation=False) -> RcResponse:
        """Call rc *command* as an rclone job and wait for its end: a listing of a big remote
        directory may take minutes, and every request of a job (the start, each status) is
        answered at once, so the timeout tells a stopped rclone from a busy one.  The result is
        a response as :meth:`rc` gives (status 500 and rclone's words if the job failed)."""
        started, generation = self._pipeline([rc_request(command, {**params, "_async": True})], mutation)
        started = started[0]
        if started.status != 200:
            return started
        jobid = started.json().get("jobid")
        pause = 0.0
        while True:
            time.sleep(pause)
            (status,), now = self._pipeline([rc_request("job/status", {"jobid": jobid})], mutation)
            if now != generation or status.status != 200:
                # job ids start again in a new rclone: its job of this number is not ours
                raise lost_reply(f"rclone rcd lost the job for {command} (it was restarted)", mutation=mutation)
            result = status.json()
            if result.get("finished"):
                if result.get("success"):
                    return RcResponse(200, b"", {}, result.get("output") or {})
                return RcResponse(500, b"", {}, {"error": str(result.get("error") or "the job failed")})
            pause = min(max(pause * 2, 0.001), JOB_POLL_MAX)


def rc_request(command: str, params: dict) -> tuple:
    """The request (for RcDaemon.pipeline) that calls rc *command* with *params*."""
    return ("POST", "/" + command, {"Content-Type": "application/json"}, (json.dumps(params).encode(),))
