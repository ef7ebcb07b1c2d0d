"""The client's requests and its reading of answers, against a scripted HTTP server: the error
header and the PyPI statuses mapped onto borgstore's errors, the 422 resend, authentication,
range answers, and lost connections (resent only where the request cannot have arrived)."""

import base64
import json
import socket
import threading
import time

import pytest
from borgstore_backend_rest import _wire, rest_backend_from_url

from borgstore.backends import errors


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 whose answers come from ``answer(method, target,
    headers, body)``: raw response bytes, or None to close the connection without answering.
    ``requests`` records (method, target, headers, body)."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (raw := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = raw.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                self.requests.append((method, target, headers, body))
                response = self.answer(method, target, headers, body)
                if response is None:
                    return
                if isinstance(response, tuple):  # (answer, "then close"): an idle timeout
                    conn.sendall(response[0])
                    return
                conn.sendall(response)

    def close(self):
        self.listener.close()


def reply(status, body=b"", headers=None, reason="X"):
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return head.encode() + b"\r\n" + body


def pypi_error(status, message):
    """An error as the PyPI server sends it: the message as the reason, an HTML page, close."""
    page = f"<html><body>{message}</body></html>".encode()
    return reply(status, page, {"Content-Type": "text/html", "Connection": "close"}, reason=message)


@pytest.fixture
def scripted():
    """A factory: ``scripted(answer, url_suffix="")`` -> (opened backend, server)."""
    made = []

    def make(answer, *, prefix="/", extensions=None, credentials=""):
        def with_open(method, target, headers, body):
            if method == "OPTIONS":
                if extensions is None:
                    return pypi_error(501, "Unsupported method ('OPTIONS')")
                return reply(200, headers={_wire.CAPABILITIES_HEADER: extensions})
            if method == "HEAD" and target.rstrip("/") == prefix.rstrip("/"):
                return reply(200, headers={_wire.IS_DIRECTORY_HEADER: "true"})
            return answer(method, target, headers, body)

        server = ScriptedServer(with_open)
        backend = rest_backend_from_url(f"http://{credentials}127.0.0.1:{server.port}{prefix}", timeout=5)
        backend.open()
        made.append((backend, server))
        return backend, server

    yield make
    for backend, server in made:
        if backend.opened:
            backend.close()
        server.close()


@pytest.mark.parametrize(
    "status, message, cls",
    [
        (404, "x", errors.ObjectNotFound),
        (410, "gone", errors.BackendDoesNotExist),
        (409, "exists", errors.BackendAlreadyExists),
        (412, "backend must be open", errors.BackendMustBeOpen),
        (412, "backend must not be open", errors.BackendMustNotBeOpen),
        (412, "something else", errors.BackendError),
        (403, "no", errors.PermissionDenied),
        (507, "full", errors.QuotaExceeded),
        (416, "range", errors.ReadRangeError),
        (500, "oops", errors.BackendUnavailable),
        (503, "busy", errors.BackendUnavailable),
        (418, "teapot", errors.BackendError),
    ],
)
def test_pypi_statuses(scripted, status, message, cls):
    backend, _server = scripted(lambda *request: pypi_error(status, message))
    with pytest.raises(cls) as info:
        backend.delete("data/x")
    assert type(info.value) is cls
    assert message in str(info.value) and f"HTTP {status}" in str(info.value)
    # a 5xx answer to a mutation may have been applied (a proxy's 502/504 say nothing about it)
    assert info.value.temporary == (status in (500, 503))
    assert info.value.maybe_applied == (status in (500, 503))


def test_bad_request_is_value_error(scripted):
    backend, _server = scripted(lambda *request: pypi_error(400, "Unsupported hash algorithm: nope"))
    with pytest.raises(ValueError, match="^Unsupported hash algorithm: nope$"):
        backend.hash("data/x", "nope")


@pytest.mark.parametrize(
    "value, cls, temporary, maybe_applied",
    [
        ("ObjectAlreadyExists", errors.ObjectAlreadyExists, False, False),
        ("BackendAlreadyExists", errors.BackendAlreadyExists, False, False),
        ("BackendUnavailable; temporary", errors.BackendUnavailable, True, False),
        ("BackendConnectionError; temporary; maybe-applied", errors.BackendConnectionError, True, True),
        ("BackendError", errors.BackendError, False, False),
    ],
)
def test_error_header_names_the_class(scripted, value, cls, temporary, maybe_applied):
    answer = reply(409 if "Exists" in value else 500, b"the storage said no", {_wire.ERROR_HEADER: value})
    backend, _server = scripted(lambda *request: answer)
    with pytest.raises(cls) as info:
        backend.store("data/x", b"v")
    assert type(info.value) is cls
    assert (info.value.temporary, info.value.maybe_applied) == (temporary, maybe_applied)
    assert "the storage said no" in str(info.value)


def test_unknown_error_header_falls_back_to_the_status(scripted):
    backend, _server = scripted(lambda *request: reply(404, b"nope", {_wire.ERROR_HEADER: "os.system"}))
    with pytest.raises(errors.ObjectNotFound):
        backend.load("data/x")


def test_requests_as_pypi_sends_them(scripted):
    backend, server = scripted(lambda *request: reply(200, b"[]"), prefix="/sub/path/")
    backend.store("data/ab/item", b"value")
    backend.move("data/a", "data/b")
    list(backend.list("data"))
    list(backend.list(""))
    backend.mkdir("data/ab")
    backend.rmdir("data/ab")
    backend.delete("data/ab/item")
    sent = [(method, target) for method, target, _headers, _body in server.requests]
    assert sent[:2] == [("OPTIONS", "/sub/path/"), ("HEAD", "/sub/path/")]
    assert sent[2:] == [
        ("POST", "/sub/path/data/ab/item"),
        ("POST", "/sub/path/?cmd=move&current=data%2Fa&new=data%2Fb"),
        ("GET", "/sub/path/data/"),
        ("GET", "/sub/path/"),
        ("POST", "/sub/path/data/ab?cmd=mkdir"),
        ("DELETE", "/sub/path/data/ab?cmd=rmdir"),
        ("DELETE", "/sub/path/data/ab/item"),
    ]
    _method, _target, headers, body = server.requests[2]
    assert headers["accept"] == _wire.MEDIA_TYPE
    assert headers[_wire.HASH_HEADER.lower()] == "cd42404d52ad55ccfa9aca4adc828aa5800ad9d385a0671fbcbf724118320619"
    assert body == b"value"
    assert "authorization" not in headers


def test_names_that_would_break_the_path_are_encoded(scripted):
    backend, server = scripted(lambda *request: reply(200, b"v"))
    backend.load("data/a?b#c%d[x]")
    assert server.requests[-1][1] == "/data/a%3Fb%23c%25d[x]"


def test_basic_auth(scripted):
    backend, server = scripted(lambda *request: reply(200), credentials="us%40er:p%3Ass@")
    backend.delete("data/x")
    expected = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert all(headers["authorization"] == expected for _m, _t, headers, _b in server.requests)


def test_401_says_authentication(scripted):
    backend, _server = scripted(lambda *request: reply(401, b"Unauthorized"))
    with pytest.raises(errors.PermissionDenied, match="authentication failed.*BORGSTORE_REST_USERNAME"):
        backend.load("data/x")


def test_open_refused_without_credentials():
    server = ScriptedServer(lambda *request: reply(401, b"Unauthorized"))
    try:
        backend = rest_backend_from_url(f"http://u:secret@127.0.0.1:{server.port}/")
        with pytest.raises(errors.PermissionDenied, match="refused the user name and password") as info:
            backend.open()
        assert "secret" not in str(info.value)
        assert not backend.opened
    finally:
        server.close()


def test_hash_mismatch_is_resent_then_temporary(scripted):
    backend, server = scripted(lambda *request: reply(422, b"Content hash verification failed, please retry"))
    with pytest.raises(errors.BackendConnectionError, match="422") as info:
        backend.store("data/x", b"v")
    assert info.value.temporary and not info.value.maybe_applied
    assert [m for m, _t, _h, _b in server.requests].count("POST") == 3


def test_hash_mismatch_once_then_stored(scripted):
    answers = iter([reply(422), reply(200)])
    backend, server = scripted(lambda *request: next(answers))
    backend.store("data/x", memoryview(b"value"))
    assert [m for m, _t, _h, _b in server.requests].count("POST") == 2


def test_store_new_only_where_announced(scripted):
    backend, server = scripted(lambda *request: reply(200))
    assert not backend.capabilities.store_new
    with pytest.raises(errors.BackendError, match="does not offer store_new"):
        backend.store_new("data/x", b"v")
    assert not [t for _m, t, _h, _b in server.requests if "store_new" in t]  # never sent to a PyPI server

    backend, server = scripted(lambda *request: reply(200), extensions="store_new, other")
    assert backend.capabilities.store_new
    backend.store_new("data/x", b"v")
    assert server.requests[-1][1] == "/data/x?cmd=store_new"


@pytest.mark.parametrize(
    "size, offset, sent, answer, expected",
    [
        (None, 0, None, reply(200, b"0123456789"), b"0123456789"),
        (3, 2, "bytes=2-4", reply(206, b"234"), b"234"),
        (0, 2, "bytes=2-2", reply(206, b"2"), b""),
        (2, -4, "bytes=-4", reply(206, b"6789"), b"67"),
        (None, 20, "bytes=20-", reply(206, b""), b""),
        # a server (or proxy) that ignores Range sends everything: cut here
        (3, 2, "bytes=2-4", reply(200, b"0123456789"), b"234"),
        # a server that says where its range starts
        (3, 2, "bytes=2-4", reply(206, b"234", {"Content-Range": "bytes 2-4/10"}), b"234"),
        (None, 20, "bytes=20-", reply(416), b""),
    ],
)
def test_ranges(scripted, size, offset, sent, answer, expected):
    backend, server = scripted(lambda *request: answer)
    assert backend.load("data/x", size=size, offset=offset) == expected
    assert server.requests[-1][2].get("range") == sent


def test_listing_is_sorted_and_hides_temp_items(scripted):
    entries = [
        {"name": "b", "size": 3, "directory": False, "atime": 1.5, "mtime": 2.5},
        {"name": "a.tmp", "size": 1},
        {"name": "..", "size": 0, "directory": True},
        {"name": "a", "size": 0, "directory": True},
    ]
    backend, _server = scripted(lambda *request: reply(200, json.dumps(entries).encode()))
    listed = list(backend.list("data"))
    assert [(i.name, i.size, i.directory, i.mtime) for i in listed] == [("a", 0, True, 0), ("b", 3, False, 2.5)]


def test_garbage_listing_is_an_error(scripted):
    backend, _server = scripted(lambda *request: reply(200, b"<html>"))
    with pytest.raises(errors.BackendError, match="no listing"):
        list(backend.list("data"))


def test_gather_short_answer_is_read_range_error(scripted):
    backend, server = scripted(lambda *request: reply(200, b"abc"))
    with pytest.raises(errors.ReadRangeError, match="Read range error"):
        backend.gather([("data/a", 0, 2), ("data/b", -5, 2)])
    assert json.loads(server.requests[-1][3]) == [["data/a", 0, 2], ["data/b", -5, 2]]


def test_lost_reply_to_a_mutation_may_have_been_applied(scripted):
    backend, server = scripted(lambda *request: None)
    with pytest.raises(errors.BackendConnectionError) as info:
        backend.store("data/x", b"v")
    assert info.value.maybe_applied and info.value.temporary
    with pytest.raises(errors.BackendConnectionError) as info:
        backend.load("data/x")
    assert not info.value.maybe_applied
    # the first POST went on the connection open() had used: a kept-alive connection closed
    # before any answer looks like one the server had closed while idle, so it went again, on a
    # new connection; that one broke too, and the request may have arrived: not sent again
    assert [m for m, _t, _h, _b in server.requests].count("POST") == 2


def test_stale_kept_alive_connection_is_resent(scripted):
    """A server that closed an idle connection never saw the request sent on it: sent again at
    once on a new connection (what the retry middleware need not decide)."""

    def answer(method, target, headers, body):
        # keep-alive announced, then the connection closed, as a server's idle timeout does
        return reply(200, b"ok", {"Connection": "keep-alive"}), "close"

    backend, server = scripted(answer)
    assert backend.load("data/x") == b"ok"
    time.sleep(0.1)  # the server's close has arrived
    assert backend.store("data/x", b"new") is None  # a mutation too: it cannot have arrived
    assert backend.load("data/x") == b"ok"
    # each request was received once: the copies on dead connections never arrived
    assert [(m, t) for m, t, _h, _b in server.requests][2:] == [
        ("GET", "/data/x"),
        ("POST", "/data/x"),
        ("GET", "/data/x"),
    ]
    assert server.connections == 4  # OPTIONS (closed by its answer), HEAD and the first GET, one each after


def test_timeout_is_backend_timeout():
    hang = threading.Event()

    def answer(method, target, headers, body):
        if method in ("OPTIONS", "HEAD"):
            return reply(200)
        hang.wait(10)
        return None

    server = ScriptedServer(answer)
    try:
        backend = rest_backend_from_url(f"http://127.0.0.1:{server.port}/", timeout=0.5)
        backend.open()
        with pytest.raises(errors.BackendTimeout) as info:
            backend.delete("data/x")
        assert info.value.maybe_applied
        backend.close()
    finally:
        hang.set()
        server.close()


def test_quota_and_hash_and_defrag(scripted):
    def answer(method, target, headers, body):
        if "cmd=quota" in target:
            return reply(200, b'{"limit": 100, "usage": 7}')
        if "cmd=hash" in target:
            return reply(200, b"abcdef\n")
        return reply(200, b"data/target")

    backend, server = scripted(answer)
    assert backend.quota() == {"limit": 100, "usage": 7}
    assert backend.hash("data/x", "sha512") == "abcdef"
    assert server.requests[-1][1] == "/data/x?cmd=hash&algorithm=sha512"
    assert backend.defrag([("data/a", 0, 1)], algorithm="sha256", namespace="data", levels=1) == "data/target"
    assert server.requests[-1][1] == "/?cmd=defrag&algorithm=sha256&namespace=data&levels=1"
