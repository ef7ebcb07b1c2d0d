"""moto's standalone S3 server as a process of its own on 127.0.0.1, for tests and benchmarks.

moto (``pip install 'moto[server]'``) is what the Python S3 ecosystem tests against.  It keeps
everything in memory: a restarted server is empty.  It does not check signatures or
Content-MD5, so what it proves is the protocol, not the provider's integrity checks (docs/s3.md).
"""

import os
import socket
import subprocess
import sys
import time
from typing import Optional

from borgstore.backends.toolkit import free_local_port

ACCESS_KEY_ID = "borgstore-test-key"
SECRET_ACCESS_KEY = "borgstore-test-secret"


# moto's own command line (python -m moto.server) serves each request in a thread of its own,
# and two concurrent PUTs of one key there break moto (HTTP 500, "I/O operation on closed
# file"): real S3 services do not.  So the same application is served one request at a time.
_LAUNCH = (
    "import sys; from werkzeug.serving import run_simple; "
    "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app; "
    "run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False)"
)


def moto_available() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


class MotoServer:
    """``start()`` runs moto's server application on a free port; ``url(bucket, path)`` gives an
    ``s3:`` URL with test credentials; ``kill()`` and ``start()`` again reuse the port."""

    def __init__(self, port: Optional[int] = None, log_path: Optional[str] = None):
        self.port = port or free_local_port()
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, path: str, scheme: str = "s3") -> str:
        return f"{scheme}:{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}@{self.endpoint}/{bucket}/{path}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "127.0.0.1", str(self.port)],
            stdout=log,
            stderr=log,
            env=env,
        )
        if not isinstance(log, int):  # the log file, not subprocess.DEVNULL
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode} (log: {self.log_path})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server did not listen on port {self.port} within {timeout} s")

    def make_bucket(self, bucket: str) -> None:
        """Create *bucket* (a signed PUT, as any S3 client sends it)."""
        from ._client import S3Client
        from ._sigv4 import Signer

        client = S3Client(self.endpoint, bucket, Signer(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, "us-east-1"), timeout=30)
        try:
            response = client.request("PUT", None, mutation=True, what=f"create bucket {bucket}")
            if response.status != 200:
                raise client.error(response, f"create bucket {bucket}")
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a real S3 server, for failure tests: it records
    every request, and *hook(request)* may change what happens to one.

    ``request`` is a :class:`ProxiedRequest`; the hook returns None (forward it), or one of
    ``("answer", status, body)`` (answer it instead of the server), ``("drop",)`` (close the
    connection before the server sees it), ``("lose_reply",)`` (forward it, then close the
    connection without the answer), ``("corrupt",)`` (forward it with one body byte flipped).
    One request per connection, as moto answers ``Connection: close``.
    """

    def __init__(self, upstream_port: int, hook=None):
        import threading

        self.upstream_port = upstream_port
        self.hook = hook
        self.requests: list = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, path: str, scheme: str = "s3") -> str:
        return f"{scheme}:{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}@{self.endpoint}/{bucket}/{path}"

    def close(self) -> None:
        self._sock.close()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            self.requests.append(request)
            action = self.hook(request) if self.hook else None
            if action and action[0] == "drop":
                return
            if action and action[0] == "answer":
                _status, body = action[1], action[2]
                head = f"HTTP/1.1 {_status} Injected\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode() + body)
                return
            raw = request.raw
            if action and action[0] == "corrupt" and request.body:
                flipped = bytes([request.body[0] ^ 0xFF]) + request.body[1:]
                raw = raw[: len(raw) - len(request.body)] + flipped
            try:
                with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as upstream:
                    upstream.sendall(raw)
                    answer = b"".join(iter(lambda: upstream.recv(65536), b""))
            except OSError:
                return  # the server is gone: the client sees the connection closed
            if not (action and action[0] == "lose_reply"):
                conn.sendall(answer)


class ProxiedRequest:
    def __init__(self, method: str, target: str, headers: dict, body: bytes, raw: bytes):
        self.method, self.target, self.headers, self.body, self.raw = method, target, headers, body, raw

    def __repr__(self):
        return f"<{self.method} {self.target}>"


def _read_request(conn: socket.socket) -> Optional[ProxiedRequest]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return ProxiedRequest(method, target, headers, body, head + b"\r\n\r\n" + body)
