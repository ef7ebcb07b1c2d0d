"""borgstore.backends.http against a real HTTP server started here (http.server on 127.0.0.1)."""

import hashlib
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from borgstore.backends.errors import BackendError
from borgstore.backends.http import ConnectionLost, HttpClient, Response, range_data, range_header

VALUE = bytes(range(256)) * 4 + b"tail"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.connection_number = self.server.connections

    def finish(self):
        super().finish()
        self.server.closed.release()

    def _reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_HEAD(self):
        self._reply(200, b"x" * 10)

    def do_PUT(self):
        self.do_POST()

    def do_POST(self):
        body = self._body()
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "connection": self.connection_number,
        }
        self._reply(200, json.dumps(seen).encode(), [("Content-Type", "application/json")])

    def do_GET(self):
        self.server.requests.append((self.connection_number, self.path))
        route = getattr(self, "get_" + self.path.strip("/").partition("?")[0].replace("-", "_"), None)
        if route is None:
            self._reply(404, b"no such route")
        else:
            route()

    def get_echo(self):
        self.do_POST()

    def get_item(self):
        self._serve_range(VALUE)

    def get_empty(self):
        self._serve_range(b"")

    def get_ignores_range(self):
        self._reply(200, VALUE)

    def get_wrong_range(self):
        self._reply(206, VALUE[:4], [("Content-Range", f"bytes 0-3/{len(VALUE)}")])

    def _serve_range(self, value):
        wanted = self.headers.get("Range")
        if wanted is None:
            return self._reply(200, value)
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        if not first:  # a suffix: the last N bytes
            start, end = max(len(value) - int(last), 0), len(value) - 1
        else:
            start, end = int(first), min(int(last) if last else len(value) - 1, len(value) - 1)
        if not value or start >= len(value):
            return self._reply(416, b"", [("Content-Range", f"bytes */{len(value)}")])
        self._reply(206, value[start : end + 1], [("Content-Range", f"bytes {start}-{end}/{len(value)}")])

    def get_chunked(self):
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )

    def get_interim(self):
        self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        self._reply(200, b"final")

    def get_no_content(self):
        self.send_response(204)
        self.end_headers()

    def get_close_body(self):
        # neither a length nor chunks: the body ends when the connection does
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"until the end")
        self.close_connection = True

    def get_then_close(self):
        # looks kept alive, but the server closes it after the response (as an idle timeout does)
        self._reply(200, b"bye")
        self.close_connection = True

    def get_partial(self):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"only ten b")
        self.close_connection = True

    def get_slow(self):
        self.server.release.wait(30)
        self._reply(200, b"late")


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.connections = 0
    httpd.closed = threading.Semaphore(0)
    httpd.requests = []
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def client(server):
    made = HttpClient("127.0.0.1", server.server_address[1], headers={"Authorization": "Bearer t0ken"})
    yield made
    made.close()


def test_requests_reuse_one_kept_alive_connection(client, server):
    """Several requests one after the other go over one connection, with Host and the fixed headers."""
    for i in range(5):
        response = client.request("POST", f"/echo?i={i}", body=b"abc")
        seen = json.loads(response.data)
        assert (response.status, seen["method"], seen["path"], seen["length"]) == (200, "POST", f"/echo?i={i}", 3)
        assert seen["headers"]["Host"] == f"127.0.0.1:{server.server_address[1]}"
        assert seen["headers"]["Authorization"] == "Bearer t0ken"
        assert response.headers["content-type"] == "application/json"
    assert server.connections == 1


def test_pipelined_requests_share_a_connection_and_answer_in_order(client, server):
    """pipeline() sends its requests at once and returns their responses in order."""
    responses = client.pipeline(
        [
            ("GET", "/echo?n=1", None, b""),
            ("GET", "/item", {"Range": "bytes=0-3"}, b""),
            ("POST", "/echo?n=3", {"X-Mine": "yes"}, (b"part one, ", bytearray(b"part two"))),
            ("GET", "/chunked", None, b""),
        ]
    )
    assert [r.status for r in responses] == [200, 206, 200, 200]
    assert json.loads(responses[0].data)["path"] == "/echo?n=1"
    assert responses[1].data == VALUE[:4]
    third = json.loads(responses[2].data)
    assert (third["length"], third["headers"]["X-Mine"]) == (len(b"part one, part two"), "yes")
    assert responses[3].data == b"hello world"
    assert server.connections == 1


def test_bodies_of_every_kind_arrive_whole(client):
    """Bytes, bytearray, memoryview and lists of parts, small and larger than the join limit; an
    empty PUT carries Content-Length 0."""
    big = bytes(range(256)) * 1500  # 384 KB: sent in parts, not joined
    for body in (b"small", bytearray(b"array"), memoryview(big), [b"head", memoryview(big), b"tail"]):
        expected = b"".join(bytes(p) for p in body) if isinstance(body, list) else bytes(body)
        seen = json.loads(client.request("POST", "/echo", body=body).data)
        assert (seen["length"], seen["sha256"]) == (len(expected), hashlib.sha256(expected).hexdigest())
    seen = json.loads(client.request("PUT", "/echo").data)
    assert (seen["length"], seen["headers"]["Content-Length"]) == (0, "0")


def test_chunked_head_interim_and_empty_responses_keep_the_connection(client, server):
    """A chunked body (with an extension and a trailer), a HEAD answer (a length but no body), an
    interim 103 before the answer and a 204 are each read exactly: the connection stays usable."""
    chunked = client.request("GET", "/chunked")
    assert (chunked.status, chunked.data) == (200, b"hello world")
    head = client.request("HEAD", "/anything")
    assert (head.status, head.data, head.headers["content-length"]) == (200, b"", "10")
    interim = client.request("GET", "/interim")
    assert (interim.status, interim.data) == (200, b"final")
    assert client.request("GET", "/no-content").status == 204
    assert client.request("GET", "/missing").status == 404
    assert server.connections == 1


def test_a_body_ended_by_closing_the_connection(client, server):
    """Without a length or chunks the body is everything up to the close; that connection is not reused."""
    response = client.request("GET", "/close-body")
    assert (response.status, response.data) == (200, b"until the end")
    assert client.request("GET", "/echo").status == 200
    assert server.connections == 2


def test_an_idle_connection_closed_by_the_server(client, server):
    """The server closes a kept-alive connection after answering: the next request on it fails as
    reused and unanswered (safe to send again), and the one after that gets a new connection."""
    assert client.request("GET", "/then-close").data == b"bye"
    assert server.closed.acquire(timeout=10)  # the server has closed it
    with pytest.raises(ConnectionLost) as raised:
        client.request("POST", "/echo", body=b"x")
    assert (raised.value.reused, raised.value.answered, raised.value.timed_out) == (True, False, False)
    assert client.request("GET", "/echo").status == 200
    assert server.connections == 2


def test_a_response_cut_short_was_answered(client):
    """A body shorter than its Content-Length: ConnectionLost, answered (the server saw the request)."""
    with pytest.raises(ConnectionLost) as raised:
        client.request("GET", "/partial")
    assert (raised.value.reused, raised.value.answered) == (False, True)
    assert "before the end of the body" in str(raised.value)


def test_a_close_in_the_middle_of_a_pipeline(client):
    """The server closes after the first of three pipelined requests: ConnectionLost, answered."""
    with pytest.raises(ConnectionLost) as raised:
        client.pipeline([("GET", "/then-close", None, b""), ("GET", "/echo", None, b""), ("GET", "/echo", None, b"")])
    assert raised.value.answered


def test_the_read_timeout(server):
    """A server that does not answer within the read timeout: ConnectionLost, timed_out; the client
    works again afterwards."""
    client = HttpClient("127.0.0.1", server.server_address[1], read_timeout=0.2)
    try:
        with pytest.raises(ConnectionLost) as raised:
            client.request("GET", "/slow")
        assert (raised.value.timed_out, raised.value.answered, raised.value.reused) == (True, False, False)
        server.release.set()
        assert client.request("GET", "/echo").status == 200
    finally:
        client.close()


def test_a_refused_connection():
    """Nobody listening: ConnectionLost naming the address, neither reused nor answered."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        client = HttpClient("127.0.0.1", port)
        with pytest.raises(ConnectionLost, match=f"cannot connect to 127.0.0.1:{port}") as raised:
            client.request("GET", "/")
    assert not raised.value.reused and not raised.value.answered


def test_pool_size_and_threads(server):
    """Threads share one client: every answer reaches its own thread, and no more connections are
    opened than requests ran at once; with pool_size=0 none is kept."""
    client = HttpClient("127.0.0.1", server.server_address[1], pool_size=4)
    errors = []

    def work(t):
        for i in range(20):
            seen = json.loads(client.request("POST", f"/echo?t={t}&i={i}", body=b"x" * i).data)
            if (seen["path"], seen["length"]) != (f"/echo?t={t}&i={i}", i):
                errors.append(seen)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert errors == []
    assert 1 <= server.connections <= 4
    unpooled = HttpClient("127.0.0.1", server.server_address[1], pool_size=0)
    before = server.connections
    for _ in range(3):
        assert unpooled.request("GET", "/echo").status == 200
    assert server.connections == before + 3


def test_close_ends_idle_connections_and_later_requests_fail(client, server):
    """close() closes the kept connection (the server sees it end); requests after it raise."""
    assert client.request("GET", "/echo").status == 200
    client.close()
    assert server.closed.acquire(timeout=10)
    with pytest.raises(ConnectionLost, match="closed"):
        client.request("GET", "/echo")


def test_line_breaks_cannot_smuggle_headers_or_requests(client, server):
    """A CR or LF in a header name or value, or a blank in the target, is a ValueError; nothing is sent."""
    for kwargs in ({"headers": {"X-A": "v\r\nX-Injected: 1"}}, {"headers": {"X\nB": "v"}}, {"headers": {"A:B": "v"}}):
        with pytest.raises(ValueError):
            client.request("GET", "/echo", **kwargs)
    with pytest.raises(ValueError):
        client.request("GET", "/echo HTTP/1.1\r\nHost: elsewhere\r\n\r\nGET /echo")
    with pytest.raises(ValueError):
        HttpClient("127.0.0.1", 1, headers={"Authorization": "a\nb"})
    assert server.connections == 0


def test_the_host_header():
    """The port is left out where it is the scheme's default; IPv6 literals are bracketed."""
    assert HttpClient("example.org", 80).host_header == "example.org"
    assert HttpClient("example.org", 8080).host_header == "example.org:8080"
    assert HttpClient("example.org", 443, tls=ssl.create_default_context()).host_header == "example.org"
    assert HttpClient("::1", 8080).host_header == "[::1]:8080"


# --- ranges ---


def sliced(value: bytes, offset: int, size):
    start = offset if offset >= 0 else max(len(value) + offset, 0)
    return value[start:] if size is None else value[start : start + size]


RANGES = [
    (0, None),
    (0, 5),
    (3, 4),
    (3, None),
    (1027, None),
    (1028, None),
    (5000, None),
    (5000, 3),
    (1020, 100),
    (-5, None),
    (-5, 2),
    (-1028, None),
    (-5000, None),
    (-5000, 3),
    (0, 0),
    (7, 0),
    (-3, 0),
    (2000, 0),
]


@pytest.mark.parametrize("path", ["/item", "/ignores-range", "/empty"])
def test_range_requests_give_what_slicing_gives(client, path):
    """range_header + range_data return value[start:start+size] (start from the end if negative,
    sizes past the end short, size 0 empty) whether the server answers 206, 200 (range ignored) or 416."""
    value = b"" if path == "/empty" else VALUE
    for offset, size in RANGES:
        header = range_header(offset, size)
        response = client.request("GET", path, headers={"Range": header} if header else None)
        assert response.status in (200, 206, 416)
        assert range_data(response, offset, size) == sliced(value, offset, size), (offset, size, response.status)


def test_range_header_values():
    """The whole value needs no header; a tail is a suffix range; size 0 still asks for a byte."""
    assert range_header(0, None) is None
    assert range_header(10, None) == "bytes=10-"
    assert range_header(10, 5) == "bytes=10-14"
    assert range_header(-7, None) == "bytes=-7"
    assert range_header(-7, 2) == "bytes=-7"
    assert range_header(10, 0) == "bytes=10-10"
    assert range_header(-7, 0) == "bytes=-1"
    with pytest.raises(ValueError):
        range_header(0, -1)


def test_range_data_refuses_another_range_and_passes_errors_on(client):
    """A 206 for other bytes than asked for is a BackendError; a status without data gives None."""
    wrong = client.request("GET", "/wrong-range", headers={"Range": "bytes=100-103"})
    with pytest.raises(BackendError, match="offset 100"):
        range_data(wrong, 100, 4)
    assert range_data(wrong, 0, 4) == VALUE[:4]
    assert range_data(client.request("GET", "/missing"), 0, None) is None


def test_range_data_of_an_empty_partial_answer():
    """A 206 without bytes is an empty item, whatever its Content-Range says (rclone: "0--1/0")."""
    empty = Response(206, "Partial Content", {"content-range": "bytes 0--1/0"}, b"")
    assert range_data(empty, 0, 10) == b""
    assert range_data(empty, -5, None) == b""


# --- TLS ---


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for "localhost": (certificate file, key file)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_with_a_verified_certificate(server, certificate):
    """With an SSLContext the client speaks TLS, checks the certificate against server_hostname,
    and keeps the TLS connection alive; a context that does not trust the certificate refuses it."""
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    trusted = ssl.create_default_context(cafile=str(cert))
    trusting = HttpClient("127.0.0.1", port, tls=trusted, server_hostname="localhost")
    try:
        for _ in range(3):
            assert json.loads(trusting.request("POST", "/echo", body=b"secret").data)["length"] == 6
        assert trusting.request("GET", "/item", headers={"Range": "bytes=2-4"}).data == VALUE[2:5]
    finally:
        trusting.close()
    assert server.connections == 1
    distrusting = HttpClient("127.0.0.1", port, tls=ssl.create_default_context(), server_hostname="localhost")
    with pytest.raises(ConnectionLost, match="cannot connect.*CERTIFICATE_VERIFY_FAILED") as raised:
        distrusting.request("GET", "/echo")
    assert not raised.value.answered


def test_the_connect_timeout_covers_the_tls_handshake(certificate):
    """A server that accepts TCP but never answers the TLS handshake: ConnectionLost, timed out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # the kernel accepts connections; nobody ever speaks on them
        port = listener.getsockname()[1]
        client = HttpClient("127.0.0.1", port, tls=ssl.create_default_context(), connect_timeout=0.2)
        with pytest.raises(ConnectionLost, match="cannot connect") as raised:
            client.request("GET", "/")
    assert (raised.value.timed_out, raised.value.reused, raised.value.answered) == (True, False, False)


def test_a_connect_function_serves_other_transports(server):
    """With connect=, each connection is the socket the function returns (here a Unix socketpair
    whose other end this test relays to the TCP server): requests, keep-alive and the timeout it
    is given all work as over TCP, and a failing connect is a ConnectionLost."""
    made = []

    def relay(one, other):
        while data := one.recv(65536):
            other.sendall(data)
        other.shutdown(socket.SHUT_WR)

    def connect(timeout):
        ours, theirs = socket.socketpair()
        upstream = socket.create_connection(server.server_address)
        for a, b in ((theirs, upstream), (upstream, theirs)):
            threading.Thread(target=relay, args=(a, b), daemon=True).start()
        made.append(timeout)
        return ours

    client = HttpClient("stdio-server", 0, connect=connect, connect_timeout=3.5)
    for i in range(3):
        seen = json.loads(client.request("POST", f"/echo?i={i}", body=VALUE).data)
        assert (seen["path"], seen["length"], seen["headers"]["Host"]) == (f"/echo?i={i}", len(VALUE), "stdio-server:0")
    assert made == [3.5]  # one connection, kept alive
    client.close()

    def refuse(timeout):
        raise ConnectionRefusedError("no server process")

    with pytest.raises(ConnectionLost, match="no server process") as caught:
        HttpClient("stdio-server", 0, connect=refuse).request("GET", "/echo")
    assert (caught.value.reused, caught.value.answered) == (False, False)
