"""Robustness: malformed and oversized requests, slow and idle clients, too many connections,
and a clean stop on SIGTERM."""

import hashlib
import signal
import socket
import threading
import time

import pytest
from borgstore_backend_rest import _wire

from .conftest import raw_exchange, snapshot

ACCEPT_LINE = f"Accept: {_wire.MEDIA_TYPE}\r\n".encode()


def status_of(response: bytes) -> int:
    """The status code of a raw response."""
    assert response.startswith(b"HTTP/1.1 "), response[:100]
    return int(response.split(b" ", 2)[1])


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection to the server."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock: socket.socket) -> bytes:
    """One response head (and a body up to what has arrived), read until the server pauses or closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_an_oversized_body_is_refused(rest_server):
    """A body above --max-body gets 413, the connection is closed, nothing is stored."""
    server = rest_server(["--max-body", "1000"])
    before = snapshot(server.store_path)
    assert server.store("data/big", b"x" * 1001).status == 413
    head = b"POST /data/big HTTP/1.1\r\n" + ACCEPT_LINE + b"Content-Length: 100000000\r\n\r\n"
    response = raw_exchange(server.port, head + b"x" * 5000)
    assert status_of(response) == 413
    assert b"Connection: close" in response
    assert snapshot(server.store_path) == before
    assert server.store("data/small", b"x" * 1000).status == 200


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"HELLO\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET relative HTTP/1.1\r\n" + ACCEPT_LINE + b"Connection: close\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"POST /data/x HTTP/1.1\r\n" + ACCEPT_LINE + b"Content-Length: ten\r\n\r\n", 400),
        (b"POST /data/x HTTP/1.1\r\n" + ACCEPT_LINE + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400),
        (b"POST /data/x HTTP/1.1\r\n" + ACCEPT_LINE + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 411),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-H: 1\r\n" * 150 + b"\r\n", 431),
        (b"GET /a\x00b HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_malformed_requests_are_refused_and_closed(rest_server, request_bytes, status):
    """Malformed HTTP gets its status with the error header, then the connection is closed;
    the store is unchanged and the server goes on serving."""
    server = rest_server()
    before = snapshot(server.store_path)
    response = raw_exchange(server.port, request_bytes)  # returns once the server has closed
    assert status_of(response) == status
    assert _wire.ERROR_HEADER.encode() in response
    assert snapshot(server.store_path) == before
    assert server.request("GET", "/").status == 200


def test_a_body_needs_a_content_length(rest_server):
    """store without Content-Length: 411, nothing stored."""
    server = rest_server()
    before = snapshot(server.store_path)
    head = b"POST /data/x HTTP/1.1\r\n" + ACCEPT_LINE + b"Connection: close\r\n\r\n"
    assert status_of(raw_exchange(server.port, head)) == 411
    assert snapshot(server.store_path) == before


def test_expect_continue(rest_server):
    """A client that waits for 100 Continue gets it, then its body is stored."""
    server = rest_server()
    with connect(server.port) as sock:
        sock.sendall(b"POST /data/x HTTP/1.1\r\n" + ACCEPT_LINE + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        assert status_of(read_response(sock)) == 200
    assert (server.store_path / "data" / "x").read_bytes() == b"hello"


def test_a_slow_body_is_cut_off_while_others_are_served(rest_server):
    """A client sending its body one byte per second is cut off once it falls below the minimum
    pace; it loses nothing (its item is not stored) and another client is served meanwhile."""
    server = rest_server(["--head-timeout", "1", "--min-body-rate", "100"])
    fast = server.client()
    with connect(server.port) as slow:
        slow.sendall(b"POST /data/slow HTTP/1.1\r\n" + ACCEPT_LINE + b"Content-Length: 100\r\n\r\n")
        started = time.monotonic()
        cut_off = None
        latencies = []
        while time.monotonic() - started < 6:
            try:
                slow.sendall(b"x")
            except OSError:
                cut_off = time.monotonic() - started
                break
            t = time.monotonic()
            assert server.store("data/fast", b"f" * 100, client=fast).status == 200
            latencies.append(time.monotonic() - t)
            slow.settimeout(1.0)
            try:
                answer = slow.recv(65536)
            except TimeoutError:
                continue
            assert not answer or status_of(answer) == 408
            cut_off = time.monotonic() - started
            break
        assert cut_off is not None and cut_off < 5
    assert max(latencies) < 2  # served at once, not after the slow client (generous for a loaded machine)
    assert not (server.store_path / "data" / "slow").exists()
    assert (server.store_path / "data" / "fast").exists()


def test_a_slow_head_is_cut_off(rest_server):
    """A head trickling in byte by byte is answered 408 and closed after the head timeout."""
    server = rest_server(["--head-timeout", "1"])
    with connect(server.port) as sock:
        started = time.monotonic()
        answer = b""
        for byte in b"GET / HTTP/1.1\r\n" + ACCEPT_LINE + b"X-Slow: " + b"s" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                continue
        assert status_of(answer) == 408
        assert time.monotonic() - started < 4


def test_idle_connections_do_not_hold_up_others(rest_server):
    """200 connections open and idle: another client is still served promptly; after the idle
    timeout the server closes them."""
    server = rest_server(["--idle-timeout", "3"])
    idle = [connect(server.port) for _ in range(200)]
    try:
        client = server.client()
        started = time.monotonic()
        for i in range(50):
            assert server.store(f"data/{i}", b"v", client=client).status == 200
            assert server.request("GET", f"/data/{i}", client=client).data == b"v"
        assert time.monotonic() - started < 5
        idle[0].settimeout(10)
        assert idle[0].recv(10) == b""  # closed by the server after the idle timeout
    finally:
        for sock in idle:
            sock.close()


def test_excess_connections_get_503(rest_server):
    """Beyond --max-connections a connection is answered 503 (temporary) and closed."""
    server = rest_server(["--max-connections", "4"])
    server.client().request("GET", "/", headers={"Accept": _wire.MEDIA_TYPE})  # one kept-alive connection
    idle = [connect(server.port) for _ in range(3)]
    try:
        time.sleep(0.3)
        response = raw_exchange(server.port, b"GET / HTTP/1.1\r\n" + ACCEPT_LINE + b"\r\n")
        assert status_of(response) == 503
        assert b"temporary" in response
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert server.request("GET", "/").status == 200


def test_sigterm_finishes_an_upload_in_flight(rest_server):
    """SIGTERM while a body is arriving: the upload completes and is answered, an idle
    connection is closed, no new connection is taken, the server exits 0."""
    server = rest_server()
    value = bytes(range(256)) * 4096
    head = (
        b"POST /data/inflight HTTP/1.1\r\n"
        + ACCEPT_LINE
        + f"Content-Length: {len(value)}\r\n{_wire.HASH_HEADER}: {hashlib.sha256(value).hexdigest()}\r\n\r\n".encode()
    )
    idle = connect(server.port)
    with connect(server.port) as sock:
        sock.sendall(head + value[: len(value) // 2])
        time.sleep(0.5)
        process = server.process.process
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        idle.settimeout(5)
        assert idle.recv(10) == b""  # the idle connection was closed
        assert process.poll() is None  # still finishing the upload
        sock.sendall(value[len(value) // 2 :])
        response = read_response(sock)
    assert status_of(response) == 200
    assert b"Connection: close" in response
    assert process.wait(10) == 0
    assert (server.store_path / "data" / "inflight").read_bytes() == value
    with pytest.raises(OSError):
        connect(server.port, timeout=1)


def test_many_clients_in_parallel(rest_server):
    """Concurrent clients are served in parallel, each seeing its own data."""
    server = rest_server()
    errors = []

    def work(number):
        client = server.client()
        try:
            for i in range(30):
                value = f"{number}-{i}".encode()
                assert server.store(f"data/{number}-{i}", value, client=client).status == 200
                assert server.request("GET", f"/data/{number}-{i}", client=client).data == value
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(list((server.store_path / "data").iterdir())) == 240
