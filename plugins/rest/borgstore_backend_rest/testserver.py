"""A REST server as a process of its own on 127.0.0.1, for tests and benchmarks: ours
(``borgstore-server-rest`` of this distribution) or any other command line that takes ``--port``
(the PyPI borgstore 0.7's, run from a venv of its own).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Optional

from borgstore.backends.toolkit import free_local_port

#: runs our server in the interpreter running this module
OUR_SERVER = (sys.executable, "-m", "borgstore_backend_rest.server")


class ServerProcess:
    """``start()`` runs ``command + ["--host", "127.0.0.1", "--port", PORT] + args`` and waits
    until it accepts connections; ``stop()`` sends SIGTERM (then SIGKILL); ``kill()`` SIGKILLs it;
    ``start()`` again reuses the port.  ``url`` is ``http://127.0.0.1:PORT/`` (``https`` with
    *tls*); the server's stderr goes to *log_path* (read it with ``log()``)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        command: Sequence[str] = OUR_SERVER,
        port: Optional[int] = None,
        tls: bool = False,
        log_path: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
    ):
        self.args = list(args)
        self.command = list(command)
        self.port = port or free_local_port()
        self.scheme = "https" if tls else "http"
        self.log_path = log_path
        self.env = env
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        argv = [*self.command, "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        env = {**os.environ, **(self.env or {})}
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        finally:
            if not isinstance(log, int):
                log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not listen on port {self.port} within {timeout} s: {self.log()[-2000:]}")

    def log(self, until: Optional[str] = None, timeout: float = 10.0) -> str:
        """What the server wrote to its log; with *until*, once that text is in it (or after
        *timeout* seconds): a request's line is written after its answer was sent, so a client
        that reads the log right after the answer may be ahead of it."""
        deadline = time.monotonic() + timeout
        while True:
            text = ""
            if self.log_path and os.path.exists(self.log_path):
                with open(self.log_path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            if until is None or until in text or time.monotonic() >= deadline:
                return text
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, wait up to *timeout* seconds, then SIGKILL; the exit status (None if it was not running)."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_ssh_wrapper(path: str, ssh_config: str, bin_dir: str) -> str:
    """Write an executable ``BORGSTORE_RSH`` at *path*: ``ssh -F ssh_config`` whose remote command,
    when it starts with ``borgstore-server-rest``, runs with *bin_dir* first on the PATH.

    sshd gives a session a PATH of its own (a SetEnv of PATH is ignored), so a server installed in
    a venv is not found by name; a real deployment installs it on the login's PATH instead.  The
    command arrives as one shell-quoted word (our client) or as separate words (the PyPI client):
    both are handled."""
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            "for arg; do\n"
            "  shift\n"
            '  case "$arg" in\n'
            f'    borgstore-server-rest|"borgstore-server-rest "*) set -- "$@" "PATH={bin_dir}:\\$PATH $arg" ;;\n'
            '    *) set -- "$@" "$arg" ;;\n'
            "  esac\n"
            "done\n"
            f'exec ssh -F {ssh_config} "$@"\n'
        )
    os.chmod(path, 0o755)
    return path
