"""Server processes as HTTP connections: ``rest:`` URLs, the server on its stdin and stdout.

:class:`ServerProcesses` is the ``connect=`` function of the core's HttpClient: each call runs
the server command (``borgstore-server-rest --stdio ...``, through ssh or locally) with its
stdin and stdout on one end of a socketpair, and returns the other end.  So the HttpClient's
pool of kept-alive connections is a pool of server processes, each serving one request at a
time; a process that dies is a lost connection, and the next request runs a new one (the
reconnect).  Closing a connection's socket ends its process: the server reads end of file and
exits; whatever has not by the time the processes are closed (or the pool is garbage
collected) is killed, and every process is reaped.
"""

import socket
import subprocess
import threading
import time
import weakref

from borgstore.backends.errors import BackendError
from borgstore.backends.toolkit import SocketProcess

#: seconds a process may take to exit by itself after its socket was closed
EXIT_GRACE = 5.0


class _Process(SocketProcess):
    """One server process, and when our end of its socket was closed."""

    def __init__(self, argv: list):
        super().__init__(argv)
        self.closed_at: float | None = None


class _ProcessSocket(socket.socket):
    """Our end of a process's socketpair: closing it ends the process (the server reads end of
    file), and tells the pool, which reaps it."""

    def __init__(self, process: _Process, pool: "ServerProcesses"):
        sock = process.socket
        super().__init__(sock.family, sock.type, sock.proto, sock.detach())
        self._process = process
        self._pool = weakref.ref(pool)

    def _real_close(self, *args, **kwargs):  # called once the socket and its files are closed
        super()._real_close(*args, **kwargs)
        pool = self._pool()
        if pool is not None:
            pool._ended(self._process)


def _reap_later(process: _Process, processes: dict, lock: threading.Lock) -> None:
    """Wait for *process* to exit by itself (up to EXIT_GRACE), kill it if not, reap it."""
    try:
        process.popen.wait(EXIT_GRACE)
    except subprocess.TimeoutExpired:
        pass
    if process.reap(kill=True):
        with lock:
            processes.pop(process, None)


def _end_all(processes: dict) -> None:
    """Kill and reap every process in *processes* (the pool's close, and its finalizer)."""
    for process in list(processes):
        processes.pop(process, None)
        process.reap(kill=True)


class ServerProcesses:
    """The ``connect=`` function of an HttpClient whose connections are server processes.

    :param argv: the command line (``ssh host borgstore-server-rest --stdio --backend FILE:...``).
    Thread safe; :meth:`close` ends every process, and so does garbage collection."""

    def __init__(self, argv: list):
        self.argv = list(argv)
        self._lock = threading.Lock()
        # every process not reaped yet -> True while its connection is open
        self._processes: dict = {}
        self._closed = False
        self._local = threading.local()  # the process this thread's last closed connection ran
        self._finalizer = weakref.finalize(self, _end_all, self._processes)

    def __repr__(self):
        return f"<ServerProcesses {self.argv[0]!r}, {len(self._processes)} running>"

    def __call__(self, timeout: float) -> socket.socket:
        """Run a new server process; our end of its socketpair.  A command that cannot be run
        at all raises BackendError (an OSError would be taken for a lost connection)."""
        self._sweep()
        with self._lock:
            if self._closed:
                raise OSError("the server processes are closed")
        try:
            process = _Process(self.argv)
        except (FileNotFoundError, PermissionError) as exc:
            raise BackendError(f"cannot run {self.argv[0]!r}: {exc}") from None
        with self._lock:
            closed = self._closed
            if not closed:
                self._processes[process] = True
        if closed:  # closed while we started it
            _end_all({process: True})
            raise OSError("the server processes are closed")
        return _ProcessSocket(process, self)

    def _ended(self, process: _Process) -> None:
        """Our end of *process*'s socket was closed: the server exits; reap it if it did."""
        process.closed_at = time.monotonic()
        self._local.last = process
        with self._lock:
            if process not in self._processes:
                return
            self._processes[process] = False
        if process.reap(kill=False):
            with self._lock:
                self._processes.pop(process, None)
        else:
            # it is still reading its end of file, or finishing a write: reaped by a thread of
            # its own (killed after EXIT_GRACE), so that no request waits for it
            threading.Thread(target=_reap_later, args=(process, self._processes, self._lock), daemon=True).start()

    def _sweep(self) -> None:
        """Reap the processes that exited after their connection was closed; kill those that
        outstayed EXIT_GRACE."""
        now = time.monotonic()
        with self._lock:
            ended = [p for p, is_open in self._processes.items() if not is_open]
        for process in ended:
            if process.reap(kill=now - (process.closed_at or now) > EXIT_GRACE):
                with self._lock:
                    self._processes.pop(process, None)

    def running(self) -> int:
        """Processes not reaped yet (for tests)."""
        with self._lock:
            return len(self._processes)

    def last_words(self, wait: float = 1.0) -> str:
        """What the process of this thread's last closed connection wrote to stderr, waiting up
        to *wait* seconds for it to exit first (a dying process writes its reason last); with
        its exit status, if it has one."""
        process: _Process | None = getattr(self._local, "last", None)
        if process is None:
            return ""
        try:
            process.popen.wait(wait)
        except subprocess.TimeoutExpired:
            pass
        text = process.stderr_tail()
        code = process.popen.returncode
        status = f"exit status {code}" if code is not None else ""
        return "; ".join(part for part in (status, text) if part)

    def close(self, grace: float = 1.0) -> None:
        """End every process: those whose connection was closed get up to *grace* seconds to
        exit by themselves (a server finishing its last write), then all are killed (the
        server of an open connection too: its request fails as a lost connection)."""
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + grace
        while True:
            self._sweep()
            with self._lock:
                waiting = any(not is_open for is_open in self._processes.values())
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        self._finalizer()
