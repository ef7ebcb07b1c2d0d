"""From a request to an answer: the checks that come before the storage (method, Accept,
authentication, body size), the operation, and errors turned into statuses.

Error answers carry the status of :data:`_wire.STATUS_OF_ERROR`, :data:`_wire.ERROR_HEADER`,
and a short text that never shows the storage's location or a secret.
"""

import base64
import binascii
import hmac
import logging
import os
import time
from typing import Optional

from borgstore.backends.errors import BackendError, BackendUnavailable, PermissionDenied

from . import _wire
from ._server_backend import SharedBackend
from ._server_http import Body, Request
from ._server_ops import Answer, HashMismatch, LengthRequired, Target, operation_for

log = logging.getLogger("borgstore.server.rest")

METHODS = ("GET", "HEAD", "POST", "DELETE", "OPTIONS")
REALM = 'Basic realm="borgstore", charset="UTF-8"'
MAX_ERROR_TEXT = 500


class Credentials:
    """The username and password a client must send (HTTP basic auth); compared in constant
    time, both of them always, as UTF-8 (our client) and as latin-1 (python-requests)."""

    def __init__(self, username: str, password: str):
        self.username = username
        self._pairs: list[tuple[bytes, bytes]] = []
        for encoding in ("utf-8", "latin-1"):
            try:
                pair = (username.encode(encoding), password.encode(encoding))
            except UnicodeEncodeError:
                continue
            if pair not in self._pairs:
                self._pairs.append(pair)

    def check(self, authorization: Optional[str]) -> bool:
        """True if the Authorization header value carries the right username and password."""
        given_user, given_password = b"", b""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                given_user, _, given_password = base64.b64decode(token.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                given_user, given_password = b"", b""
        matched = False
        for user, password in self._pairs:
            user_ok = hmac.compare_digest(given_user, user)
            password_ok = hmac.compare_digest(given_password, password)
            matched |= user_ok & password_ok
        return matched


class Scrubber:
    """Takes the storage's location and the secrets out of a text sent to a client."""

    def __init__(self, secrets: list[str]):
        self._secrets = sorted({secret for secret in secrets if secret and len(secret) > 1}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "<store>")
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + "..."
        return text


class AccessLog:
    """Where the one line per request goes: the logger ``borgstore.server.rest`` at INFO (for
    an application that set up logging), or, given a file descriptor, straight to it with a
    timestamp, in one write (the command line: a fifth of the cost of a log record).

    *least_status*: requests answered with a lower status are not logged.  With ``--stdio`` it is
    400: that server's stderr goes to its one client (through ssh), not to the operator, so a
    line per request would only cost an ssh message per request; failures are still told."""

    def __init__(self, fd: Optional[int] = None, *, least_status: int = 0):
        self._fd = fd
        self.least_status = least_status
        self._second = -1
        self._stamp = ""

    def __call__(self, line: str) -> None:
        """Log *line* (already escaped)."""
        if self._fd is None:
            log.info("%s", line)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            # threads may race here: each writes a correct stamp
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        text = f"{self._stamp},{int((now - second) * 1000):03d} {line}\n"
        try:
            os.write(self._fd, text.encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # a log that cannot be written must not stop the serving


class Handler:
    """Answers requests with the operations of *backend*; *access_log* takes a line per request."""

    def __init__(
        self,
        backend: SharedBackend,
        *,
        credentials: Optional[Credentials],
        max_body: int,
        scrub: Scrubber,
        access_log: Optional[AccessLog] = None,
    ):
        self.access_log = access_log or AccessLog()
        self.backend = backend
        self.credentials = credentials
        self.max_body = max_body
        self.scrub = scrub

    def admit(self, request: Request) -> tuple[Optional[Answer], str]:
        """Check a request before its body is read: (an error answer or None, the user to log)."""
        if request.method not in METHODS:
            answer = self.error(ValueError(f"method {request.method} is not served"), 405)
            answer.headers.append(("Allow", ", ".join(METHODS)))
            return answer, "-"
        accept = request.headers.get("accept", "")
        if accept != _wire.MEDIA_TYPE and _wire.MEDIA_TYPE not in _media_types(accept):
            return self.error(ValueError(f"not acceptable: send Accept: {_wire.MEDIA_TYPE}"), 406), "-"
        user = "-"
        if self.credentials is not None:
            if not self.credentials.check(request.headers.get("authorization")):
                answer = self.error(PermissionDenied("authentication required"), 401)
                answer.headers.append(("WWW-Authenticate", REALM))
                return answer, "-"
            user = self.credentials.username
        if request.length > self.max_body:
            message = f"the body is larger than this server accepts ({self.max_body} bytes)"
            return self.error(ValueError(message), 413, close=True), user
        return None, user

    def handle(self, request: Request, body: Body) -> Answer:
        """The answer to an admitted request whose body has been read."""
        try:
            target = Target(request.target) if request.target != "*" else Target("/")
            if request.method == "OPTIONS":
                return self.options(target)
            return operation_for(request.method, target)(self.backend, target, request, body)
        except LengthRequired as exc:
            return self.error(ValueError(str(exc)), 411)
        except HashMismatch as exc:
            return self.error(exc, _wire.HASH_MISMATCH_STATUS)
        except (BackendError, ValueError, TypeError) as exc:
            return self.error(exc)
        except Exception as exc:  # an unforeseen failure is answered, logged, and survived
            log.exception("unexpected failure of %s %r", request.method, request.target[:200])
            return self.error(BackendError(f"internal error ({type(exc).__name__})"), 500)

    def options(self, target: Target) -> Answer:
        """``OPTIONS /``: the extensions this server serves."""
        if target.name:
            raise ValueError("OPTIONS is served for / only")
        capabilities = ["store_new"] if self.backend.has_store_new else []
        return Answer(200, b"", [(_wire.CAPABILITIES_HEADER, ",".join(capabilities)), ("Allow", ", ".join(METHODS))])

    def error(self, exc: BaseException, status: Optional[int] = None, *, close: bool = False) -> Answer:
        """The answer for *exc*: its status (or *status*), ERROR_HEADER and a scrubbed text."""
        text = self.scrub(str(exc) or type(exc).__name__)
        headers = [(_wire.ERROR_HEADER, _error_header(exc)), ("Content-Type", "text/plain; charset=utf-8")]
        return Answer(status or _wire.status_of_error(exc), text.encode("utf-8", "replace"), headers, close=close)

    def overloaded(self) -> Answer:
        """The answer to a connection beyond the limit."""
        return self.error(BackendUnavailable("too many connections, try again later"), 503, close=True)


def _error_header(exc: BaseException) -> str:
    """ERROR_HEADER for *exc*: a bad request of any kind (a JSON error, a name that does not
    decode) is a ValueError to the client, as the status 400 says."""
    if isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, BackendError):
        return "ValueError"
    return _wire.error_header(exc)


def _media_types(accept: str) -> list[str]:
    return [part.split(";", 1)[0].strip() for part in accept.split(",")]
