#!/usr/bin/env python3
"""What does a store on S3 cost?  Our s3 backend against the PyPI borgstore 0.7 s3 backend (boto3).

Both run through their ``Store`` (URL ``s3:KEY:SECRET@http://127.0.0.1:PORT/bucket/path``, default
middleware chain, ``{"data/": {"levels": [2]}}`` as BorgBackup nests its chunks) against one moto
server started here, in the same run.  Each contender runs in a Python process of its own (the
PyPI package cannot share one with ours); the PyPI side runs this same file as its worker, with
``python -I`` in a venv of its own that the script makes (``pip install 'borgstore[s3]==0.7.0'``).

Requests are counted on the server's side of the wire, the same way for both: the clients talk to
a small proxy in front of moto that reads the HTTP requests going through it.  The proxy also
emulates the latency: it holds each request back for ``--latency-ms`` before forwarding it (a
round trip to a remote service), for both alike (``BORGSTORE_LATENCY`` is unset for both: our
``emulate`` middleware and the PyPI Store's own emulation differ).  moto, as served here, answers
in HTTP/1.0 and closes the connection after every response: each request sets up a new TCP
connection, for both alike.

  a. requests per Store operation: store, load, info, soft delete, delete, and list() of a
     two-level namespace of --items items (target: store/load/info 1, soft delete 2, list at
     most 1 + items/1000);
  b. client CPU per small (1 KiB) store and load: time.process_time() of the client process
     around the loop (the server's CPU is not in it), wall time beside; the contenders alternate,
     median and range of --repeat rounds (target: ours at most half of the peer's);
  c. with the latency on: the listing of (a), and a BorgBackup-like workload (--borg-stores
     stores of 1-64 KiB, --borg-loads loads, one list), wall time.

    python benchmarks/bench_s3.py [--items 3000] [--small 300] [--repeat 3] [--borg-stores 1000]
        [--borg-loads 1000] [--latency-ms 20] [--no-peer | --peer-python PATH] [--cache-dir DIR]

See docs/performance.md ("S3") for recorded figures.
"""

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

KIB = 1024
CONFIG = {"data/": {"levels": [2]}}
MARK = b"/__bench_mark__/"
PEER_REQUIREMENT = "borgstore[s3]==0.7.0"
PEER_VERSION = "0.7.0"
WARM_UP = 20
SHOWN = {"ours": "ours", "peer": "PyPI 0.7"}


# --- the worker: one contender, in its own process (stdlib imports only up here: the PyPI side
# --- runs this file too) ---------------------------------------------------------------------------


def mark(proxy_port: int, label: str) -> None:
    """Start the phase *label* at the counting proxy (answered by the proxy, not forwarded)."""
    with socket.create_connection(("127.0.0.1", proxy_port)) as sock:
        sock.sendall(b"GET " + MARK + label.encode() + b" HTTP/1.1\r\nHost: proxy\r\n\r\n")
        while sock.recv(4096):
            pass


def keys(count: int, seed: str) -> list:
    return [hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(count)]


def open_store(url: str, create: bool):
    from borgstore.store import Store  # whichever borgstore this interpreter has

    store = Store(url, config=CONFIG)
    if create:
        store.create()
    store.open()
    return store


def worker_ops(url: str, proxy_port: int, items: int, per_op: int) -> dict:
    """Each operation *per_op* times, each in a phase of its own; then fill and list the namespace."""
    import borgstore

    mark(proxy_port, "create")
    store = open_store(url, create=True)
    value = os.urandom(KIB)
    names = ["data/" + key for key in keys(per_op, "ops")]
    steps = (
        ("store", lambda name: store.store(name, value)),
        ("load", store.load),
        ("info", store.info),
        ("soft-delete", lambda name: store.move(name, delete=True)),
        ("delete", lambda name: store.delete(name, deleted=True)),
    )
    for label, operation in steps:
        mark(proxy_port, label)
        for name in names:
            operation(name)
    mark(proxy_port, "fill")
    for key in keys(items, "list"):
        store.store("data/" + key, value)
    listed, _ = timed_list(store, proxy_port)
    store.close()
    return {"version": borgstore.__version__, "listed": listed}


def cpu_and_wall(operation, names: list) -> tuple:
    cpu, wall = time.process_time(), time.perf_counter()
    for name in names:
        operation(name)
    return time.process_time() - cpu, time.perf_counter() - wall


def worker_cpu(url: str, count: int) -> dict:
    """Client CPU and wall seconds for *count* small stores, then as many loads, after a warm-up."""
    store = open_store(url, create=True)
    value = os.urandom(KIB)
    for name in ["data/" + key for key in keys(WARM_UP, "warm")]:
        store.store(name, value)
        store.load(name)
    names = ["data/" + key for key in keys(count, "cpu")]
    out = {"store": cpu_and_wall(lambda name: store.store(name, value), names), "load": cpu_and_wall(store.load, names)}
    if store.load(names[-1]) != value:
        raise SystemExit(f"{names[-1]} does not load what was stored")
    store.close()
    return out


def timed_list(store, proxy_port: int) -> tuple:
    """(items listed, seconds) of one list() of the namespace, in the phase "list"."""
    mark(proxy_port, "list")
    started = time.perf_counter()
    listed = sum(1 for _ in store.list("data"))
    seconds = time.perf_counter() - started
    mark(proxy_port, "end")
    return listed, seconds


def worker_list(url: str, proxy_port: int) -> dict:
    """Wall time of one list() of the namespace filled by worker_ops."""
    store = open_store(url, create=False)
    listed, seconds = timed_list(store, proxy_port)
    store.close()
    return {"listed": listed, "seconds": {"list": seconds}}


def worker_borg(url: str, proxy_port: int, stores: int, loads: int) -> dict:
    """BorgBackup-like: stores of 1-64 KiB random sizes, loads of them in random order, one list."""
    rng = random.Random(4711)  # the same sizes and order for both contenders
    payload = os.urandom(64 * KIB)
    names = ["data/" + key for key in keys(stores, "borg")]
    sizes = [rng.randint(1, 64) * KIB for _ in names]
    order = [rng.choice(names) for _ in range(loads)]
    store = open_store(url, create=True)
    seconds = {}
    mark(proxy_port, "store")
    started = time.perf_counter()
    for name, size in zip(names, sizes):
        store.store(name, payload[:size])
    seconds["store"] = time.perf_counter() - started
    mark(proxy_port, "load")
    started = time.perf_counter()
    for name in order:
        store.load(name)
    seconds["load"] = time.perf_counter() - started
    listed, seconds["list"] = timed_list(store, proxy_port)
    store.close()
    return {"listed": listed, "seconds": seconds}


def worker_main(args: list) -> None:
    kind, url, *numbers = args
    work = {"ops": worker_ops, "cpu": worker_cpu, "list": worker_list, "borg": worker_borg}[kind]
    print(json.dumps(work(url, *map(int, numbers))))


# --- the counting (and delaying) proxy ------------------------------------------------------------


class CountingProxy:
    """A TCP proxy on 127.0.0.1 in front of the S3 server that reads the HTTP requests going
    through it: counts them per phase and method, and holds each back for ``delay`` seconds
    before forwarding it.  A request for MARK<label> is answered here and starts phase <label>."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay = 0.0
        self.counts = {}  # phase -> {method: requests}
        self._phase = "-"
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.counts, self._phase = {}, "-"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait on split writes
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream = None
        reader = conn.makefile("rb")
        try:
            while True:
                head, method, target, headers = _read_head(reader)
                if head is None:
                    return
                if target.startswith(MARK):
                    with self._lock:
                        self._phase = target[len(MARK) :].decode()
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    return
                with self._lock:
                    phase = self.counts.setdefault(self._phase, {})
                    phase[method] = phase.get(method, 0) + 1
                if self.delay:
                    time.sleep(self.delay)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
                # the head goes at once: a client that sent "Expect: 100-continue" waits for
                # the server's 100 before it sends the body
                upstream.sendall(head)
                _forward_body(reader, upstream, headers)
        except OSError:
            pass
        finally:
            reader.close()
            if upstream is None:
                conn.close()
            else:
                # the client's end passed on: moto (one connection at a time) then closes at once,
                # where it would otherwise wait some 10 ms before taking the next connection
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)


def _read_head(reader):
    line = reader.readline(65536)
    if not line.strip():
        return None, None, None, None
    lines = [line]
    headers = {}
    while True:
        field = reader.readline(65536)
        lines.append(field)
        if field in (b"\r\n", b"\n", b""):
            break
        name, _, value = field.partition(b":")
        headers[name.strip().lower()] = value.strip()
    method, target = line.split()[:2]
    return b"".join(lines), method.decode(), target, headers


def _forward_body(reader, sock: socket.socket, headers: dict) -> None:
    if b"transfer-encoding" in headers:  # neither client sends one to S3
        raise OSError("the proxy does not forward chunked request bodies")
    size = int(headers.get(b"content-length", b"0"))
    while size > 0:
        data = reader.read(min(size, 256 * KIB))
        if not data:
            raise OSError("the client closed in the middle of a body")
        sock.sendall(data)
        size -= len(data)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """The server's answers back to the client; when the server closes, both connections end
    (shutdown, not just close: close() leaves a socket open while another thread reads it)."""
    try:
        while True:
            data = source.recv(256 * KIB)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


# --- the driver -----------------------------------------------------------------------------------


def worker_env(isolated: bool) -> dict:
    """No AWS_* or BORGSTORE_* settings of the caller's (credentials are in the URL, and no
    latency emulation but the proxy's); the PyPI side gets no PYTHON* variables either."""
    dropped = ("AWS_", "BORGSTORE_", "PYTHON") if isolated else ("AWS_", "BORGSTORE_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    return env


def run_worker(python: str, isolated: bool, *args) -> dict:
    # -I keeps the PyPI interpreter from importing our borgstore from the working directory
    command = [python] + (["-I"] if isolated else []) + [os.path.abspath(__file__), "--worker", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/", env=worker_env(isolated), timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"{python} worker {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_python(cache_dir: str):
    """(python, None) of a venv with the PyPI borgstore 0.7 and boto3, made on first use; or
    (None, why not)."""
    venv = os.path.join(cache_dir, "pypi-0.7-s3")
    python = os.path.join(venv, "bin", "python")
    check = [python, "-I", "-c", f"import borgstore, boto3; assert borgstore.__version__ == {PEER_VERSION!r}"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python, None
    shutil.rmtree(venv, ignore_errors=True)
    print(f"(installing {PEER_REQUIREMENT} into {venv} ...)", flush=True)
    steps = ([sys.executable, "-m", "venv", venv], [python, "-m", "pip", "install", "-q", PEER_REQUIREMENT], check)
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"{' '.join(step[:4])} failed: {(done.stderr or done.stdout).strip()[-500:]}"
    return python, None


def machine_description(peer: str) -> str:
    import moto

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    system = f"{platform.machine()}, {platform.system()} {platform.release()}"
    import borgstore

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()} ({system}), moto {moto.__version__} (one "
        f"request at a time), ours: {os.path.dirname(borgstore.__file__)}, peer: {peer}, load average {load}"
    )


def per_op(counts: dict, operations: int) -> str:
    total = sum(counts.values())
    methods = ", ".join(f"{m} {n / operations:g}" for m, n in sorted(counts.items()))
    return f"{total / operations:g} ({methods})" if total else "0"


def print_requests(results: dict, labels: list, args) -> None:
    items, target = args.items, 1 + args.items // 1000
    versions = ", ".join(f"{SHOWN[label]} borgstore {results[label]['version']}" for label in labels)
    print(f"\na. requests per Store operation, counted at the proxy ({args.per_op} operations each, per operation;")
    print(f"   {versions})")
    rows = [
        ("store 1 KiB", "store", args.per_op, "1"),
        ("load", "load", args.per_op, "1"),
        ("info", "info", args.per_op, "1"),
        ("soft delete", "soft-delete", args.per_op, "2"),
        ("delete (of a soft-deleted item)", "delete", args.per_op, ""),
        (f"list() of {items} items at level 2", "list", 1, f"<= {target}"),
        ("create() and open()", "create", 1, ""),
    ]
    print(f"{'operation':<34}" + "".join(f"{SHOWN[label]:>30}" for label in labels) + f"{'target':>10}")
    for title, phase, operations, goal in rows:
        cells = "".join(f"{per_op(results[label].get(phase, {}), operations):>30}" for label in labels)
        print(f"{title:<34}{cells}{goal:>10}")
    names = keys(items, "list")  # as worker_ops names them
    directories = 1 + len({name[:2] for name in names}) + len({name[:4] for name in names})
    print(f"(the namespace has {directories} directories at levels 0-2: a listing per directory visits each)")


def print_cpu(rounds: dict, labels: list, args) -> None:
    print(
        f"\nb. client CPU per 1 KiB operation, µs: process_time() of the client process, median of "
        f"{args.repeat} rounds of {args.small} (range); wall time beside; straight to moto"
    )
    header = "".join(f"{SHOWN[label] + ' CPU':>24}{SHOWN[label] + ' wall':>14}" for label in labels)
    print(f"{'operation':<10}{header}" + (f"{'ours/peer CPU':>16}{'target':>9}" if len(labels) > 1 else ""))
    for operation in ("store", "load"):
        cells, medians = "", {}
        for label in labels:
            cpu = [r[operation][0] / args.small * 1e6 for r in rounds[label]]
            wall = [r[operation][1] / args.small * 1e6 for r in rounds[label]]
            medians[label] = statistics.median(cpu)
            cells += f"{f'{medians[label]:.0f} ({min(cpu):.0f}-{max(cpu):.0f})':>24}{statistics.median(wall):>14.0f}"
        ratio = f"{medians['ours'] / medians['peer']:>16.2f}{'<= 0.50':>9}" if len(labels) > 1 else ""
        print(f"{operation:<10}{cells}{ratio}")


def print_latency(results: dict, labels: list, args) -> None:
    print(f"\nc. with {args.latency_ms:g} ms added to every request at the proxy (both alike), wall s (requests)")
    rows = [
        (f"list() of the {args.items} items of a", "list", "list"),
        (f"borg: {args.borg_stores} stores of 1-64 KiB", "borg", "store"),
        (f"borg: {args.borg_loads} loads", "borg", "load"),
        (f"borg: one list() ({args.borg_stores} items)", "borg", "list"),
    ]
    print(f"{'workload':<40}" + "".join(f"{SHOWN[label]:>22}" for label in labels))
    totals = {label: [0.0, 0] for label in labels}
    for title, run, phase in rows:
        cells = ""
        for label in labels:
            out, counts = results[label][run]
            seconds, requests = out["seconds"][phase], sum(counts.get(phase, {}).values())
            if run == "borg":
                totals[label] = [totals[label][0] + seconds, totals[label][1] + requests]
            cells += f"{f'{seconds:.2f} s ({requests})':>22}"
        print(f"{title:<40}{cells}")
    print(f"{'borg: total':<40}" + "".join(f"{f'{s:.2f} s ({n})':>22}" for s, n in totals.values()))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3000, help="items in the listed namespace (a, c)")
    parser.add_argument("--per-op", type=int, default=10, help="operations counted per kind (a)")
    parser.add_argument("--small", type=int, default=300, help="1 KiB stores and loads per round (b)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per contender (b)")
    parser.add_argument("--borg-stores", type=int, default=1000)
    parser.add_argument("--borg-loads", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every request (c)")
    parser.add_argument("--no-peer", action="store_true", help="ours only")
    parser.add_argument("--peer-python", help="a Python with borgstore 0.7.0 and boto3 (default: make a venv)")
    default_cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "borgstore-bench")
    parser.add_argument("--cache-dir", default=default_cache, help="where the PyPI venv is made")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser.parse_args()


def contenders(args) -> list:
    found = [("ours", sys.executable, False)]
    if args.no_peer:
        print("(PyPI 0.7 skipped: --no-peer)")
        return found
    python, why_not = (args.peer_python, None) if args.peer_python else peer_python(args.cache_dir)
    if python is None:
        print(f"(PyPI 0.7 columns skipped: {why_not})")
    else:
        found.append(("peer", python, True))
    return found


def main():
    args = parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    from borgstore_backend_s3.testserver import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoServer

    players = contenders(args)
    labels = [label for label, _, _ in players]
    print(machine_description(players[-1][1] if len(players) > 1 else "none"))
    with MotoServer() as moto:
        proxy = CountingProxy(moto.port)
        run, buckets = uuid.uuid4().hex[:8], set()

        def url(port: int, store: str) -> str:
            # a bucket per store: moto's listing walks every key of the bucket, whoever wrote it
            bucket = f"bench-{run}-{store}"
            if bucket not in buckets:
                moto.make_bucket(bucket)
                buckets.add(bucket)
            return f"s3:{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}@http://127.0.0.1:{port}/{bucket}/store"

        requests, latency = {}, {label: {} for label in labels}
        for label, python, isolated in players:
            proxy.reset()
            store_url = url(proxy.port, f"{label}-list")
            out = run_worker(python, isolated, "ops", store_url, proxy.port, args.items, args.per_op)
            if out["listed"] != args.items:
                raise SystemExit(f"{label}: listed {out['listed']} of {args.items} items")
            requests[label] = {**proxy.counts, "version": out["version"]}
        print_requests(requests, labels, args)

        rounds = {label: [] for label in labels}
        for number in range(args.repeat):  # alternating: ours, peer, ours, peer, ...
            for label, python, isolated in players:
                store_url = url(moto.port, f"{label}-cpu{number}")
                rounds[label].append(run_worker(python, isolated, "cpu", store_url, args.small))
        print_cpu(rounds, labels, args)

        proxy.delay = args.latency_ms / 1000
        for label, python, isolated in players:
            proxy.reset()
            out = run_worker(python, isolated, "list", url(proxy.port, f"{label}-list"), proxy.port)
            latency[label]["list"] = (out, dict(proxy.counts))
            proxy.reset()
            store_url = url(proxy.port, f"{label}-borg")
            out = run_worker(python, isolated, "borg", store_url, proxy.port, args.borg_stores, args.borg_loads)
            latency[label]["borg"] = (out, dict(proxy.counts))
        print_latency(latency, labels, args)
    print("\nmoto answers in HTTP/1.0 and closes the connection after every response: each request of both")
    print(f"sets up a new TCP connection (loopback).  Load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
