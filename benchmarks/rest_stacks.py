#!/usr/bin/env python3
"""Which HTTP stack should the REST server stand on?  The same trivial handler served by each.

Issue 11 asks to decide the server's HTTP stack by measurement.  The contenders, each a server
process of its own on 127.0.0.1 with a thread per connection, serving the same trivial handler
(POST keeps the body in a dict under its path, GET answers the body kept under the path or 1 KiB,
HEAD answers its size):

  stdlib   http.server's ThreadingHTTPServer and BaseHTTPRequestHandler (HTTP/1.1, Nagle off);
  h11      the sans-IO h11 protocol library over threads (it would serve a socket and stdio
           alike); needs ``pip install h11``, left out if missing;
  minimal  a hand-written reader: a buffered socket reader, the request line and headers split
           by hand, the body read in one call; the floor of what Python can do per request;
  engine   our REST server's HTTP layer (borgstore_backend_rest._server_http: its Reader, head
           parser and response writer) around the same trivial handler, with this file's
           accept loop: what our server's stack costs without the protocol and the storage;
  ours     our whole REST server (``python -m borgstore_backend_rest.server --backend
           memory:bench``): the real protocol (hash check, storage through the memory: backend,
           a log line per request), so "ours" less "engine" is what the protocol costs.

All are driven by the same client, the core's HttpClient (borgstore/backends/http.py), with the
same requests (the REST Accept and hash headers are sent to every contender).  Per contender:
requests/s and the server's CPU µs per request for 1 KiB POST, GET and HEAD with 1 and 8 client
threads, and MB/s for 4 MiB POST and GET with one thread.  The 4 MiB figures of "minimal" are
"what plain HTTP on loopback moves with the same stack", the limit issue 11's 4 MiB target refers
to (bench_rest.py measures it again in its own run).  The server's CPU is read from /proc (the sum
of its threads' run time, or its tick counts when a thread ended during the phase).  The client
runs in this process: on a 2-core machine it shares the CPU with the server, so requests/s is
what the pair achieves and CPU per request is the figure that compares the stacks.

    python benchmarks/rest_stacks.py [--small 4000] [--large 48] [--repeat 3] [--stacks minimal,stdlib,...]
"""

import argparse
import concurrent.futures
import hashlib
import os
import platform
import socket
import statistics
import sys
import threading
import time

from borgstore_backend_rest import _wire
from borgstore_backend_rest.testserver import ServerProcess

from borgstore.backends.http import HttpClient

KIB, MIB = 1024, 1024 * 1024
SMALL, LARGE = KIB, 4 * MIB
RECV_SIZE = 256 * KIB
THREAD_COUNTS = (1, 8)
STACKS = ("minimal", "stdlib", "h11", "engine", "ours")
#: the stacks this file serves itself (the others are our server's command)
SERVED_HERE = STACKS[:4]
#: requests before each timed phase, so that every connection is open and warm
WARM_UP = 50


# --- the trivial handler, shared by the three stacks measured here --------------------------------

_kept: dict[str, bytes] = {}
_DEFAULT = os.urandom(SMALL)


def handle(method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """(status, answer body) of the trivial handler; for HEAD the body only gives the size."""
    if method == "POST":
        _kept[path] = body  # one dict store: atomic under the GIL, no lock needed
        return 200, b""
    if method in ("GET", "HEAD"):
        return 200, _kept.get(path, _DEFAULT)
    return 405, b""


def serve_forever(host: str, port: int, serve_connection) -> None:
    """Accept connections on host:port, each served by serve_connection(sock) in a thread."""
    listener = socket.create_server((host, port), backlog=128)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_and_close, args=(serve_connection, sock), daemon=True).start()


def _serve_and_close(serve_connection, sock: socket.socket) -> None:
    try:
        serve_connection(sock)
    except (OSError, ValueError, EOFError):
        pass  # the client went away or sent garbage: this connection ends, the server goes on
    finally:
        sock.close()


def _head(status: int, length: int) -> bytes:
    return f"HTTP/1.1 {status} OK\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")


# --- (c) the hand-written minimal reader: the floor -------------------------------------------------


def serve_minimal(sock: socket.socket) -> None:
    reader = sock.makefile("rb", buffering=RECV_SIZE)
    while True:
        line = reader.readline(65537)
        if not line:
            return
        method, path, _version = line.decode("latin-1").split(" ", 2)
        length = 0
        while True:
            header = reader.readline(65537)
            if header in (b"\r\n", b""):
                break
            name, _, value = header.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = reader.read(length) if length else b""
        status, answer = handle(method, path, body)
        head = _head(status, len(answer))
        if method == "HEAD":
            sock.sendall(head)
        elif len(answer) <= RECV_SIZE:
            sock.sendall(head + answer)  # one send: no second packet to wait for
        else:
            sock.sendall(head)
            sock.sendall(answer)


# --- (b) h11 over threads -------------------------------------------------------------------------


def serve_h11(sock: socket.socket) -> None:
    import h11

    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=65536)
    while True:
        request, parts = None, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(RECV_SIZE))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                parts.append(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if request is None:
            return
        method = request.method.decode("latin-1")
        status, answer = handle(method, request.target.decode("latin-1"), b"".join(parts))
        headers = [("Content-Length", str(len(answer)))]
        out = [conn.send(h11.Response(status_code=status, headers=headers))]
        if method != "HEAD" and answer:
            out += conn.send_with_data_passthrough(h11.Data(data=answer))
        out.append(conn.send(h11.EndOfMessage()))
        sock.sendall(b"".join(out) if len(answer) <= RECV_SIZE else out[0])
        if len(answer) > RECV_SIZE:
            sock.sendall(answer)  # h11 adds no framing bytes to a Content-Length body
        if conn.our_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


# --- (d) our server's HTTP layer ----------------------------------------------------------------------


def serve_engine(sock: socket.socket) -> None:
    from borgstore_backend_rest._server_http import Reader, SocketTransport, response_head, send_response

    transport = SocketTransport(sock, "bench")
    reader = Reader(transport)
    while reader.wait_for_data(None):
        request = reader.read_head(None)
        body = reader.read_body(request.length, None, 1.0) if request.length else b""
        status, answer = handle(request.method, request.target, body)
        head = response_head(status, len(answer))
        send_response(transport, head, None if request.method == "HEAD" else answer)


# --- (a) the standard library ---------------------------------------------------------------------


def serve_stdlib(host: str, port: int) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as every contender
        disable_nagle_algorithm = True  # else the body waits for the ACK of the headers

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer = handle(method, self.path, self.rfile.read(length) if length else b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(answer)

        def do_POST(self) -> None:
            self._answer("POST")

        def do_GET(self) -> None:
            self._answer("GET")

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def log_message(self, format: str, *args: object) -> None:
            pass  # no line on stderr per request: none of the others writes one

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    ThreadingHTTPServer((host, port), Handler).serve_forever()


def server_main(argv: list) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=SERVED_HERE, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.serve == "stdlib":
        serve_stdlib(args.host, args.port)
    else:
        serving = {"minimal": serve_minimal, "h11": serve_h11, "engine": serve_engine}[args.serve]
        serve_forever(args.host, args.port, serving)


# --- the server's CPU, from /proc -------------------------------------------------------------------


def cpu_snapshot(pid: int) -> tuple[dict, float]:
    """({thread id: ns on the CPU}, seconds of user+system time of the whole process)."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads[tid] = int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # the thread ended meanwhile
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return threads, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_between(before: tuple[dict, float], after: tuple[dict, float]) -> float:
    """Server CPU seconds between two snapshots: the threads' run times (ns resolution) when all
    threads of the first are still there, else the process's tick counts (a thread that ended
    took its run time out of the per-thread figures)."""
    if set(before[0]) <= set(after[0]):
        return sum(ns - before[0].get(tid, 0) for tid, ns in after[0].items()) / 1e9
    return after[1] - before[1]


# --- the client side --------------------------------------------------------------------------------


def rest_headers(value: bytes) -> dict:
    """The headers our REST client sends with a store: every contender gets them."""
    return {"Accept": _wire.MEDIA_TYPE, _wire.HASH_HEADER: hashlib.sha256(value).hexdigest()}


class Target:
    """One server to measure: its process, its URL's client, and the names it works on."""

    def __init__(self, label: str, server: ServerProcess, prefix: str = "/bench/"):
        self.label = label
        self.server = server
        self.prefix = prefix
        self.client = HttpClient("127.0.0.1", server.port, pool_size=max(THREAD_COUNTS))
        self.get_headers = {"Accept": _wire.MEDIA_TYPE}

    def request(self, method: str, path: str, headers=None, body: bytes = b"") -> bytes:
        response = self.client.request(method, self.prefix + path, headers=headers or self.get_headers, body=body)
        if response.status != 200:
            raise RuntimeError(f"{self.label}: {method} {path}: {response.status} {response.data[:200]!r}")
        return response.data

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def timed(target: Target, calls: list, threads: int) -> tuple[float, float]:
    """(wall seconds, server CPU seconds) of running the zero-argument *calls* on *threads* threads."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda call: call(), calls[:WARM_UP]))
        before = cpu_snapshot(target.server.process.pid)
        started = time.perf_counter()
        for _ in pool.map(lambda call: call(), calls[WARM_UP:]):
            pass
        wall = time.perf_counter() - started
        return wall, cpu_between(before, cpu_snapshot(target.server.process.pid))


def measure_small(target: Target, count: int, threads: int, salt: str) -> dict:
    """{"POST": (req/s, server µs/req), "GET": ..., "HEAD": ...} for 1 KiB values."""
    value = os.urandom(SMALL)
    store_headers = rest_headers(value)
    target.request("POST", "small", store_headers, value)
    names = [f"s{salt}-{threads}-{i}" for i in range(count + WARM_UP)]
    phases = {
        "POST": [lambda n=n: target.request("POST", n, store_headers, value) for n in names],
        "GET": [lambda: target.request("GET", "small")] * len(names),
        "HEAD": [lambda: target.request("HEAD", "small")] * len(names),
    }
    results = {}
    for method, calls in phases.items():
        wall, cpu = timed(target, calls, threads)
        results[method] = (count / wall, cpu / count * 1e6)
    return results


def measure_large(target: Target, count: int) -> dict:
    """{"POST": (MB/s, server CPU s per GB), "GET": ...} for 4 MiB values, one thread; the GETs
    check what they get."""
    value = os.urandom(LARGE)
    headers = rest_headers(value)
    results = {}
    for method in ("POST", "GET"):
        target.request("POST", "large", headers, value)
        before = cpu_snapshot(target.server.process.pid)
        started = time.perf_counter()
        for i in range(count):
            if method == "POST":
                target.request("POST", f"large{i % 4}", headers, value)
            elif target.request("GET", "large") != value:
                raise RuntimeError(f"{target.label}: GET large answered other bytes")
        wall = time.perf_counter() - started
        cpu = cpu_between(before, cpu_snapshot(target.server.process.pid))
        volume = count * LARGE
        results[method] = (volume / wall / 1e6, cpu / (volume / 1e9))
    return results


def start_target(stack: str, workdir: str) -> Target:
    """A running server of *stack* ("ours": our REST server on a memory: backend, the store created)."""
    log = os.path.join(workdir, f"{stack}.log")
    if stack != "ours":
        command = [sys.executable, os.path.abspath(__file__), "--serve", stack]
        return Target(stack, ServerProcess([], command=command, log_path=log).start())
    server = ServerProcess(["--backend", "memory:bench"], log_path=log).start()
    target = Target(stack, server)
    target.prefix = "/"
    response = target.client.request("POST", "/?cmd=create", headers=target.get_headers, body=b"")
    if response.status not in (200, 409):
        raise RuntimeError(f"ours: create answered {response.status} {response.data[:200]!r}")
    target.prefix = "/data/"
    return target


def available_stacks(wanted: list) -> tuple[list, list]:
    """(stacks that can run here, [why each other one cannot])."""
    found, missing = [], []
    for stack in wanted:
        module = {
            "h11": "h11",
            "engine": "borgstore_backend_rest._server_http",
            "ours": "borgstore_backend_rest.server",
        }.get(stack)
        if module is not None:
            try:
                __import__(module)
            except ImportError as exc:
                missing.append(f"{stack}: {exc}")
                continue
        found.append(stack)
    return found, missing


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    note = " (figures indicative only: the machine is busy)" if os.getloadavg()[0] > 1 else ""
    system = f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores, {system}, load average {load}{note}"


def summary(values: list, digits: int = 0) -> str:
    return f"{statistics.median(values):8.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def print_table(stacks: list, rows: dict, args) -> None:
    print(f"\nmedian (range) over {args.repeat} rounds; 1 KiB: requests/s and the server's CPU µs per request")
    print(f"{'':26}" + "".join(f"{stack:>34}" for stack in stacks))
    for threads in THREAD_COUNTS:
        for method in ("POST", "GET", "HEAD"):
            cells = []
            for stack in stacks:
                rates, cpus = zip(*rows[(stack, f"{method} {threads}t")])
                cells.append(f"{summary(list(rates))} {statistics.median(cpus):5.0f} µs")
            print(f"{f'1 KiB {method}, {threads} thread(s)':26}" + "".join(f"{c:>34}" for c in cells))
    print("4 MiB, 1 thread: MB/s and the server's CPU seconds per GB moved")
    for method in ("POST", "GET"):
        cells = []
        for stack in stacks:
            rates, cpus = zip(*rows[(stack, f"{method} 4MiB")])
            cells.append(f"{summary(list(rates))} {statistics.median(cpus):5.2f} s/GB")
        print(f"{f'4 MiB {method}':26}" + "".join(f"{c:>34}" for c in cells))
    if "minimal" in stacks:
        post, get = (statistics.median(r for r, _ in rows[("minimal", f"{m} 4MiB")]) for m in ("POST", "GET"))
        print(f"\nplain HTTP on loopback with this client (minimal server): {post:.0f} MB/s POST, {get:.0f} MB/s GET")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=4000, help="1 KiB requests per phase")
    parser.add_argument("--large", type=int, default=48, help="4 MiB requests per phase")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma separated, of " + ", ".join(STACKS))
    parser.add_argument("--dir", default="/dev/shm", help="where the servers' logs go")
    args = parser.parse_args()
    stacks, missing = available_stacks(args.stacks.split(","))
    print(f"machine: {machine()}")
    for why in missing:
        print(f"left out: {why}")
    workdir = os.path.join(args.dir, f"rest-stacks-{os.getpid()}")
    os.makedirs(workdir)
    targets = {stack: start_target(stack, workdir) for stack in stacks}
    rows: dict = {}
    try:
        for round_number in range(args.repeat):
            # A B C, then C B A: no contender always runs first (or right after the same one)
            for stack in stacks if round_number % 2 == 0 else stacks[::-1]:
                target = targets[stack]
                for threads in THREAD_COUNTS:
                    for method, figures in measure_small(target, args.small, threads, str(round_number)).items():
                        rows.setdefault((stack, f"{method} {threads}t"), []).append(figures)
                for method, figures in measure_large(target, args.large).items():
                    rows.setdefault((stack, f"{method} 4MiB"), []).append(figures)
            print(f"round {round_number + 1}/{args.repeat} done", file=sys.stderr)
    finally:
        for target in targets.values():
            target.close()
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)
    print_table(stacks, rows, args)
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    if "--serve" in sys.argv:
        server_main(sys.argv[1:])
    else:
        main()
