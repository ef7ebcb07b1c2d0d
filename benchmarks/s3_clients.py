#!/usr/bin/env python3
"""Which S3 client?  Import time and client CPU per small request of three candidates.

The candidates: boto3 (what the PyPI borgstore 0.7 uses), obstore (Rust's object_store behind a
Python binding) and ours (SigV4 signing, ``borgstore_backend_s3._sigv4.Signer``, over the core's
HTTP client, ``borgstore_backend_s3._client.S3Client``).  All of them talk to one moto server that
this script starts (``borgstore_backend_s3.testserver.MotoServer``), in the same run:

* import time: ``python -c "<import>"`` minus ``python -c pass``, wall and CPU time (user +
  system) of the whole process, median of --imports runs (the candidates alternate); beside it the
  import plus making a client (boto3 loads its service model then);
* client CPU per request: PUT of 1 KiB and GET of 1 KiB, --requests of each after a warm-up, in a
  fresh process per candidate and round (no shared warm state): ``time.process_time()`` of the
  client process around the loop (all its threads: obstore works in a thread pool; the server's
  CPU is not in it), wall time beside; median and range of --repeat rounds, candidates alternating.
  A bare socket (connect, send a request prepared in advance, read the answer) is
  measured the same way: what any client pays here, whatever it does itself.

moto, as served here, answers in HTTP/1.0 and closes the connection after every response: each
request of every candidate sets up a new TCP connection, so connection set-up is in every request,
for all alike.

    python benchmarks/s3_clients.py [--requests 300] [--repeat 3] [--imports 7]
"""

import argparse
import base64
import hashlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time

BUCKET = "client-bench"
KIB = 1024
WARM_UP = 20
REGION = "us-east-1"
CANDIDATES = ("boto3", "obstore", "ours")
OURS = "from borgstore_backend_s3._client import S3Client; from borgstore_backend_s3._sigv4 import Signer"
ENDPOINT_ARGS = "'http://127.0.0.1:9', region_name='us-east-1', aws_access_key_id='k', aws_secret_access_key='s'"
OBSTORE = "import obstore; from obstore.store import S3Store"
IMPORTS = {  # (the import, the import and making a client)
    "boto3": ("import boto3", f"import boto3; boto3.client('s3', endpoint_url={ENDPOINT_ARGS})"),
    "obstore": (
        OBSTORE,
        f"{OBSTORE}; S3Store('b', endpoint='http://127.0.0.1:9', region='us-east-1', access_key_id='k', "
        "secret_access_key='s', client_options={'allow_http': True})",
    ),
    "ours": (OURS, OURS + "; S3Client('http://127.0.0.1:9', 'b', Signer('k', 's', None, 'us-east-1'), timeout=30)"),
    # a reference: the core, which ours imports first (any borgstore backend pays it)
    "borgstore": ("import borgstore", "import borgstore"),
}
IMPORT_ROWS = (*CANDIDATES, "borgstore")


# --- the clients, each as put(key, data) and get(key) -> bytes -------------------------------------


def boto3_client(endpoint: str, key_id: str, secret: str):
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key_id, aws_secret_access_key=secret
    )

    def put(key, data):
        client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(key):
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    return put, get


def obstore_client(endpoint: str, key_id: str, secret: str):
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        endpoint=endpoint,
        region=REGION,
        access_key_id=key_id,
        secret_access_key=secret,
        client_options={"allow_http": True},
    )

    def put(key, data):
        obstore.put(store, key, data)

    def get(key):
        return obstore.get(store, key).bytes()

    return put, get


def ours_client(endpoint: str, key_id: str, secret: str):
    from borgstore_backend_s3._client import S3Client
    from borgstore_backend_s3._sigv4 import Signer

    client = S3Client(endpoint, BUCKET, Signer(key_id, secret, None, REGION), timeout=30)

    def put(key, data):
        # with the Content-MD5 the backend sends (boto3 sends a CRC32 of its own by default)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        response = client.request("PUT", key, headers={"content-md5": md5}, body=data, mutation=True, what="put")
        if response.status != 200:
            raise client.error(response, f"put {key}")

    def get(key):
        response = client.request("GET", key, mutation=False, what="get")
        if response.status != 200:
            raise client.error(response, f"get {key}")
        return response.data

    return put, get


def socket_floor(endpoint: str, key_id: str, secret: str):
    """No client at all: a request signed once (moto checks no signature) sent on a new connection,
    the answer read up to its Content-Length."""
    from borgstore_backend_s3._sigv4 import Signer

    host, port = endpoint.rpartition("/")[2].split(":")
    signed = Signer(key_id, secret, None, REGION).sign("GET", "/", "", f"{host}:{port}", {}, "UNSIGNED-PAYLOAD")
    fields = "".join(f"{name}: {value}\r\n" for name, value in signed.items())

    def exchange(method, key, data=b""):
        head = f"{method} /{BUCKET}/{key} HTTP/1.1\r\nHost: {host}:{port}\r\n{fields}"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode() + data)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            status, _, body = answer.partition(b"\r\n\r\n")
            # read the body by its length: moto closes the connection some 10 ms after answering
            length = int(status.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or 0)
            while len(body) < length:
                body += sock.recv(65536)
        if status[:12] not in (b"HTTP/1.1 200", b"HTTP/1.0 200"):
            raise SystemExit(f"socket floor: {method} {key}: {status[:200]!r}")
        return body

    return (lambda key, data: exchange("PUT", key, data)), (lambda key: exchange("GET", key))


MAKERS = {"boto3": boto3_client, "obstore": obstore_client, "ours": ours_client, "socket": socket_floor}


def worker(name: str, endpoint: str, count: int) -> dict:
    from borgstore_backend_s3.testserver import ACCESS_KEY_ID, SECRET_ACCESS_KEY

    put, get = MAKERS[name](endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    data = os.urandom(KIB)
    for i in range(WARM_UP):
        put(f"{name}-{os.getpid()}-warm-{i}", data)
        get(f"{name}-{os.getpid()}-warm-{i}")
    names = [f"{name}-{os.getpid()}-{i}" for i in range(count)]
    out = {}
    cpu, wall = time.process_time(), time.perf_counter()
    for key in names:
        put(key, data)
    out["put"] = ((time.process_time() - cpu) / count, (time.perf_counter() - wall) / count)
    cpu, wall = time.process_time(), time.perf_counter()
    for key in names:
        if len(get(key)) != KIB:
            raise SystemExit(f"{name}: short GET of {key}")
    out["get"] = ((time.process_time() - cpu) / count, (time.perf_counter() - wall) / count)
    return out


# --- the driver -----------------------------------------------------------------------------------


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    return env


def process_seconds(statement: str) -> tuple:
    """(wall, CPU) seconds of ``python -c statement``: the CPU (user + system, from the
    children's rusage) is the less disturbed by other work on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, cwd="/", env=clean_env())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"python -c {statement!r} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_times(runs: int) -> dict:
    """{"<candidate> import|client wall|cpu": [ms]}, the bare interpreter start (median) taken off."""
    samples = {}
    for _ in range(runs):
        for key, statement in [("bare", "pass")] + [
            (f"{name} {what}", IMPORTS[name][i]) for name in IMPORT_ROWS for i, what in enumerate(("import", "client"))
        ]:
            wall, cpu = process_seconds(statement)
            samples.setdefault(key + " wall", []).append(wall * 1000)
            samples.setdefault(key + " cpu", []).append(cpu * 1000)
    bare = {kind: statistics.median(samples.pop(f"bare {kind}")) for kind in ("wall", "cpu")}
    shifted = {key: [v - bare[key.rpartition(" ")[2]] for v in values] for key, values in samples.items()}
    return {"bare": bare, **shifted}


def run_worker(name: str, endpoint: str, count: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, endpoint, str(count)]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/", env=clean_env(), timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def versions() -> str:
    from importlib.metadata import version

    found = []
    for package in ("boto3", "botocore", "obstore", "moto"):
        try:
            found.append(f"{package} {version(package)}")
        except Exception:
            found.append(f"{package} missing")
    import borgstore

    return ", ".join(found) + f", borgstore from {os.path.dirname(borgstore.__file__)}"


def cell(values: list, digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def print_imports(times: dict, runs: int) -> None:
    bare = times["bare"]
    print(
        f"\nimport time, ms: python -c '<statement>' minus python -c pass (wall {bare['wall']:.0f} ms, CPU "
        f"{bare['cpu']:.0f} ms), median of {runs} (range); CPU is user + system of the process"
    )
    titles = ("import wall", "import CPU", "+ client wall", "+ client CPU")
    print(f"{'client':<10}" + "".join(f"{title:>22}" for title in titles))
    for name in IMPORT_ROWS:
        cells = [cell(times[f"{name} {what} {kind}"], 1) for what in ("import", "client") for kind in ("wall", "cpu")]
        print(f"{name:<10}" + "".join(f"{c:>22}" for c in (cells if name != "borgstore" else cells[:2])))


def print_cpu(rounds: dict, args) -> None:
    print(
        f"\nclient CPU per request, µs: process_time() of the client process (all threads), median of "
        f"{args.repeat} rounds of {args.requests} (range); wall time per request beside"
    )
    print(f"{'client':<10}{'PUT 1 KiB CPU':>22}{'wall':>8}{'GET 1 KiB CPU':>22}{'wall':>8}")
    for name, results in rounds.items():
        row = f"{name:<10}"
        for operation in ("put", "get"):
            cpu = [r[operation][0] * 1e6 for r in results]
            wall = [r[operation][1] * 1e6 for r in results]
            row += f"{cell(cpu):>22}{statistics.median(wall):>8.0f}"
        print(row)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="PUTs and GETs per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per client")
    parser.add_argument("--imports", type=int, default=7, help="runs per import measurement")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, endpoint, count = args.worker
        print(json.dumps(worker(name, endpoint, int(count))))
        return
    from borgstore_backend_s3.testserver import MotoServer

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, Python {platform.python_version()} ({platform.machine()}), {versions()}")
    print(f"load average at start {load}")
    print_imports(import_times(args.imports), args.imports)
    rounds = {name: [] for name in (*CANDIDATES, "socket")}
    with MotoServer() as moto:
        moto.make_bucket(BUCKET)
        for _ in range(args.repeat):
            for name in rounds:
                rounds[name].append(run_worker(name, moto.endpoint, args.requests))
    print_cpu(rounds, args)
    print(
        "('socket': no client, a prepared request on a new connection, the answer read: the floor here)\n"
        "moto answers in HTTP/1.0 and closes the connection after every response: every request of every\n"
        "client sets up a new TCP connection (loopback), so connection set-up is in each figure, for all alike.\n"
        f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
