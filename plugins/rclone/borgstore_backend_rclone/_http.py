"""A lean HTTP/1.1 client for the one server it talks to: our own rclone rcd on 127.0.0.1.

Every store is two requests and every load one, so per-request cost decides the small-item rate.
urllib3 and http.client spend about 0.3 ms of CPU per request (mostly parsing headers with the
email package); this client sends a request with one system call and reads the response with
a buffered reader, at a tenth of that.  It speaks only what rclone's Go server sends back: a
status line, headers, and a body framed by Content-Length, by chunked encoding, or by closing
the connection.
"""

import socket
import threading

RECV_SIZE = 256 * 1024
# bodies up to this size are copied into the request buffer so that a request is one send()
JOIN_LIMIT = 256 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_HEADERS = 100


class ConnectionLost(Exception):
    """The connection failed or broke before a whole response had arrived."""

    def __init__(self, message: str, *, reused: bool, answered: bool):
        super().__init__(message)
        self.reused = reused  # the connection had served earlier requests (rclone may have closed it)
        self.answered = answered  # some of a response had arrived


class Response:
    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: dict, data: bytes):
        self.status = status
        self.headers = headers  # lower-cased names
        self.data = data


class _Connection:
    def __init__(self, port: int, connect_timeout: float, read_timeout: float):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(read_timeout)
        # A buffered reader reads a body of known length straight into the bytes object it
        # returns: no second copy of a 4 MiB load.
        self.reader = self.sock.makefile("rb", buffering=RECV_SIZE)
        self.used = False
        self.answered = False  # part of the current response has arrived

    def close(self):
        for closable in (self.reader, self.sock):
            try:
                closable.close()
            except OSError:
                pass

    def _line(self) -> bytes:
        line = self.reader.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise EOFError("rclone closed the connection")
        self.answered = True
        if not line.endswith(b"\r\n"):
            if len(line) > MAX_LINE_BYTES:
                raise ValueError("a line longer than 64 KiB in rclone's response")
            raise EOFError("rclone closed the connection in the middle of a line")
        return line[:-2]

    def _read(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) != n:
            raise EOFError(f"rclone closed the connection {n - len(data)} bytes before the end of the body")
        return data

    def send(self, head: bytes, body_parts) -> None:
        self.used = True
        self.answered = False
        if body_parts:
            total = sum(len(p) for p in body_parts)
            if total <= JOIN_LIMIT:
                self.sock.sendall(b"".join((head, *body_parts)))
            else:
                self.sock.sendall(head)
                for part in body_parts:
                    self.sock.sendall(part)
        else:
            self.sock.sendall(head)

    def receive(self, method: str) -> tuple:
        """Read one response: (Response, keep_alive)."""
        version, status_text = self._line().decode("latin-1").split(" ", 1)
        status = int(status_text[:3])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            if len(headers) > MAX_HEADERS:
                raise ValueError("too many header lines in rclone's response")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._line():  # trailers end with an empty line
                        pass
                    break
                parts.append(self._read(size))
                if self._line():
                    raise ValueError("malformed chunked body from rclone")
            data = b"".join(parts)
        elif "content-length" in headers:
            data = self._read(int(headers["content-length"]))
        else:
            data = self.reader.read()  # the body ends when rclone closes the connection
            keep_alive = False
        return Response(status, headers, data), keep_alive


class HttpClient:
    """Kept-alive connections to one local port; thread safe (one connection per concurrent request)."""

    def __init__(self, port: int, authorization: str, *, pool_size: int, connect_timeout: float, read_timeout: float):
        self.port = port
        self._fixed_headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: {authorization}\r\n".encode("latin-1")
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle = []
        self._lock = threading.Lock()
        self._closed = False

    def _head(self, method: str, target: str, headers, body_parts) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._fixed_headers]
        if headers:
            lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items())
        if body_parts or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {sum(len(p) for p in body_parts)}\r\n".encode())
        lines.append(b"\r\n")
        return b"".join(lines)

    def request(self, method: str, target: str, *, headers=None, body_parts=()) -> Response:
        """Send *method* *target* with the concatenation of *body_parts* as body.

        Raises ConnectionLost if the connection could not be made or broke."""
        return self.pipeline([(method, target, headers, body_parts)])[0]

    def pipeline(self, requests) -> list:
        """Send several ``(method, target, headers, body_parts)`` requests at once and read their
        responses in order.  rclone runs them one after the other without waiting for us in
        between; use it for requests that do not depend on each other's outcome."""
        heads = [
            (self._head(method, target, headers, body), body, method) for method, target, headers, body in requests
        ]
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            try:
                connection = _Connection(self.port, self._connect_timeout, self._read_timeout)
            except OSError as exc:
                raise ConnectionLost(
                    f"cannot connect to rclone on 127.0.0.1:{self.port}: {exc}", reused=False, answered=False
                ) from None
        reused = connection.used
        responses = []
        keep_alive = True
        try:
            if len(heads) == 1:
                connection.send(heads[0][0], heads[0][1])
            else:
                connection.send(b"".join(head + b"".join(body) for head, body, _method in heads), ())
            for _head, _body, method in heads:
                response, keep = connection.receive(method)
                responses.append(response)
                keep_alive = keep_alive and keep
                if not keep and len(responses) < len(heads):
                    raise EOFError("rclone closed the connection in the middle of pipelined requests")
        except (OSError, EOFError, ValueError) as exc:
            answered = connection.answered or bool(responses)
            connection.close()
            raise ConnectionLost(f"{type(exc).__name__}: {exc}", reused=reused, answered=answered) from None
        except BaseException:
            connection.close()  # e.g. KeyboardInterrupt mid-response: the connection is in an unknown state
            raise
        if keep_alive:
            with self._lock:
                if not self._closed and len(self._idle) < self._pool_size:
                    self._idle.append(connection)
                    connection = None
        if connection is not None:
            connection.close()
        return responses

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
