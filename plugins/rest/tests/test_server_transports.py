"""The ways the server takes connections (TLS, systemd socket activation, stdio) and its command
line (errors exit 2 with a message, never a traceback)."""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest
from borgstore_backend_rest import _wire
from borgstore_backend_rest.testserver import OUR_SERVER, ServerProcess

from borgstore.backends.http import ConnectionLost, HttpClient

from .conftest import ACCEPT, skip_or_fail

SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"


def test_tls(tmp_path, certificate):
    """With --tls-cert/--tls-key the server speaks HTTPS on kept-alive connections; a client that
    never finishes its handshake holds up nobody, and a plain HTTP client is just refused."""
    cert, key = certificate
    url = f"file://{tmp_path / 'store'}"
    args = ["--backend", url, "--tls-cert", str(cert), "--tls-key", str(key), "--head-timeout", "2"]
    with ServerProcess(args, tls=True, log_path=str(tmp_path / "log")) as server:
        stalled = socket.create_connection(("127.0.0.1", server.port))  # no handshake ever
        context = ssl.create_default_context(cafile=str(cert))
        client = HttpClient("127.0.0.1", server.port, tls=context, server_hostname="localhost", headers=ACCEPT)
        try:
            assert client.request("POST", "/?cmd=create").status == 200
            for i in range(5):
                assert client.request("POST", f"/item{i}", body=b"over tls").status == 200
            assert client.request("GET", "/item3").data == b"over tls"
            plain = HttpClient("127.0.0.1", server.port, headers=ACCEPT, read_timeout=5)
            with pytest.raises(ConnectionLost):  # the server speaks no plain HTTP on its TLS port
                plain.request("GET", "/")
            plain.close()
        finally:
            client.close()
            stalled.close()
    assert (tmp_path / "store" / "item3").read_bytes() == b"over tls"


def _socket_activated(tmp_path, listen: str, port: int = 0):
    if not os.access(SOCKET_ACTIVATE, os.X_OK):
        skip_or_fail(f"{SOCKET_ACTIVATE} is not installed")
    command = [SOCKET_ACTIVATE, "-l", listen, *OUR_SERVER]
    args = ["--socket-activation", "--backend", f"file://{tmp_path / 'store'}"]
    return ServerProcess(args, command=command, port=port or None, log_path=str(tmp_path / "log"))


def test_socket_activation_on_tcp(tmp_path):
    """Through the real systemd-socket-activate: the server serves the TCP socket it is given."""
    from borgstore.backends.toolkit import free_local_port

    port = free_local_port()
    with _socket_activated(tmp_path, f"127.0.0.1:{port}", port) as server:
        client = HttpClient("127.0.0.1", port, headers=ACCEPT)
        try:
            assert client.request("POST", "/?cmd=create").status == 200
            assert client.request("POST", "/x", body=b"activated").status == 200
            assert client.request("GET", "/x").data == b"activated"
        finally:
            client.close()
        assert server.stop() == 0
    assert "the sockets systemd passed" in server.log()


def test_socket_activation_on_a_unix_socket(tmp_path):
    """A Unix socket from systemd is served as well as a TCP one."""
    path = str(tmp_path / "rest.sock")
    process = (
        subprocess.Popen(
            [
                SOCKET_ACTIVATE,
                "-l",
                path,
                *OUR_SERVER,
                "--socket-activation",
                "--backend",
                f"file://{tmp_path / 'store'}",
            ],
            stderr=subprocess.PIPE,
        )
        if os.access(SOCKET_ACTIVATE, os.X_OK)
        else skip_or_fail(f"{SOCKET_ACTIVATE} is not installed")
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)

        def connect(timeout):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(path)
            return sock

        client = HttpClient("localhost", 0, connect=connect, headers=ACCEPT)
        try:
            assert client.request("POST", "/?cmd=create").status == 200
            assert client.request("POST", "/u", body=b"unix").status == 200
            assert client.request("GET", "/u").data == b"unix"
        finally:
            client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()


def test_socket_activation_for_another_process_is_refused(tmp_path):
    """LISTEN_PID naming another process: exit 2 with a message, nothing served."""
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": "1"}
    result = subprocess.run(
        [*OUR_SERVER, "--socket-activation", "--backend", f"file://{tmp_path}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "not this one" in result.stderr
    assert "Traceback" not in result.stderr


def _stdio_server(tmp_path, *args, **options):
    return subprocess.Popen(
        [*OUR_SERVER, "--stdio", *args],
        stderr=open(tmp_path / "stdio.log", "wb"),
        **options,
    )


def test_stdio_with_pipes(tmp_path):
    """--stdio serves one connection on stdin/stdout (only responses on stdout, the failed
    requests logged on stderr: it goes to the one client) and exits 0 at the end of stdin; FILE:
    paths are relative to the working directory."""
    process = _stdio_server(
        tmp_path, "--backend", "FILE:relative/store", stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path
    )
    accept = f"Accept: {_wire.MEDIA_TYPE}\r\n"
    requests = [
        f"POST /?cmd=create HTTP/1.1\r\n{accept}Content-Length: 0\r\n\r\n",
        f"POST /piped HTTP/1.1\r\n{accept}Content-Length: 5\r\n\r\nhello",
        f"GET /missing HTTP/1.1\r\n{accept}\r\n",
        f"GET /piped HTTP/1.1\r\n{accept}\r\n",
    ]
    output, _ = process.communicate("".join(requests).encode(), timeout=30)
    assert process.returncode == 0
    assert output.count(b"HTTP/1.1 200 OK\r\n") == 3 and output.count(b"HTTP/1.1 404 ") == 1
    assert output.endswith(b"\r\n\r\nhello")
    assert (tmp_path / "relative" / "store" / "piped").read_bytes() == b"hello"
    log = (tmp_path / "stdio.log").read_text()
    assert '"GET /missing" 404' in log and "/piped" not in log


def test_stdio_through_the_http_client(tmp_path):
    """A socketpair as stdin/stdout, driven by the core's HTTP client; SIGTERM while idle: exit 0."""
    ours, theirs = socket.socketpair()
    process = _stdio_server(tmp_path, "--backend", f"file://{tmp_path / 'store'}", stdin=theirs, stdout=theirs)
    theirs.close()
    client = HttpClient("stdio", 0, connect=lambda timeout: ours, headers=ACCEPT)
    try:
        assert client.request("POST", "/?cmd=create").status == 200
        for i in range(20):
            assert client.request("POST", f"/i{i}", body=b"v" * i).status == 200
        assert client.request("HEAD", "/i7").headers["content-length"] == "7"
        assert client.request("GET", "/nothing").status == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stdio_keeps_an_ignored_sigint_ignored(tmp_path):
    """A client spawning the server with SIGINT ignored (as PyPI's does) keeps it running
    through a Ctrl-C sent to the process group."""
    process = _stdio_server(
        tmp_path,
        "--backend",
        f"file://{tmp_path / 'store'}",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert process.poll() is None
    request = f"POST /?cmd=create HTTP/1.1\r\nAccept: {_wire.MEDIA_TYPE}\r\nContent-Length: 0\r\n\r\n"
    output, _ = process.communicate(request.encode(), timeout=30)
    assert output.startswith(b"HTTP/1.1 200 OK")
    assert process.returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "file:///tmp/x", "--bogus"], "unrecognized arguments"),
        ([], "--backend"),
        (["--backend", "nonsense-scheme://x"], "backend"),
        (["--backend", "file:///tmp/x", "--permissions", "{not json"], "permissions"),
        (["--backend", "file:///tmp/x", "--permissions", '{"data": "xyz"}'], "letter"),
        (["--backend", "file:///tmp/x", "--username", "borg"], "password"),
        (["--backend", "file:///tmp/x", "--password", "p"], "username"),
        (["--backend", "file:///tmp/x", "--username", "u", "--password", "p", "--password-file", "f"], "not both"),
        (["--backend", "file:///tmp/x", "--username", "u", "--password-file", "/nonexistent"], "password-file"),
        (["--backend", "file:///tmp/x", "--tls-cert", "/nonexistent.pem"], "certificate"),
        (["--backend", "file:///tmp/x", "--quota", "-1"], "quota"),
        (["--backend", "file:///tmp/x", "--quota", "lots"], "quota"),
        (["--backend", "file:///tmp/x", "--max-body", "0"], "max-body"),
        (["--backend", "file:///tmp/x", "--stdio", "--socket-activation"], "exclude"),
        (["--backend", "file:///tmp/x", "--port", "99999"], "port"),
    ],
)
def test_bad_configuration_exits_2(args, message):
    """A bad flag or configuration: exit status 2, a message naming the problem, no traceback."""
    env = {key: value for key, value in os.environ.items() if key != "BORGSTORE_REST_PASSWORD"}
    result = subprocess.run([*OUR_SERVER, *args], capture_output=True, text=True, check=False, timeout=60, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_warns_about_passwords_on_the_command_line():
    """--help says a password given as a flag is visible to other users, and names the alternatives."""
    result = subprocess.run([*OUR_SERVER, "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "visible to every local user" in text
    assert "--password-file" in text and "BORGSTORE_REST_PASSWORD" in text


def test_the_console_script_runs():
    """``borgstore-server-rest`` (the console script BorgBackup and PyPI's rest: client call) is ours."""
    script = shutil.which("borgstore-server-rest", path=os.path.dirname(sys.executable))
    if script is None:
        skip_or_fail("the borgstore-server-rest script is not installed next to this Python")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0
    assert "--password-file" in result.stdout
