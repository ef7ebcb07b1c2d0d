"""toolkit.SocketProcess: a child on a socketpair, its stderr kept, reaped without zombies."""

import os
import sys

import pytest

from borgstore.backends.toolkit import SocketProcess

ECHO_THEN_COMPLAIN = (
    "import sys\n"
    "data = sys.stdin.buffer.read()\n"
    "sys.stdout.buffer.write(data.upper())\n"
    "for i in range(10): print(f'line {i}', file=sys.stderr)\n"
)


def test_the_child_speaks_over_the_socket_and_its_last_stderr_lines_are_kept():
    """stdin and stdout are the socket's far end; end of file (shutdown) ends the child; the
    last six stderr lines are told, also after reap() closed the file."""
    child = SocketProcess([sys.executable, "-c", ECHO_THEN_COMPLAIN])
    child.socket.sendall(b"hello")
    child.socket.shutdown(1)  # SHUT_WR: the child reads end of file
    received = b""
    while chunk := child.socket.recv(100):
        received += chunk
    child.socket.close()
    assert received == b"HELLO"
    child.popen.wait(30)
    assert child.reap(kill=False)
    assert child.stderr.closed
    assert child.stderr_tail() == " / ".join(f"line {i}" for i in range(4, 10))


def test_reap_leaves_a_running_child_unless_told_to_kill_it():
    """reap(kill=False) of a running child is False and leaves it running; reap(kill=True)
    kills and collects it (no zombie is left: the pid is gone)."""
    child = SocketProcess([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not child.reap(kill=False)
        assert child.popen.poll() is None
        assert child.reap(kill=True)
        assert child.popen.returncode is not None
        with pytest.raises(ProcessLookupError):
            os.kill(child.popen.pid, 0)
    finally:
        child.socket.close()


def test_a_command_that_cannot_run_raises_and_leaves_nothing_open():
    """A missing program raises OSError (FileNotFoundError) from the constructor."""
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        SocketProcess(["/nonexistent/program"])
    assert len(os.listdir("/proc/self/fd")) == before
