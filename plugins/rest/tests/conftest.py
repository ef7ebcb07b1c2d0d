"""Fixtures shared by the REST tests: the PyPI borgstore 0.7 (client and server) in a venv of
its own, and the CI rule that a missing part fails instead of skipping."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from borgstore_backend_rest import _wire
from borgstore_backend_rest.testserver import ServerProcess

from borgstore.backends.http import HttpClient, Response

PYPI_VERSION = "0.7.0"


def skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this must not be skipped)")
    pytest.skip(reason)


def make_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for *host* (a DNS name or an IP address) made by openssl in
    *directory*: (certificate file, key file)."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    kind = "IP" if host.replace(".", "").isdigit() else "DNS"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={host}"]
    subprocess.run([*command, "-addext", f"subjectAltName={kind}:{host}"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for "localhost": (certificate file, key file)."""
    return make_certificate(tmp_path_factory.mktemp("tls"), "localhost")


@pytest.fixture(scope="session")
def pypi_venv(tmp_path_factory):
    """The bin/ folder of a venv with the PyPI borgstore 0.7.0 and its rest extra (requests):
    ``pypi_venv / "python"``, ``pypi_venv / "borgstore-server-rest"``."""
    venv = tmp_path_factory.mktemp("pypi-borgstore-rest") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", f"borgstore[rest]=={PYPI_VERSION}"],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        skip_or_fail(f"cannot install the PyPI borgstore[rest] {PYPI_VERSION}: {result.stderr[-500:]}")
    return bin_dir


# --- server fixtures ---

ACCEPT = {"Accept": _wire.MEDIA_TYPE}


class RestServer:
    """Our server as a process on 127.0.0.1 serving a posixfs store in a temporary directory,
    with a raw HTTP client (``request``) that sends the Accept header by default."""

    def __init__(self, tmp_path: Path, args=(), *, create=True, **process_options):
        self.store_path = tmp_path / "store"
        self.url = f"file://{self.store_path}"
        self.log_path = str(tmp_path / f"server-{len(list(tmp_path.glob('server-*.log')))}.log")
        self.process = ServerProcess(["--backend", self.url, *args], log_path=self.log_path, **process_options)
        self.clients: list[HttpClient] = []
        self.create = create

    def start(self) -> "RestServer":
        """Start the process (and create the store unless told not to)."""
        self.process.start()
        if self.create:
            assert self.request("POST", "/?cmd=create").status == 200
        return self

    @property
    def port(self) -> int:
        """The server's TCP port."""
        return self.process.port

    def client(self, **options) -> HttpClient:
        """A new kept-alive client of the server (closed by stop())."""
        client = HttpClient("127.0.0.1", self.port, **options)
        self.clients.append(client)
        return client

    def request(self, method, target, *, body=b"", headers=None, accept=True, client=None) -> Response:
        """One request, with our Accept header unless *accept* is False, on *client* (default: the first)."""
        sent = {**(ACCEPT if accept else {}), **(headers or {})}
        if self.clients and client is None:
            client = self.clients[0]
        return (client or self.client()).request(method, target, headers=sent, body=body)

    def store(self, name, value, *, headers=None, **options) -> Response:
        """POST *value* under *name* with its SHA-256, as the clients send it."""
        sent = {_wire.HASH_HEADER: hashlib.sha256(value).hexdigest(), **(headers or {})}
        return self.request("POST", f"/{name}", body=value, headers=sent, **options)

    def log(self, until=None) -> str:
        """What the server wrote to stderr (once *until* is in it: see ServerProcess.log)."""
        return self.process.log(until)

    def stop(self):
        """Close the clients, stop the server (SIGTERM); its exit status."""
        for client in self.clients:
            client.close()
        return self.process.stop()


@pytest.fixture
def rest_server(tmp_path):
    """Start servers with ``rest_server(args, create=True)``; stopped at the end of the test."""
    servers = []

    def start(args=(), **options):
        server = RestServer(tmp_path, args, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file and directory below *path* with its content (None for directories)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send *data* on a new connection and return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
