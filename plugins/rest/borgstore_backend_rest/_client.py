"""REST requests on the core's HTTP client, and their answers mapped onto borgstore's errors.

One :class:`RestClient` per opened backend; thread safe (the HTTP client pools one connection
per concurrent request: for ``rest:`` URLs one server process each).  It never retries a
request that may have reached the server: that is the ``retry`` middleware's decision, made
with the ``maybe_applied`` flag set here.  One exception: a request sent on a kept-alive
connection that the server had closed while it was idle (or whose server process had died)
never reached it, and goes again at once on a new connection.
"""

import base64
import ssl
import urllib.parse

from borgstore.backends import errors
from borgstore.backends.errors import BackendConnectionError, BackendError, BackendTimeout, PermissionDenied
from borgstore.backends.http import ConnectionLost, HttpClient, Response

from . import _wire
from ._stdio import ServerProcesses
from ._url import PASSWORD_ENV, USERNAME_ENV, Location

_MESSAGE_LIMIT = 300
# what a dead stdio server (or ssh) wrote last -> the permanent error it means; anything else
# is a lost connection, which may work when tried again
_STDERR_ERRORS = (
    ("command not found", BackendError, "the server command is not installed there"),
    ("No such file or directory", BackendError, "the server command is not installed there"),
    ("Permission denied", PermissionDenied, "ssh refused the login"),
    ("Host key verification failed", BackendError, "ssh does not know the server's host key"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", BackendError, "the server's host key has changed"),
)
# every printable character but the three that end or escape a path: the PyPI server does not
# percent-decode paths, so a name reaches it intact only unencoded (ours decodes)
_SAFE = "".join(chr(c) for c in range(33, 127) if chr(c) not in "%?#")


def quote_name(name: str) -> str:
    """*name* as a request path: unchanged (what the PyPI server expects) but for what would end
    or escape the path (``%``, ``?``, ``#``), which is percent-encoded."""
    return urllib.parse.quote(name, safe=_SAFE)


def message_of(response: Response) -> str:
    """The short text a failed answer carries: the body when it is text, else the reason
    phrase (the PyPI server puts its message there and an HTML page in the body)."""
    content_type = response.headers.get("content-type", "")
    if response.data and "html" not in content_type:
        text = response.data[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
    else:
        text = response.reason.strip()
    return text or f"HTTP {response.status}"


class RestClient:
    """Requests to one REST server: over TCP (``http(s):``) or a server process's stdio (``rest:``).

    :param location: the parsed URL.
    :param shown_url: the URL with its password hidden, for messages.
    :param timeout: seconds any one send or receive may wait (and to connect, at most 10).
    :param ca_file: a file of CA certificates to check an https server's certificate with,
        instead of the system's.
    """

    def __init__(self, location: Location, shown_url: str, *, timeout: float, ca_file: str | None = None):
        self.location = location
        self.shown_url = shown_url
        self.base = location.prefix  # every target starts with it: "" or "/sub/path"
        self.requests = 0  # sent, for the benchmarks' requests-per-operation tables
        headers = {"Accept": _wire.MEDIA_TYPE}
        if location.username is not None and location.password is not None:
            token = base64.b64encode(f"{location.username}:{location.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        self.processes: ServerProcesses | None = None
        if location.command:
            self.processes = ServerProcesses(list(location.command))
            self.http = HttpClient(
                "stdio-backend", 80, headers=headers, pool_size=4, read_timeout=timeout, connect=self.processes
            )
        else:
            tls = None
            if location.tls:
                tls = ssl.create_default_context(cafile=ca_file)
            self.http = HttpClient(
                location.host,
                location.port,
                tls=tls,
                headers=headers,
                pool_size=8,
                connect_timeout=min(timeout, 10.0),
                read_timeout=timeout,
            )

    def __repr__(self):
        return f"<RestClient {self.shown_url}>"

    def close(self) -> None:
        """Close every connection and end every server process."""
        self.http.close()
        if self.processes is not None:
            self.processes.close()

    def target(self, name: str, query: dict | None = None, *, listing: bool = False) -> str:
        """The request target for item *name* ("" for the root) with *query*."""
        path = f"{self.base}/{quote_name(name)}" if name else f"{self.base}/"
        if listing and name:
            path += "/"
        return f"{path}?{urllib.parse.urlencode(query)}" if query else path

    def request(self, method: str, target: str, *, headers=None, body=b"", mutation: bool, what: str) -> Response:
        """Send one request and return the answer, whatever its status.  A lost connection
        raises BackendConnectionError (or BackendTimeout) whose ``maybe_applied`` is
        *mutation*; *what* says what was being done, for messages."""
        for attempt in (1, 2):
            self.requests += 1
            try:
                return self.http.request(method, target, headers=headers, body=body)
            except ConnectionLost as exc:
                if attempt == 1 and exc.reused and not exc.answered:
                    continue  # an idle connection the server had closed: the request never arrived
                raise self._lost(exc, what, mutation) from None
        raise AssertionError("unreachable")

    def _lost(self, exc: ConnectionLost, what: str, mutation: bool) -> BackendError:
        detail = str(exc)
        if self.processes is not None:
            words = self.processes.last_words()
            if words:
                detail += f" (the server process said: {words})"
            if not exc.answered and not exc.reused:
                # a new process that never answered: a server that cannot run is no lost connection
                for needle, cls, meaning in _STDERR_ERRORS:
                    if needle in words:
                        return cls(f"{what}: {meaning}: {' '.join(self.location.command)!r}: {detail}")
        if "CERTIFICATE_VERIFY_FAILED" in detail:
            # no network trouble: trying again later gives the same certificate
            hint = "give the server's CA certificate with the ca_file option"
            return BackendError(f"{what}: {self.shown_url}: the server's certificate is not trusted ({hint}): {detail}")
        if exc.timed_out:
            return BackendTimeout(f"{what}: {self.shown_url}: {detail}", maybe_applied=mutation)
        return BackendConnectionError(f"{what}: {self.shown_url}: connection lost: {detail}", maybe_applied=mutation)

    def error(self, response: Response, what: str, *, mutation: bool = False) -> BaseException:
        """The exception for a failed answer: the class our server names in its error header,
        else the one the PyPI server's status means."""
        message = message_of(response)
        text = f"{what}: {message}"
        header = response.headers.get(_wire.ERROR_HEADER.lower())
        # a 401 is ours to explain (what to give, or that what was given was refused)
        if header and response.status != _wire.UNAUTHORIZED_STATUS:
            exc = _wire.error_from_header(header, f"{text} [HTTP {response.status}]")
            if exc is not None:
                return exc
        if response.status == 400:
            # as the storage raised it: applications match on texts such as "Unsupported hash algorithm"
            return ValueError(message)
        return self._error_for_status(response.status, text, mutation)

    def _error_for_status(self, status: int, text: str, mutation: bool) -> BaseException:
        shown = f"{text} [HTTP {status}]"
        simple = {
            404: errors.ObjectNotFound,
            410: errors.BackendDoesNotExist,
            409: errors.BackendAlreadyExists,
            403: errors.PermissionDenied,
            507: errors.QuotaExceeded,
            416: errors.ReadRangeError,
        }
        if status in simple:
            return simple[status](shown)
        if status == 412:
            if "must not be open" in text:
                return errors.BackendMustNotBeOpen(shown)
            if "must be open" in text:
                return errors.BackendMustBeOpen(shown)
            return BackendError(shown)
        if status == _wire.UNAUTHORIZED_STATUS:
            sent = self.location.username is not None
            why = (
                "the server refused the user name and password"
                if sent
                else f"the server wants a user name and password (user:password@ in the URL, or {USERNAME_ENV} "
                f"and {PASSWORD_ENV})"
            )
            return PermissionDenied(f"{text}: authentication failed: {why} [HTTP 401]")
        if status == _wire.NOT_ACCEPTABLE_STATUS:
            return BackendError(f"{shown}: the server refused our Accept header: is it a borgstore REST server?")
        if 500 <= status < 600:
            return errors.BackendUnavailable(shown, maybe_applied=mutation)
        return BackendError(shown)
