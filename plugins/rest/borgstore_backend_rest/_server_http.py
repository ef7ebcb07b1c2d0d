"""The REST server's HTTP/1.1: reading requests and writing responses on a socket or on stdio.

http.server parses headers with the email package, about 0.3 ms of CPU per request; the small
requests of a backup are dominated by that.  Here a request head is read into one buffer (usually
with the body, in one receive), found by its blank line and split by hand, with every size bounded:
the head (:data:`MAX_HEAD_BYTES`, 431), the header count (:data:`MAX_HEADERS`, 431).  What is not
understood is refused (400) and the connection closed: chunked request bodies (411), other HTTP
versions (505), a request target with blanks or control characters.
"""

import os
import re
import socket
import ssl
import struct
import time
from http import HTTPStatus
from typing import Optional, Protocol, Union

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
RECV_SIZE = 256 * 1024
# a response body up to this size is sent with its head in one system call
JOIN_LIMIT = 256 * 1024
# how long, and for how many bytes, a closing connection drops what the peer still sends
LINGER_SECONDS = 1.0
LINGER_BYTES = 4 * 1024 * 1024
# a request body up to this size gets its whole buffer at once; a larger one grows as it arrives
PREALLOCATE_LIMIT = 1024 * 1024
# a TLS answer is sent in pieces of this size, each under the send timeout
SEND_PIECE = 1024 * 1024
_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]+").fullmatch
_DIGITS = re.compile(r"[0-9]{1,20}").fullmatch

Body = Union[bytes, bytearray, memoryview]


class Digest(Protocol):
    """What read_body needs of a hashlib object."""

    def update(self, data: Body, /) -> None: ...


class HttpError(Exception):
    """A request the server cannot take: answered with *status* and *message*, then the
    connection is closed (what follows on it cannot be trusted to start a request)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class TimedOut(Exception):
    """The peer was too slow: the head did not arrive in time, or a body fell below the pace."""


class SocketTransport:
    """A connected socket (TCP, Unix or TLS) as the server's byte stream.

    A plain socket stays in blocking mode and its time limits are the kernel's (SO_RCVTIMEO,
    SO_SNDTIMEO): a Python socket timeout costs a poll() before every receive and send, a
    system call per operation that a small request's cost notices.  A TLS socket keeps
    Python's timeouts (its reads need them to tell a timeout from a TLS error).

    :param send_timeout: the limit of each send (None: none), a peer not reading its answers.
    """

    def __init__(self, sock: socket.socket, peer: str, send_timeout: Optional[float] = None):
        self.sock = sock
        self.peer = peer
        self.recv_into = sock.recv_into
        self._kernel_timeouts = not isinstance(sock, ssl.SSLSocket)
        self._timeout: object = "unset"
        self._send_timeout = send_timeout
        if self._kernel_timeouts:
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send_timeout))
        self._send = sock.sendall if self._kernel_timeouts else self._sendall_in_pieces

    def sendall(self, data: Body) -> None:
        """Send all of *data* (each send under the send timeout)."""
        self._send(data)

    def _sendall_in_pieces(self, data: Body) -> None:
        """Python's timeout limits a whole sendall: a large answer goes in pieces, each of which
        must make it within the send timeout."""
        self.settimeout(self._send_timeout)
        view = memoryview(data)
        for start in range(0, len(view), SEND_PIECE):
            self.sock.sendall(view[start : start + SEND_PIECE])

    def settimeout(self, seconds: Optional[float]) -> None:
        """Limit the next receives to *seconds* each (None: no limit)."""
        if seconds == self._timeout:
            return
        self._timeout = seconds
        if self._kernel_timeouts:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        else:
            self.sock.settimeout(seconds)

    def abort(self) -> None:
        """Wake a thread blocked on this connection (it reads end-of-file) from another thread."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def linger(self) -> None:
        """Before closing with a request left unread: end our side, then read and drop what the
        peer still sends for a moment, so that our answer is not lost to a connection reset."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            dropped = 0
            while dropped < LINGER_BYTES and time.monotonic() < deadline:
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    break
                dropped += len(data)
        except OSError:
            pass

    def close(self) -> None:
        """Close the connection."""
        try:
            self.sock.close()
        except OSError:
            pass


class StdioTransport:
    """Two file descriptors (a pipe from ssh or a spawning client) as the server's byte stream.

    A pipe has no timeouts: the peer is the process that started us, and our end ends with it."""

    def __init__(self, in_fd: int, out_fd: int):
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.peer = "stdio"

    def recv_into(self, buffer: memoryview) -> int:
        """Read what is there into *buffer* (0: end of file)."""
        return os.readv(self.in_fd, [buffer])

    def sendall(self, data: Body) -> None:
        """Write all of *data*."""
        view = memoryview(data)
        while view:
            written = os.write(self.out_fd, view)
            view = view[written:]

    def settimeout(self, seconds: Optional[float]) -> None:
        """Pipes are not timed: nothing to do."""

    def linger(self) -> None:
        """Nothing to wait for on a pipe."""

    def abort(self) -> None:
        """A blocked read on a pipe cannot be woken: the stopping server leaves it behind."""

    def close(self) -> None:
        """Close both descriptors."""
        for fd in {self.in_fd, self.out_fd}:
            try:
                os.close(fd)
            except OSError:
                pass


Transport = Union[SocketTransport, StdioTransport]


def _timeval(seconds: Optional[float]) -> bytes:
    """A struct timeval for SO_RCVTIMEO/SO_SNDTIMEO (zero: no limit, so at least 1 µs)."""
    if seconds is None:
        return struct.pack("@ll", 0, 0)
    whole = int(seconds)
    return struct.pack("@ll", whole, max(int((seconds - whole) * 1_000_000), 0 if whole else 1))


#: what a receive under a time limit raises when the limit passes: TimeoutError for a Python
#: timeout, BlockingIOError (EAGAIN) for the kernel's
TIMEOUTS = (TimeoutError, BlockingIOError)


class Request:
    """One request head: ``method``, ``target`` (str), ``headers`` (lower-cased names),
    ``length`` (the body's, 0 without Content-Length), ``has_length``, ``keep_alive``, and
    ``body_sha256``: the hex SHA-256 of the body where it was hashed while it arrived."""

    __slots__ = ("body_sha256", "has_length", "headers", "keep_alive", "length", "method", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str], keep_alive: bool):
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.length = 0
        self.has_length = False
        self.body_sha256: Optional[str] = None


class Reader:
    """Buffered reading of requests from a transport, under deadlines."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.buffer = bytearray()
        self._chunk = bytearray(RECV_SIZE)
        self._chunk_view = memoryview(self._chunk)

    def _receive(self, timeout: Optional[float]) -> int:
        """Append what arrives within *timeout* seconds to the buffer: the count (0: end of file)."""
        if timeout is not None and timeout <= 0:
            raise TimedOut("the peer is too slow")
        self.transport.settimeout(timeout)
        try:
            received = self.transport.recv_into(self._chunk_view)
        except TIMEOUTS:
            raise TimedOut("the peer is too slow") from None
        self.buffer += self._chunk_view[:received]
        return received

    def wait_for_data(self, timeout: Optional[float]) -> bool:
        """True once a request has begun to arrive; False at end of file or after *timeout*
        seconds of silence (blank lines between requests are skipped)."""
        while True:
            while self.buffer[:2] == b"\r\n":
                del self.buffer[:2]
            if self.buffer:
                return True
            try:
                if not self._receive(timeout):
                    return False
            except TimedOut:
                return False

    def read_head(self, deadline: Optional[float]) -> Request:
        """Read and parse the next request head, all of it by *deadline* (a monotonic time)."""
        buffer = self.buffer
        searched = 0
        while True:
            end = buffer.find(b"\r\n\r\n", searched)
            if end > MAX_HEAD_BYTES:
                raise HttpError(431, "the request head is too large")
            if end >= 0:
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                return parse_head(head)
            if len(buffer) > MAX_HEAD_BYTES:
                raise HttpError(431, "the request head is too large")
            searched = max(len(buffer) - 3, 0)
            remaining = None if deadline is None else deadline - time.monotonic()
            if not self._receive(remaining):
                if buffer:
                    raise HttpError(400, "the connection ended in the middle of a request head")
                raise EOFError

    def read_body(
        self, length: int, grace: Optional[float], min_rate: float, digest: Optional[Digest] = None
    ) -> bytearray:
        """Read a body of *length* bytes.  After *grace* seconds the peer must have sent at least
        *min_rate* bytes per second since the start, else TimedOut (None: no limit).

        *digest* (a hashlib object) is fed each piece as it arrives: hashlib lets go of the GIL
        for a large piece, so the hash of a large body is computed while the rest of it is on
        its way rather than after the last byte.

        A body up to :data:`PREALLOCATE_LIMIT` is received straight into its final buffer; a
        larger one grows as its bytes arrive, so that a client announcing a large body and
        sending nothing makes the server hold nothing."""
        have = min(len(self.buffer), length)
        if length <= PREALLOCATE_LIMIT:
            body = bytearray(length)
            body[:have] = self.buffer[:have]
        else:
            body = bytearray(self.buffer[:have])
        del self.buffer[:have]
        if digest is not None:
            digest.update(memoryview(body)[:have])
        start = time.monotonic()
        while have < length:
            timeout = None
            if grace is not None:
                # the moment the bytes received so far stop being enough
                timeout = start + grace + have / min_rate - time.monotonic()
                if timeout <= 0:
                    raise TimedOut("the request body arrives too slowly")
            self.transport.settimeout(timeout)
            if length <= PREALLOCATE_LIMIT:
                piece = memoryview(body)[have:]
                received = self._receive_body(piece)
            else:
                piece = self._chunk_view
                received = self._receive_body(piece[: length - have])
                body += piece[:received]
            if digest is not None:
                digest.update(piece[:received])
            have += received
        return body

    def _receive_body(self, into: memoryview) -> int:
        try:
            received = self.transport.recv_into(into)
        except TIMEOUTS:
            raise TimedOut("the request body arrives too slowly") from None
        if not received:
            raise EOFError("the connection ended in the middle of a request body")
        return received

    def discard(self, length: int, grace: Optional[float], min_rate: float) -> None:
        """Read and drop a body of *length* bytes (a refused request's, to keep the connection)."""
        self.read_body(length, grace, min_rate)


def parse_head(head: bytes) -> Request:
    """Parse a request head (without its blank line) into a Request, or raise HttpError."""
    lines = head.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise HttpError(431, "too many request headers")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0].isalpha() or not _VISIBLE_ASCII(parts[1]):
        raise HttpError(400, "malformed request line")
    version = parts[2]
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise HttpError(505, "only HTTP/1.1 is served")
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _VISIBLE_ASCII(name):
            # also refuses folded lines (starting with a blank) and blanks before the colon
            raise HttpError(400, "malformed header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key in ("content-length", "authorization", "host"):
                raise HttpError(400, f"more than one {name.decode('ascii')} header")
            text = f"{headers[key]}, {text}"
        headers[key] = text
    connection = headers.get("connection", "").lower()
    if version == b"HTTP/1.1":
        keep_alive = "close" not in connection
    else:
        keep_alive = "keep-alive" in connection
    request = Request(parts[0].decode("ascii"), parts[1].decode("ascii"), headers, keep_alive)
    _frame_body(request)
    return request


def _frame_body(request: Request) -> None:
    headers = request.headers
    if "transfer-encoding" in headers:
        raise HttpError(411, "chunked request bodies are not accepted: send a Content-Length")
    length = headers.get("content-length")
    if length is not None:
        if not _DIGITS(length):
            raise HttpError(400, "invalid Content-Length")
        request.length = int(length)
        request.has_length = True


_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in HTTPStatus}


def response_head(
    status: int,
    length: int,
    headers: Optional[list[tuple[str, str]]] = None,
    *,
    close: bool = False,
) -> bytes:
    """The status line and headers of a response whose body is *length* bytes."""
    text = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status {status}\r\n"
    text += f"Content-Length: {length}\r\n"
    if headers:
        text += "".join([f"{name}: {value}\r\n" for name, value in headers])
    if close:
        text += "Connection: close\r\n"
    return (text + "\r\n").encode("latin-1")


def send_response(transport: Transport, head: bytes, body: Optional[Body]) -> None:
    """Send *head* and *body* (None: none, as for HEAD), in one system call where small."""
    if not body:
        transport.sendall(head)
    elif len(body) <= JOIN_LIMIT:
        transport.sendall(head + bytes(body))
    else:
        transport.sendall(head)
        transport.sendall(body)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
