"""One client connection of the REST server: requests read, answered and logged one after the
other, under the server's time limits; and the registry of connections that a stopping server
uses to close the idle ones and wait for the busy ones.
"""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional, Union

from . import _wire
from ._server_handler import Handler
from ._server_http import (
    CONTINUE,
    HttpError,
    Reader,
    Request,
    TimedOut,
    Transport,
    response_head,
    send_response,
)
from ._server_ops import Answer

log = logging.getLogger("borgstore.server.rest")

# a refused request's body up to this size is read and dropped, so that the connection stays usable
DISCARD_LIMIT = 1024 * 1024
# what a log line may show of a client's text: control characters and backslashes escaped
_ESCAPE = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {ord("\\"): "\\\\"})


@dataclass(frozen=True)
class Limits:
    """Time and size limits of connections (seconds; None: none).

    :ivar head_timeout: a request's head must arrive within this time once it has begun.
    :ivar idle_timeout: a kept-alive connection with no request for this long is closed.
    :ivar body_grace: a body may arrive at any pace for this long, then ...
    :ivar min_body_rate: ... at least this many bytes per second on average, else it is cut off.
    """

    head_timeout: Optional[float] = 30.0
    idle_timeout: Optional[float] = 120.0
    body_grace: Optional[float] = 30.0
    min_body_rate: float = 1024.0


UNLIMITED = Limits(None, None, None, 1.0)


def escaped(text: str) -> str:
    """*text* for a log line: control characters and backslashes escaped."""
    return text.translate(_ESCAPE)


class Connections:
    """The open connections, each idle (waiting for a request) or busy (serving one)."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._idle: set["Connection"] = set()
        self._busy: set["Connection"] = set()
        self.stopping = False

    def __len__(self) -> int:
        return len(self._idle) + len(self._busy)

    def add(self, connection: "Connection") -> None:
        """Count a new connection (idle until its first request arrives)."""
        with self._state:
            self._idle.add(connection)

    def begin_request(self, connection: "Connection") -> bool:
        """Mark *connection* busy; False if the server is stopping (the request is not served)."""
        with self._state:
            if self.stopping:
                return False
            self._idle.discard(connection)
            self._busy.add(connection)
            return True

    def end_request(self, connection: "Connection") -> None:
        """Mark *connection* idle again."""
        with self._state:
            self._busy.discard(connection)
            self._idle.add(connection)
            if self.stopping:  # only a stopping server waits for requests to end
                self._state.notify_all()

    def remove(self, connection: "Connection") -> None:
        """Forget a closed connection."""
        with self._state:
            self._busy.discard(connection)
            self._idle.discard(connection)
            self._state.notify_all()

    def stop(self) -> None:
        """Serve no new request; wake the idle connections, which then close."""
        with self._state:
            self.stopping = True
            idle = list(self._idle)
        for connection in idle:
            connection.transport.abort()

    def wait_for_requests(self, timeout: Optional[float]) -> bool:
        """After stop(): wait until no request is being served (False: *timeout* passed)."""
        with self._state:
            return self._state.wait_for(lambda: not self._busy, timeout)


class Connection:
    """Serves the requests arriving on *transport* until it ends, fails or is stopped."""

    def __init__(self, transport: Transport, handler: Handler, connections: Connections, limits: Limits):
        self.transport = transport
        self.handler = handler
        self.connections = connections
        self.limits = limits
        self.peer = escaped(transport.peer)
        self.changed = False  # a request changed the store: flushed when the connection ends

    def run(self) -> None:
        """Serve requests until the connection ends; then close it."""
        reader = Reader(self.transport)
        try:
            while reader.wait_for_data(self.limits.idle_timeout):
                if not self.connections.begin_request(self):
                    break
                try:
                    keep_alive = self.serve_one(reader)
                finally:
                    self.connections.end_request(self)
                if not keep_alive:
                    break
        except OSError:
            pass  # the peer went away
        except Exception:
            log.exception("connection from %s failed", self.peer)
        finally:
            self._end()

    def _end(self) -> None:
        try:
            if self.changed and self.connections.begin_request(self):
                try:
                    self.handler.backend.flush()
                finally:
                    self.connections.end_request(self)
        finally:
            self.connections.remove(self)
            self.transport.close()

    def serve_one(self, reader: Reader) -> bool:
        """Read, answer and log one request; True if the connection stays open for the next."""
        started = time.monotonic()
        limits = self.limits
        deadline = None if limits.head_timeout is None else started + limits.head_timeout
        try:
            request = reader.read_head(deadline)
        except HttpError as exc:
            return self._refuse(exc.status, str(exc), started)
        except TimedOut:
            return self._refuse(408, "the request head did not arrive in time", started)
        except EOFError:
            return False
        answer, user = self.handler.admit(request)
        if answer is None:
            try:
                body = self._body(reader, request)
            except TimedOut:
                return self._refuse(408, "the request body arrives too slowly", started, request, user)
            except EOFError:
                return False
            answer = self.handler.handle(request, body)
            if request.method in ("POST", "DELETE") and answer.status < 300:
                self.changed = True
        elif request.length and not answer.close:
            if request.length <= DISCARD_LIMIT:
                reader.discard(request.length, limits.body_grace, limits.min_body_rate)
            else:
                answer.close = True
        return self._answer(request, answer, user, started)

    def _body(self, reader: Reader, request: Request) -> Union[bytes, bytearray]:
        if not request.length:
            return b""
        if request.headers.get("expect", "").lower() == "100-continue":
            self.transport.sendall(CONTINUE)
        digest = hashlib.sha256() if _wire.HASH_HEADER.lower() in request.headers else None
        body = reader.read_body(request.length, self.limits.body_grace, self.limits.min_body_rate, digest)
        if digest is not None:
            request.body_sha256 = digest.hexdigest()
        return body

    def _answer(self, request: Request, answer: Answer, user: str, started: float) -> bool:
        close = answer.close or not request.keep_alive or self.connections.stopping
        body = answer.body or b""
        length = len(body) if answer.length is None else answer.length
        sent = None if request.method == "HEAD" else body
        send_response(self.transport, response_head(answer.status, length, answer.headers, close=close), sent)
        self._log(request.method, request.target, user, answer.status, len(sent or b""), started)
        if close and answer.close:
            self.transport.linger()
        return not close

    def _refuse(
        self, status: int, message: str, started: float, request: Optional[Request] = None, user: str = "-"
    ) -> bool:
        """Answer a request that cannot be read (malformed, too large, too slow), then close."""
        answer = self.handler.error(ValueError(message), status, close=True)
        try:
            send_response(
                self.transport, response_head(status, len(answer.body or b""), answer.headers, close=True), answer.body
            )
            self.transport.linger()
        except OSError:
            pass
        method, target = (request.method, request.target) if request else ("-", "-")
        self._log(method, target, user, status, len(answer.body or b""), started)
        return False

    def _log(self, method: str, target: str, user: str, status: int, sent: int, started: float) -> None:
        if status < self.handler.access_log.least_status:
            return
        milliseconds = (time.monotonic() - started) * 1000
        user = user if user == "-" else escaped(user)
        line = f'{self.peer} {user} "{method} {escaped(target)}" {status} {sent} {milliseconds:.1f}ms'
        self.handler.access_log(line)
