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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """``start()`` runs moto's server application on a free port; ``url(bucket, path)`` gives an
    ``s3:`` URL with test credentials; ``kill()`` and ``start()`` again reuse the port."""

    def __init__(self, port: Optional[int] = None, log_path: Optional[str] = None):
        self.port = port or free_port()
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
        if log is not subprocess.DEVNULL:
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
