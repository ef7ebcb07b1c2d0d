#!/usr/bin/env python3
"""How close does the sftp backend get to OpenSSH's own sftp client?

Starts a throwaway OpenSSH sshd on 127.0.0.1 (borgstore_backend_sftp.testserver) whose storage is
on tmpfs (``--dir``, default /dev/shm) and measures, alternating the contenders in every round:

- the practical limit: OpenSSH's ``sftp`` client putting and getting one 128 MiB file, with the
  time of a connect-only ``sftp`` run taken off;
- ours, with each transport (``paramiko``, ``openssh``: the backend option ``transport``):
  ``borgstore.Store`` (default middleware chain, ``{"data/": {"levels": [1]}}``) on an
  ``sftp://`` URL storing and loading 4 MiB objects, and 1 KiB objects one by one;
- CPU seconds per GiB moved: for the sftp client its process and its ssh (the 128 MiB put and
  get, less a connect-only run), for ours this process and its ssh processes over the 4 MiB
  phases; the server's CPU is not counted for either;
- optionally the PyPI borgstore 0.7 doing the same (``--pypi-python``: an interpreter that
  imports it and paramiko; its ~/.ssh is pointed at the test server's config and known_hosts).

Prints the machine, the median and range over the rounds, and the ratios the issue sets targets
for.  Speed is never asserted in tests; this script only reports.  See docs/sftp.md.

    python benchmarks/bench_sftp.py [--dir /dev/shm/x] [--repeat 3] [--pypi-python /path/to/python]
"""

import argparse
import concurrent.futures
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from borgstore_backend_sftp.testserver import HOST_ALIAS, TestSSHServer

from borgstore import Store

KIB = 1024
MIB = 1024 * KIB
REFERENCE_FILE = 128 * MIB
LARGE = 4 * MIB
SMALL = 1 * KIB
CONFIG = {"data/": {"levels": [1]}}
#: threads sharing one Store in the second set of small-item figures
THREADS = 8
#: concurrent loads before the threaded phases, so that they find every session open
WARM_UP_SECONDS = 2.0

# the PyPI package's figures on this kind of machine and the targets of issue 13
PYPI_SMALL_LOADS, PYPI_SMALL_STORES = 440, 750
TARGET_LARGE_RATIO, TARGET_LOAD_FACTOR, TARGET_STORE_FACTOR = 0.90, 3.0, 2.0
TRANSPORTS = ("paramiko", "openssh")
GIB = 1 << 30


def ssh_children_cpu() -> float:
    """CPU seconds so far of the live ssh processes this process started (the openssh transport)."""
    total, me, tick = 0, os.getpid(), os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                comm, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        if comm.endswith("(ssh") and int(fields[1]) == me:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def cpu_now() -> float:
    return time.process_time() + ssh_children_cpu()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def names(count: int, salt: str) -> list:
    return [f"data/{uuid.uuid5(uuid.NAMESPACE_OID, f'{salt}{i}').hex}" for i in range(count)]


def workload(store, large_count: int, small_count: int, salt: str) -> dict:
    """Store and load large then small objects; return MB/s and ops/s per phase."""
    large_value, small_value = os.urandom(LARGE), os.urandom(SMALL)
    large_names, small_names = names(large_count, "L" + salt), names(small_count, "S" + salt)
    results = {}
    cpu = 0.0
    for phase, action, items, volume in (
        ("large_store_mbs", lambda n: store.store(n, large_value), large_names, LARGE),
        ("large_load_mbs", store.load, large_names, LARGE),
        ("small_store_ops", lambda n: store.store(n, small_value), small_names, None),
        ("small_load_ops", store.load, small_names, None),
    ):
        cpu_started = cpu_now()
        started = time.perf_counter()
        for name in items:
            action(name)
        elapsed = time.perf_counter() - started
        if volume:
            cpu += cpu_now() - cpu_started
        results[phase] = len(items) * volume / elapsed / 1e6 if volume else len(items) / elapsed
    results["cpu_s_per_gib"] = cpu / (2 * len(large_names) * LARGE / GIB)
    results.update(threaded_small(store, small_count, salt))
    return results


def threaded_small(store, small_count: int, salt: str) -> dict:
    """The small phases again with THREADS threads sharing the one Store (issue 13's second set
    of figures): ops/s over all threads.

    Loads for WARM_UP_SECONDS first let the pool open its sessions (with openssh, an ssh process
    each, which takes a handshake and a login): the one-thread phases run on a session opened
    before them too, and an application with threads opens them once per process, not per batch
    of items.  A single burst is not enough: the sessions are opened in the background while the
    burst is served by the ones already open, and a phase of half a second would then measure
    the openings' CPU instead of the transfers."""
    small_value = os.urandom(SMALL)
    items = names(small_count, "T" + salt)
    warm_up_items = names(small_count, "S" + salt)[: 8 * THREADS]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        warm_up_until = time.monotonic() + WARM_UP_SECONDS
        while time.monotonic() < warm_up_until:
            for _ in pool.map(store.load, warm_up_items):
                pass
        for phase, action in (
            (f"small_store_ops_{THREADS}t", lambda n: store.store(n, small_value)),
            (f"small_load_ops_{THREADS}t", store.load),
        ):
            started = time.perf_counter()
            for _ in pool.map(action, items):
                pass
            results[phase] = len(items) / (time.perf_counter() - started)
    return results


# the PyPI run: the same workload, in the other interpreter (kept self-contained on purpose)
PYPI_SCRIPT = r"""
import json, os, sys, time, uuid
from borgstore.store import Store
url, large_count, small_count, salt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
store = Store(url, config={"data/": {"levels": [1]}})
store.create()
store.open()
def names(count, salt):
    return [f"data/{uuid.uuid5(uuid.NAMESPACE_OID, f'{salt}{i}').hex}" for i in range(count)]
large_value, small_value = os.urandom(4 << 20), os.urandom(1024)
results = {}
for phase, action, items, volume in (
    ("large_store_mbs", lambda n: store.store(n, large_value), names(large_count, "L" + salt), 4 << 20),
    ("large_load_mbs", store.load, names(large_count, "L" + salt), 4 << 20),
    ("small_store_ops", lambda n: store.store(n, small_value), names(small_count, "S" + salt), None),
    ("small_load_ops", store.load, names(small_count, "S" + salt), None),
):
    started = time.perf_counter()
    for name in items:
        action(name)
    elapsed = time.perf_counter() - started
    results[phase] = len(items) * volume / elapsed / 1e6 if volume else len(items) / elapsed
store.close()
store.destroy()
print(json.dumps(results))
"""


class Bench:
    def __init__(self, base: str, large_count: int, small_count: int, pypi_python):
        self.base = base
        self.server = TestSSHServer(os.path.join(base, "sshd"))
        self.server.start()
        self.large_count = large_count
        self.small_count = small_count
        self.pypi_python = pypi_python
        self.reference_file = os.path.join(base, "reference.bin")
        with open(self.reference_file, "wb") as f:
            f.write(os.urandom(REFERENCE_FILE))
        if pypi_python:
            self._prepare_pypi_home()

    def _prepare_pypi_home(self):
        # the PyPI package reads ~/.ssh/config and ~/.ssh/known_hosts; give it a private HOME
        self.pypi_home = os.path.join(self.base, "pypi-home")
        os.makedirs(os.path.join(self.pypi_home, ".ssh"), mode=0o700)
        shutil.copy(self.server.ssh_config, os.path.join(self.pypi_home, ".ssh", "config"))
        shutil.copy(self.server.known_hosts, os.path.join(self.pypi_home, ".ssh", "known_hosts"))

    def sftp_client(self, commands: str, cipher=None) -> tuple:
        """(seconds, CPU seconds of the client and its ssh) of one sftp run."""
        options = ["-c", cipher] if cipher else []
        cpu_started = children_cpu()
        started = time.perf_counter()
        subprocess.run(
            self.server.sftp_command() + options + [HOST_ALIAS],
            input=commands.encode(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - started, children_cpu() - cpu_started

    def reference(self, cipher=None) -> dict:
        """The sftp client with its default cipher (the target's reference) or with *cipher*."""
        remote = os.path.join(self.base, "reference-remote.bin")
        back = os.path.join(self.base, "reference-back.bin")
        connect, connect_cpu = min(self.sftp_client("pwd\n", cipher) for _ in range(3))
        put, put_cpu = self.sftp_client(f"put {self.reference_file} {remote}\n", cipher)
        get, get_cpu = self.sftp_client(f"get {remote} {back}\n", cipher)
        for path in (remote, back):
            os.unlink(path)
        cpu = put_cpu + get_cpu - 2 * connect_cpu
        return {
            "put_mbs": REFERENCE_FILE / (put - connect) / 1e6,
            "get_mbs": REFERENCE_FILE / (get - connect) / 1e6,
            "connect_s": connect,
            "cpu_s_per_gib": cpu / (2 * REFERENCE_FILE / GIB),
        }

    def ours(self, round_number: int, transport: str) -> dict:
        path = os.path.join(self.base, f"ours-{transport}-{round_number}")
        options = self.server.backend_options(transport=transport)
        store = Store(url=self.server.url("/" + path), config=CONFIG, backend_options=options)
        store.create()
        with store:
            results = workload(store, self.large_count, self.small_count, str(round_number))
        store.destroy()
        return results

    def pypi(self, round_number: int) -> dict:
        path = os.path.join(self.base, f"pypi-{round_number}")
        env = {**os.environ, "HOME": self.pypi_home, "SSH_AUTH_SOCK": ""}
        out = subprocess.run(
            [
                self.pypi_python,
                "-c",
                PYPI_SCRIPT,
                self.server.url("/" + path),
                str(self.large_count),
                str(self.small_count),
                str(round_number),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.base,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def close(self):
        self.server.stop()


def summary(values) -> str:
    return f"{statistics.median(values):9.1f}  ({min(values):.1f} .. {max(values):.1f})"


def run_rounds(bench: Bench, repeat: int, with_pypi: bool) -> dict:
    """{(contender, measure): [value per round]}, the contenders alternating their order."""
    rows: dict = {}
    for round_number in range(repeat):
        contenders = [
            ("sftp client", bench.reference),
            # the cipher ours negotiates, for a like-for-like view (the target uses the default)
            ("sftp aes-gcm", lambda: bench.reference("aes128-gcm@openssh.com")),
            *((f"ours {t}", lambda n=round_number, t=t: bench.ours(n, t)) for t in TRANSPORTS),
        ]
        if with_pypi:
            contenders.append(("PyPI 0.7", lambda n=round_number: bench.pypi(n)))
        if round_number % 2:
            contenders.reverse()  # A B A B ...: neither contender always goes first
        for label, run in contenders:
            for key, value in run().items():
                rows.setdefault((label, key), []).append(value)
        print(f"round {round_number + 1}/{repeat} done", file=sys.stderr)
    return rows


def transport_checks(med: dict, transport: str, with_pypi: bool) -> list:
    """(label, ratio, target or None) for one transport.  The small-item targets compare with the
    PyPI release in the same run; without it, with the figures it had when issue 13 was filed."""
    ours = f"ours {transport}"

    def ratio(measure, reference):
        return med[(ours, measure)] / med[reference]

    put, get, cpu = (("sftp client", measure) for measure in ("put_mbs", "get_mbs", "cpu_s_per_gib"))
    checks = [
        (f"{transport}: 4 MiB store / sftp put", ratio("large_store_mbs", put), TARGET_LARGE_RATIO),
        (f"{transport}: 4 MiB load / sftp get", ratio("large_load_mbs", get), TARGET_LARGE_RATIO),
        (f"{transport}: CPU s/GiB / sftp client's", ratio("cpu_s_per_gib", cpu), None),
    ]
    if with_pypi:
        pypi_loads, pypi_stores = ("PyPI 0.7", "small_load_ops"), ("PyPI 0.7", "small_store_ops")
        checks += [
            (f"{transport}: small loads / PyPI same run", ratio("small_load_ops", pypi_loads), TARGET_LOAD_FACTOR),
            (f"{transport}: small stores / PyPI same run", ratio("small_store_ops", pypi_stores), TARGET_STORE_FACTOR),
            # the PyPI release's Store is used from one thread: ours with 8 against that
            (f"{transport}: {THREADS} threads, small loads / PyPI", ratio(f"small_load_ops_{THREADS}t", pypi_loads),
             TARGET_LOAD_FACTOR),
            (f"{transport}: {THREADS} threads, small stores / PyPI",
             ratio(f"small_store_ops_{THREADS}t", pypi_stores), TARGET_STORE_FACTOR),
        ]
    else:
        checks += [
            (f"{transport}: small loads / {PYPI_SMALL_LOADS}/s (no PyPI run)",
             med[(ours, "small_load_ops")] / PYPI_SMALL_LOADS, TARGET_LOAD_FACTOR),
            (f"{transport}: small stores / {PYPI_SMALL_STORES}/s (no PyPI run)",
             med[(ours, "small_store_ops")] / PYPI_SMALL_STORES, TARGET_STORE_FACTOR),
        ]
    checks += [
        (f"{transport}: 4 MiB store / aes-gcm put", ratio("large_store_mbs", ("sftp aes-gcm", "put_mbs")), None),
        (f"{transport}: 4 MiB load / aes-gcm get", ratio("large_load_mbs", ("sftp aes-gcm", "get_mbs")), None),
    ]
    return checks


def report(rows: dict, repeat: int, with_pypi: bool) -> None:
    print(f"\n{'contender':14} {'measure':18} median    (range) over {repeat} rounds")
    for (label, key), values in rows.items():
        print(f"{label:14} {key:18} {summary(values)}")
    med = {k: statistics.median(v) for k, v in rows.items()}
    print("\nratios (medians) and targets of issue 13:")
    checks = [check for transport in TRANSPORTS for check in transport_checks(med, transport, with_pypi)]
    if with_pypi:
        put, get = med[("sftp client", "put_mbs")], med[("sftp client", "get_mbs")]
        checks += [
            ("PyPI 4 MiB store / sftp put", med[("PyPI 0.7", "large_store_mbs")] / put, None),
            ("PyPI 4 MiB load / sftp get", med[("PyPI 0.7", "large_load_mbs")] / get, None),
        ]
    for label, ratio, target in checks:
        verdict = "" if target is None else f"target >= {target:.2f}: {'met' if ratio >= target else 'NOT met'}"
        print(f"  {label:46} {ratio:6.2f}  {verdict}")


def describe_transports(server) -> str:
    """Which transport the backend's default (``auto``) takes here, and the ciphers the openssh
    transport offers (the sftp client and the server run with OpenSSH's defaults)."""
    from borgstore_backend_sftp import _openssh
    from borgstore_backend_sftp._backend import choose_transport

    ciphers = _openssh.preferred_ciphers("ssh", HOST_ALIAS, None, None, ssh_config=server.ssh_config, timeout=10)
    return (
        f"default transport (auto) here: {choose_transport('auto')}; "
        f"openssh transport ciphers: {ciphers or 'OpenSSH defaults'}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/dev/shm", help="tmpfs directory for the server's storage")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large", type=int, default=32, help="number of 4 MiB objects per round")
    parser.add_argument("--small", type=int, default=2000, help="number of 1 KiB objects per round")
    parser.add_argument("--pypi-python", help="a Python that has the PyPI borgstore 0.7 and paramiko")
    args = parser.parse_args()

    base = tempfile.mkdtemp(prefix="bench-sftp-", dir=args.dir)
    fs = subprocess.run(["df", "--output=fstype", base], capture_output=True, text=True, check=True).stdout.split()[-1]
    import paramiko

    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=True).stderr.strip()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, paramiko {paramiko.__version__}, "
        f"storage {args.dir} ({fs}), {ssh_version}"
    )
    load_before = os.getloadavg()
    bench = Bench(base, args.large, args.small, args.pypi_python)
    print(describe_transports(bench.server))
    try:
        rows = run_rounds(bench, args.repeat, bool(args.pypi_python))
    finally:
        bench.close()
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average before: {load_before}, after: {os.getloadavg()}")
    report(rows, args.repeat, bool(args.pypi_python))


if __name__ == "__main__":
    main()
