"""A lean HTTP/1.1 client for backends that talk to an HTTP server (rclone's rcd, S3, a REST server).

Part of the backend author's toolkit (docs/writing-a-backend.md).  A backend built on HTTP makes
one to three requests per operation, so per-request cost decides its small-item rate: urllib3
and http.client spend about 0.3 ms of CPU per request (mostly parsing headers with the email
package); this client sends a request with one system call and reads the response through a
buffered reader, for several times less (about 45 µs per request to a local rclone, system calls
included).  What it does:

* keep-alive: connections are pooled and reused, one per concurrent request (thread safe);
* pipelining: :meth:`HttpClient.pipeline` sends several independent requests at once and reads
  their responses in order (one round trip instead of several);
* range requests: :func:`range_header` builds the ``Range`` value for ``load(size=, offset=)``,
  :func:`range_data` turns a 206, a 200 (range ignored) or a 416 answer into exactly the bytes
  that slicing the whole value would give;
* connect and read timeouts; TLS when given an :class:`ssl.SSLContext`; any host and port;
* response bodies framed by Content-Length, by chunked encoding, or by the end of the connection.

What it deliberately does not do: retry (a :class:`ConnectionLost` says whether the request may
have reached the server, the backend decides), follow redirects, proxies, cookies,
authentication schemes (pass the header: ``headers={"Authorization": ...}``), content codings
(gzip), ``Expect: 100-continue``, streaming (a request body is given whole, a response body is
read whole into memory), HTTP/2.  Header names and values are latin-1 text; response header names
are lower-cased, and repeated headers are joined with ``", "``.
"""

import re
import socket
import ssl
import threading
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union, cast

from .errors import BackendError

RECV_SIZE = 256 * 1024
# bodies up to this size are copied into the request buffer so that a request is one send()
JOIN_LIMIT = 256 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_HEADERS = 100
# methods whose requests carry a Content-Length even when the body is empty (servers want it)
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_DEFAULT_PORTS = {False: 80, True: 443}
_CONTENT_RANGE = re.compile(r"(?i)bytes +(?P<first>\d+)-\d+/(?P<total>\d+|\*)")

_BytesLike = Union[bytes, bytearray, memoryview]
#: a request body: one bytes-like object, or a list/tuple of them sent one after the other
Body = Union[_BytesLike, Sequence[_BytesLike], None]
#: request headers: name -> value (a value is sent as ``str(value)``)
Headers = Mapping[str, object]


class ConnectionLost(Exception):
    """The connection could not be made, broke, timed out, or carried garbage before a whole
    response had arrived; the connection is closed.

    :ivar reused: the connection had served earlier requests.  A server may close an idle
        kept-alive connection at any moment; ``reused and not answered`` means the server most
        likely never saw the request, so even a non-idempotent one may be sent again.
    :ivar answered: some of a response had arrived (the server has seen the request).
    :ivar timed_out: the connect or read timeout expired.
    """

    def __init__(self, message: str, *, reused: bool, answered: bool, timed_out: bool = False):
        super().__init__(message)
        self.reused = reused
        self.answered = answered
        self.timed_out = timed_out


class Response:
    """One response: ``status`` (int), ``reason`` (str), ``headers`` (lower-cased names), ``data`` (bytes)."""

    __slots__ = ("data", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], data: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.data = data

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}, {len(self.data)} bytes>"


#: makes a connected socket, given the connect timeout: for transports other than TCP
Connector = Callable[[float], socket.socket]


class _Connection:
    def __init__(
        self,
        address: tuple[str, int],
        tls: Optional[ssl.SSLContext],
        server_hostname: str,
        connect_timeout: float,
        read_timeout: Optional[float],
        connect: Optional[Connector] = None,
    ):
        if connect is not None:
            sock = connect(connect_timeout)
        else:
            sock = socket.create_connection(address, timeout=connect_timeout)
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                # the handshake is part of connecting: it runs under the connect timeout
                sock = tls.wrap_socket(sock, server_hostname=server_hostname)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        # A buffered reader reads a body of known length straight into the bytes object it
        # returns: no second copy of a 4 MiB load.
        self.reader = sock.makefile("rb", buffering=RECV_SIZE)
        self.used = False
        self.answered = False  # part of the current response has arrived

    def close(self) -> None:
        for closable in (self.reader, self.sock):
            try:
                closable.close()
            except OSError:
                pass

    def _line(self) -> bytes:
        line = self.reader.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise EOFError("the server closed the connection")
        self.answered = True
        if not line.endswith(b"\r\n"):
            if len(line) > MAX_LINE_BYTES:
                raise ValueError("a line longer than 64 KiB in the response")
            raise EOFError("the server closed the connection in the middle of a line")
        return line[:-2]

    def _read(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) != n:
            raise EOFError(f"the server closed the connection {n - len(data)} bytes before the end of the body")
        return data

    def send(self, head: bytes, body_parts: tuple[_BytesLike, ...]) -> None:
        self.used = True
        self.answered = False
        if not body_parts:
            self.sock.sendall(head)
        elif sum(map(_length, body_parts)) <= JOIN_LIMIT:
            self.sock.sendall(b"".join((head, *body_parts)))
        else:
            self.sock.sendall(head)
            for part in body_parts:
                self.sock.sendall(part)

    def _head(self) -> tuple[str, int, str, dict[str, str]]:
        """The status line and headers of the next final response (interim 1xx ones skipped)."""
        while True:
            line = self._line().decode("latin-1")
            parts = line.split(" ", 2)
            if len(parts) < 2 or len(parts[1]) != 3 or parts[0][:5] != "HTTP/":
                raise ValueError(f"not an HTTP status line: {line[:100]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            while True:
                raw = self._line()
                if not raw:
                    break
                if len(headers) >= MAX_HEADERS:
                    raise ValueError("too many header lines in the response")
                name, _, value = raw.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip()
                if name in headers:
                    value = f"{headers[name]}, {value}"
                headers[name] = value
            if not 100 <= status < 200 or status == 101:
                return parts[0], status, parts[2] if len(parts) > 2 else "", headers

    def receive(self, method: str) -> tuple[Response, bool]:
        """Read one response: (Response, keep_alive)."""
        version, status, reason, headers = self._head()
        keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in (204, 304):
            data = b""
        elif status == 101:
            data, keep_alive = b"", False  # another protocol follows: not ours
        elif "transfer-encoding" in headers:
            if "chunked" in headers["transfer-encoding"].lower():
                data = self._chunked()
            else:
                data, keep_alive = self.reader.read(), False  # framed by the end of the connection
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length < 0:
                raise ValueError(f"negative Content-Length {length}")
            data = self._read(length)
        else:
            data, keep_alive = self.reader.read(), False  # the body ends when the server closes
        return Response(status, reason, headers, data), keep_alive

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self._line().split(b";", 1)[0], 16)
            if size == 0:
                while self._line():  # trailers end with an empty line
                    pass
                return b"".join(parts)
            parts.append(self._read(size))
            if self._line():
                raise ValueError("malformed chunked body: no CRLF after a chunk")


def _length(part: _BytesLike) -> int:
    return len(part) if type(part) is bytes else memoryview(part).nbytes


def _body_parts(body: Body) -> tuple[_BytesLike, ...]:
    """A request body as a tuple of bytes-like parts: *body* is one bytes-like object or a
    list/tuple of them (sent one after the other, never joined when large)."""
    if type(body) is tuple:
        return body
    if isinstance(body, (tuple, list)):
        return tuple(body)
    part = cast(Optional[_BytesLike], body)  # lists and tuples were handled above
    return (part,) if part is not None and _length(part) else ()


def _host_header(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal
    return shown if port == _DEFAULT_PORTS[tls] else f"{shown}:{port}"


class HttpClient:
    """Kept-alive HTTP/1.1 connections to one server; thread safe (one connection per concurrent
    request; up to *pool_size* idle ones are kept for reuse, others are closed after use).

    :param host: a host name or an IP address (IPv6 without brackets).
    :param tls: an :class:`ssl.SSLContext` for https (e.g. ``ssl.create_default_context()``),
        None for plain http.  *server_hostname* overrides the name checked against the
        certificate (default: *host*).
    :param headers: headers sent with every request (e.g. ``Authorization``); ``Host`` is added.
    :param connect_timeout: seconds to connect (and for the TLS handshake).
    :param read_timeout: seconds any one receive or send may wait; None: forever.
    :param connect: makes each connection instead of a TCP connect to *host*:*port*: called with
        the connect timeout, returns a connected stream socket (a Unix socket, or one end of a
        socketpair whose other end is a server process's stdin and stdout).  *host* and *port*
        then only name the server in the Host header and in errors.  Closing the socket must be
        all it takes to end that connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: Optional[ssl.SSLContext] = None,
        server_hostname: Optional[str] = None,
        headers: Optional[Headers] = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        read_timeout: Optional[float] = 60.0,
        connect: Optional[Connector] = None,
    ):
        self.host = host
        self._connect = connect
        self.port = port
        #: the value of the Host header sent (a signing scheme such as S3's needs it)
        self.host_header = _host_header(host, port, tls is not None)
        self._tls = tls
        self._server_hostname = server_hostname or host
        fixed = {"Host": self.host_header, **(headers or {})}
        self._fixed_headers = "".join(_header_line(name, value) for name, value in fixed.items()).encode("latin-1")
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<HttpClient {'https' if self._tls else 'http'}://{self.host_header}>"

    def _head(self, method: str, target: str, headers: Optional[Headers], length: int) -> bytes:
        if " " in target or "\n" in target or "\r" in target:
            raise ValueError("invalid request target: blanks and line breaks in it must be percent-encoded")
        text = f"{method} {target} HTTP/1.1\r\n"
        if headers:
            lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
            # a CR or LF inside a name or value would start a header (or a request) of its own
            if lines.count("\n") != len(headers) or lines.count("\r") != len(headers) or ":" in "".join(headers):
                # names only: a value may be a credential
                problem = "a line break in a name or value, or ':' in a name"
                raise ValueError(f"invalid headers {list(headers)!r}: {problem}")
            text += lines
        if length or method in _BODY_METHODS:
            text += f"Content-Length: {length}\r\n"
        return b"".join((text.encode("latin-1"), self._fixed_headers, b"\r\n"))

    def request(self, method: str, target: str, *, headers: Optional[Headers] = None, body: Body = b"") -> Response:
        """Send *method* *target* (``/path?query``) with *headers* and *body* (bytes-like, or a
        list/tuple of bytes-like parts sent one after the other); return the Response.

        Raises ConnectionLost if the connection could not be made, broke or timed out."""
        return self.pipeline([(method, target, headers, body)])[0]

    def pipeline(self, requests: Iterable[tuple[str, str, Optional[Headers], Body]]) -> list[Response]:
        """Send ``(method, target, headers, body)`` requests at once on one connection and read
        their responses in order.  The server handles them one after the other without waiting
        for us in between: use it for requests that do not depend on each other's outcome.
        Keep their bodies small: all of them are sent before the first response is read."""
        heads = []
        for method, target, headers, body in requests:
            parts = _body_parts(body)
            length = len(parts[0]) if len(parts) == 1 and type(parts[0]) is bytes else sum(map(_length, parts))
            heads.append((self._head(method, target, headers, length), parts, method))
        connection = self._connection()
        reused = connection.used
        responses = []
        keep_alive = True
        try:
            if len(heads) == 1:
                connection.send(heads[0][0], heads[0][1])
            else:
                connection.send(b"".join(b"".join((head, *parts)) for head, parts, _method in heads), ())
            for _head, _parts, method in heads:
                response, keep_alive = connection.receive(method)
                responses.append(response)
                if not keep_alive and len(responses) < len(heads):
                    raise EOFError("the server closed the connection in the middle of pipelined requests")
        except (OSError, EOFError, ValueError) as exc:
            answered = connection.answered or bool(responses)
            connection.close()
            raise ConnectionLost(
                f"{self.host_header}: {type(exc).__name__}: {exc}",
                reused=reused,
                answered=answered,
                timed_out=isinstance(exc, TimeoutError),
            ) from None
        except BaseException:
            connection.close()  # e.g. KeyboardInterrupt mid-response: the connection is in an unknown state
            raise
        self._release(connection, keep_alive)
        return responses

    def _connection(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise ConnectionLost(f"{self.host_header}: the client is closed", reused=False, answered=False)
            if self._idle:
                return self._idle.pop()
        try:
            return _Connection(
                (self.host, self.port),
                self._tls,
                self._server_hostname,
                self._connect_timeout,
                self._read_timeout,
                self._connect,
            )
        except OSError as exc:
            raise ConnectionLost(
                f"cannot connect to {self.host_header}: {exc}",
                reused=False,
                answered=False,
                timed_out=isinstance(exc, TimeoutError),
            ) from None

    def _release(self, connection: _Connection, keep_alive: bool) -> None:
        if keep_alive:
            with self._lock:
                if not self._closed and len(self._idle) < self._pool_size:
                    self._idle.append(connection)
                    return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; a request still running closes its own when it ends.
        Requests after close() raise ConnectionLost."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _header_line(name: str, value: object) -> str:
    line = f"{name}: {value}\r\n"
    # a CR or LF inside a name or value would start a header (or a request) of its own
    if line.count("\n") != 1 or line.count("\r") != 1 or ":" in name:
        raise ValueError(f"invalid header {name!r}: a line break in its name or value, or ':' in its name")
    return line


# --- range requests ---


def range_header(offset: int, size: Optional[int]) -> Optional[str]:
    """The ``Range`` value for *size* bytes (None: to the end) from *offset* (negative: from the
    end), or None where the whole value is wanted.  Read the answer with :func:`range_data`.

    A negative offset with a size asks for the tail (``bytes=-N``) and cuts it, so up to
    ``-offset`` bytes travel.  A size of 0 asks for one byte, so that the request still fails
    for a missing item and the answer still has a status to check."""
    if size is not None and size < 0:
        raise ValueError(f"invalid size {size!r}: an int >= 0 or None")
    if offset < 0:
        return f"bytes=-{1 if size == 0 else -offset}"
    if size is None:
        return f"bytes={offset}-" if offset else None
    return f"bytes={offset}-{offset + max(size, 1) - 1}"


def range_data(response: Response, offset: int, size: Optional[int]) -> Optional[bytes]:
    """The bytes that ``value[start:start + size]`` would give (start: *offset*, or counted from
    the end if negative, at least 0), read from the answer to a request made with
    :func:`range_header`; None if the status is not an answer with data (404, 403, 5xx...: the
    caller maps it).

    206: the server sent the range.  200: it ignored the Range header and sent the whole value,
    which is cut here.  416: the range starts at or past the end (an empty value), so b"".
    A 206 for another range than the one asked for raises BackendError."""
    status = response.status
    if status == 206:
        if size == 0 or not response.data:
            # the byte asked for only proved that the item exists; or the item is empty (and
            # rclone, for one, then answers "bytes 0--1/0")
            return b""
        _check_content_range(response, offset)
        data = response.data
        return data if size is None or len(data) <= size else data[:size]
    if status == 200:
        data = response.data
        start = offset if offset >= 0 else max(len(data) + offset, 0)
        return data[start:] if size is None else data[start : start + size]
    if status == 416:
        return b""
    return None


def _check_content_range(response: Response, offset: int) -> None:
    content_range = response.headers.get("content-range", "")
    match = _CONTENT_RANGE.fullmatch(content_range)
    if match is not None:
        first, total = int(match["first"]), match["total"]
        if offset >= 0 and first == offset:
            return
        if offset < 0 and (total == "*" or first == max(int(total) + offset, 0)):
            return
    shown = content_range[:100] or "no Content-Range"
    raise BackendError(f"asked for the bytes from offset {offset}, the server sent {shown}")


__all__ = ["ConnectionLost", "HttpClient", "Response", "range_data", "range_header"]
