"""A child process that speaks to its parent over a socketpair: ``ssh -s sftp`` for the sftp
backend's openssh transport, ``borgstore-server-rest --stdio`` (locally or through ssh) for the
REST client's ``rest:`` URLs.  Exported through :mod:`borgstore.backends.toolkit`."""

import socket
import subprocess
import tempfile
from collections.abc import Sequence

#: the stderr lines stderr_tail() keeps: the last ones say why a process failed
TAIL_LINES = 6
_TAIL_BYTES = 8192


class SocketProcess:
    """*argv* run with its stdin and stdout on one end of a socketpair; ``socket`` is our end.

    Its stderr goes to a temporary file, not a pipe, so a chatty child never blocks on it;
    :meth:`stderr_tail` reads the last lines back.  The child runs in a session of its own, so a
    Ctrl-C at the terminal reaches the application, not the child in the middle of a write.
    Closing ``socket`` gives the child end of file; :meth:`reap` collects it (killing it first
    if asked) and closes the stderr file.  Raises OSError if *argv* cannot be run."""

    def __init__(self, argv: Sequence[str]):
        ours, theirs = socket.socketpair()
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by reap()
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=self.stderr,
                close_fds=True,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            self.stderr.close()
            raise
        finally:
            theirs.close()  # the child has its copy; ours must go, or it never sees end of file
        self.socket = ours
        self._tail = ""

    def stderr_tail(self) -> str:
        """The last lines (up to TAIL_LINES) the process wrote to stderr, joined by a slash
        between blanks; once reaped, the ones read then."""
        try:
            self.stderr.seek(0, 2)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - _TAIL_BYTES))
            text = self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):  # closed by reap()
            return self._tail
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self._tail = " / ".join(lines[-TAIL_LINES:])
        return self._tail

    def reap(self, *, kill: bool, timeout: float = 5.0) -> bool:
        """Collect the process if it has exited (with *kill*, kill it first and wait up to
        *timeout* seconds); True once reaped.  False for one still running without *kill*, or
        one that does not die (a process stuck in the kernel): it is left alone."""
        if self.popen.poll() is None:
            if not kill:
                return False
            self.popen.kill()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        self.stderr_tail()
        self.stderr.close()
        return True
