#!/usr/bin/env python3
"""How much does borgstore add on top of the file system?  posixfs against bare ``os`` calls.

Runs the same workload through ``borgstore.Store`` (file:// URL, default middleware chain,
``{"data/": {"levels": [1]}}``) and through bare ``os`` calls that make the same layout (temp
file + rename into ``data/XX/<key>``), alternating the two in one process (A B A B ...), and
prints the median and range of each phase, ops/s, MB/s and the ratio ours/bare.

The ratios are meant for a RAM-backed file system (``--dir``, default /dev/shm); the disk run
beside it (``--disk-dir``, default /var/tmp) is reported for information only, as disks on
shared machines change speed from one minute to the next.  See docs/performance.md.

    python benchmarks/bench_posixfs.py [--dir /dev/shm/...] [--disk-dir /var/tmp/...] [--repeat 3]
        [--other-python /path/to/venv-with-pypi-borgstore/bin/python]
"""

import argparse
import hashlib
import os
import platform
import random
import shutil
import statistics
import sys
import time
import uuid

from borgstore import Store

KIB = 1024
MIB = 1024 * KIB
SMALL_SIZE = 1 * KIB
LARGE_SIZE = 4 * MIB
PARTIAL_SIZE = 64 * KIB
FIRST_CHUNK = 16 * KIB
CONFIG = {"data/": {"levels": [1]}}

WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def keys(count: int, salt: str) -> list:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(count)]


# --- the contenders -------------------------------------------------------------------------------
# Each contender is a class whose methods run one phase over all keys.  The phases of one round
# run in order on a fresh directory, so a load reads what the store before it wrote.


class Ours:
    label = "borgstore"

    def __init__(self, root: str, backend_options=None):
        # without options, the same code drives the PyPI borgstore too (see Other)
        extra = {"backend_options": backend_options} if backend_options else {}
        self.store = Store(f"file://{root}", config=CONFIG, **extra)
        self.store.create()
        self.store.open()

    def finish(self):
        self.store.close()

    def store_all(self, names, value):
        store = self.store.store
        for name in names:
            store(name, value)

    def load_all(self, names):
        load = self.store.load
        for name in names:
            load(name)

    def load_partial(self, ranges):
        load = self.store.load
        for name, offset, size in ranges:
            load(name, offset=offset, size=size)

    def info_all(self, names):
        info = self.store.info
        for name in names:
            info(name)

    def list_all(self):
        return sum(1 for _ in self.store.list("data"))

    def soft_delete_all(self, names):
        move = self.store.move
        for name in names:
            move(name, delete=True)

    def delete_all(self, names):
        delete = self.store.delete
        for name in names:
            delete(name, deleted=True)


class Bare:
    """What a program that wants the same on-disk result does with nothing but ``os``."""

    label = "bare os"

    def __init__(self, root: str):
        os.makedirs(root + "/data")
        self.prefix = root + "/"
        self.counter = 0

    def finish(self):
        pass

    def path(self, name):
        namespace, _, key = name.partition("/")
        return f"{self.prefix}{namespace}/{key[:2]}/{key}"

    def store_all(self, names, value):
        for name in names:
            path = self.path(name)
            self.counter += 1
            temp = f"{path}.{self.counter}.tmp"
            try:
                fd = os.open(temp, WRITE_FLAGS, 0o600)
            except FileNotFoundError:
                os.mkdir(path.rpartition("/")[0])
                fd = os.open(temp, WRITE_FLAGS, 0o600)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
            os.rename(temp, path)

    def load_all(self, names):
        # the same system calls as the backend's load: a first chunk, and only for a big item
        # the size and the whole item (without the fstat, small loads are ~25% faster here)
        for name in names:
            fd = os.open(self.path(name), READ_FLAGS)
            try:
                data = os.read(fd, FIRST_CHUNK)
                if len(data) == FIRST_CHUNK:
                    data = os.pread(fd, os.fstat(fd).st_size, 0)
            finally:
                os.close(fd)

    def load_partial(self, ranges):
        for name, offset, size in ranges:
            fd = os.open(self.path(name), READ_FLAGS)
            try:
                os.pread(fd, size, offset)
            finally:
                os.close(fd)

    def info_all(self, names):
        for name in names:
            os.stat(self.path(name))

    def list_all(self):
        count = 0
        top = self.prefix + "data"
        for directory in sorted(os.listdir(top)):
            with os.scandir(f"{top}/{directory}") as scan:
                for entry in sorted(scan, key=lambda e: e.name):
                    if not entry.name.endswith((".tmp", ".del")):
                        entry.stat()
                        count += 1
        return count

    def soft_delete_all(self, names):
        for name in names:
            path = self.path(name)
            os.rename(path, path + ".del")

    def delete_all(self, names):
        for name in names:
            os.unlink(self.path(name) + ".del")


class Other:
    """The same workload through another borgstore installation (e.g. the PyPI package, which
    cannot be imported beside ours), in a child process running this file's round functions."""

    external = True

    def __init__(self, python: str, root: str):
        self.python = python
        self.root = root

    def finish(self):
        pass

    def run(self, round_name: str, names, value, ranges=()) -> dict:
        import inspect
        import json
        import subprocess
        import tempfile

        source = "\n\n".join(inspect.getsource(item) for item in (Ours, timed, small_round, large_round))
        script = (
            "import json, os, sys, time\nfrom borgstore.store import Store\n"
            f"CONFIG = {CONFIG!r}\n{source}\n"
            "spec = json.load(open(sys.argv[1]))\n"
            "contender = Ours(spec['root'])\n"
            "value = os.urandom(spec['size'])\n"
            "ranges = [tuple(r) for r in spec['ranges']]\n"
            "args = (spec['names'], value, ranges) if spec['round'] == 'large' else (spec['names'], value)\n"
            "times = (large_round if spec['round'] == 'large' else small_round)(contender, *args)\n"
            "contender.finish()\nprint(json.dumps(times))\n"
        )
        spec = {"root": self.root, "round": round_name, "names": names, "size": len(value), "ranges": list(ranges)}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as spec_file:
            json.dump(spec, spec_file)
            spec_file.flush()
            # -I: the child must not import this source tree's borgstore from the working directory
            result = subprocess.run(
                [self.python, "-I", "-c", script, spec_file.name], capture_output=True, text=True, cwd="/"
            )
        if result.returncode != 0:
            raise RuntimeError(f"{self.python} failed:\n{result.stderr}")
        return json.loads(result.stdout.splitlines()[-1])


def installed_version(python: str) -> str:
    import subprocess

    result = subprocess.run(
        [python, "-I", "-c", "from importlib.metadata import version; print(version('borgstore'))"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    return result.stdout.strip() or "?"


# --- measuring ------------------------------------------------------------------------------------


def timed(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def small_round(contender, names, value) -> dict:
    if getattr(contender, "external", False):
        return contender.run("small", names, value)
    times = {
        "store": timed(contender.store_all, names, value),
        "load": timed(contender.load_all, names),
        "info": timed(contender.info_all, names),
    }
    started = time.perf_counter()
    listed = contender.list_all()
    times["list"] = time.perf_counter() - started
    if listed != len(names):
        raise RuntimeError(f"{contender.label} listed {listed} items, expected {len(names)}")
    times["soft delete"] = timed(contender.soft_delete_all, names)
    times["delete"] = timed(contender.delete_all, names)
    return times


def large_round(contender, names, value, ranges) -> dict:
    if getattr(contender, "external", False):
        return contender.run("large", names, value, ranges)
    return {
        "store": timed(contender.store_all, names, value),
        "load": timed(contender.load_all, names),
        "partial load": timed(contender.load_partial, ranges),
    }


def fresh_directory(base: str) -> str:
    path = os.path.join(base, uuid.uuid4().hex[:12])
    return path


def run_rounds(base, repeat, make_contenders, round_function, args):
    """Run every contender *repeat* times, alternating them; return {label: {phase: [seconds]}}."""
    results = {}
    for _ in range(repeat):
        for label, factory in make_contenders:
            root = fresh_directory(base)
            contender = factory(root)
            try:
                times = round_function(contender, *args)
            finally:
                contender.finish()
                shutil.rmtree(root, ignore_errors=True)
            for phase, seconds in times.items():
                results.setdefault(label, {}).setdefault(phase, []).append(seconds)
    return results


# --- reporting ------------------------------------------------------------------------------------


def filesystem_of(path: str) -> str:
    path = os.path.realpath(path)
    best, fstype, device = "", "?", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                dev, mount_point, kind = line.split()[:3]
                if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= len(
                    best
                ):
                    best, fstype, device = mount_point, kind, dev
    except OSError:
        pass
    return f"{fstype} ({device} on {best or '?'})"


def machine(dirs: dict) -> str:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    lines = [
        f"machine: {cores} cores ({usable} usable), {model}",
        f"python: {platform.python_implementation()} {platform.python_version()}"
        f" on {platform.system()} {platform.release()}",
    ]
    if hasattr(os, "getloadavg"):
        lines.append("load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)")
    lines += [f"{label}: {path} -> {filesystem_of(path)}" for label, path in dirs.items()]
    return "\n".join(lines)


def describe(seconds: list, count: int, size: int) -> tuple:
    median = statistics.median(seconds)
    rate = count / median
    text = f"{rate:10.0f} ops/s"
    if size:
        text += f" {rate * size / 1e6:9.1f} MB/s"
    low, high = count / max(seconds), count / min(seconds)
    text += f"  (range {low:.0f}-{high:.0f} ops/s)"
    return rate, text


def report(title, results, counts, sizes, reference="bare os"):
    print(f"\n{title}")
    labels = list(results)
    phases = list(results[labels[0]])
    for phase in phases:
        rates = {}
        for label in labels:
            rate, text = describe(results[label][phase], counts[phase], sizes.get(phase, 0))
            rates[label] = rate
            print(f"  {phase:13s} {label:22s} {text}")
        if reference in rates:
            for label in labels:
                if label != reference:
                    # each round of ours ran right before its bare round: pairing them cancels
                    # most of the drift a shared machine adds
                    paired = [b / a for a, b in zip(results[label][phase], results[reference][phase])]
                    print(
                        f"  {phase:13s} {'ratio ' + label + '/bare':22s} {statistics.median(paired):10.2f}"
                        f"  (paired rounds: median; range {min(paired):.2f}-{max(paired):.2f})"
                    )
    return phases


# --- main -----------------------------------------------------------------------------------------


def benchmark_filesystem(label, base, args):
    os.makedirs(base, exist_ok=True)
    value_small = os.urandom(SMALL_SIZE)
    value_large = os.urandom(LARGE_SIZE)
    names_small = ["data/" + key for key in keys(args.small_count, "small")]
    names_large = ["data/" + key for key in keys(args.large_count, "large")]
    rng = random.Random(1)
    ranges = [
        (rng.choice(names_large), rng.randrange(0, LARGE_SIZE - PARTIAL_SIZE), PARTIAL_SIZE)
        for _ in range(args.partial_count)
    ]
    contenders = [("borgstore", Ours), ("bare os", Bare)]
    if args.other_python:
        other = f"borgstore {installed_version(args.other_python)}"
        contenders.append((other, lambda root: Other(args.other_python, root)))

    small = run_rounds(base, args.repeat, contenders, small_round, (names_small, value_small))
    n = args.small_count
    report(
        f"[{label}] {n} items of {SMALL_SIZE} B, {args.repeat} rounds, median (range)",
        small,
        dict.fromkeys(["store", "load", "info", "list", "soft delete", "delete"], n),
        {"store": SMALL_SIZE, "load": SMALL_SIZE},
    )

    large = run_rounds(base, args.repeat, contenders, large_round, (names_large, value_large, ranges))
    report(
        f"[{label}] {args.large_count} items of {LARGE_SIZE // MIB} MiB, {args.partial_count} loads of "
        f"{PARTIAL_SIZE // KIB} KiB at random offsets, {args.repeat} rounds",
        large,
        {"store": args.large_count, "load": args.large_count, "partial load": args.partial_count},
        {"store": LARGE_SIZE, "load": LARGE_SIZE, "partial load": PARTIAL_SIZE},
    )

    if args.durability:
        count = args.durability_count
        names = names_small[:count]
        modes = [
            (f"durability={mode}", lambda root, mode=mode: Ours(root, {"durability": mode}))
            for mode in ("none", "close", "always")
        ]

        def store_and_close(contender, names, value):
            started = time.perf_counter()
            contender.store_all(names, value)
            stored = time.perf_counter()
            contender.store.close()
            closed = time.perf_counter()
            contender.store.open()  # finish() closes again; nothing changed, so no second sync
            return {"store+close": closed - started, "close": closed - stored}

        durable = run_rounds(base, args.repeat, modes, store_and_close, (names, value_small))
        print(f"\n[{label}] durability modes: {count} stores of {SMALL_SIZE} B then close(), {args.repeat} rounds")
        for mode, phases in durable.items():
            total = statistics.median(phases["store+close"])
            close = statistics.median(phases["close"])
            print(
                f"  {mode:18s} {count / total:10.0f} stores/s including close;  close() took {close * 1000:8.2f} ms"
                f"  (range {count / max(phases['store+close']):.0f}-{count / min(phases['store+close']):.0f} stores/s)"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", default="/dev/shm/borgstore-bench", help="RAM-backed directory for the ratios (default %(default)s)"
    )
    parser.add_argument(
        "--disk-dir",
        default="/var/tmp/borgstore-bench",
        help="directory on disk, reported beside (default %(default)s)",
    )
    parser.add_argument("--no-disk", action="store_true", help="skip the disk run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per contender, alternating (default %(default)s)")
    parser.add_argument("--small-count", type=int, default=5000, help="number of 1 KiB items (default %(default)s)")
    parser.add_argument("--large-count", type=int, default=64, help="number of 4 MiB items (default %(default)s)")
    parser.add_argument("--partial-count", type=int, default=2000, help="number of partial loads (default %(default)s)")
    parser.add_argument(
        "--other-python",
        metavar="PYTHON",
        help="also run the workload with another borgstore installation, e.g. the PyPI package in a venv "
        "(in a child process, alternating with the others)",
    )
    parser.add_argument("--no-durability", dest="durability", action="store_false", help="skip the durability modes")
    parser.add_argument(
        "--durability-count", type=int, default=1000, help="stores per durability round (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    filesystems = {"tmpfs": args.dir}
    if not args.no_disk:
        filesystems["disk"] = args.disk_dir
    print(machine(filesystems))
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    for label, base in filesystems.items():
        try:
            benchmark_filesystem(label, base, args)
        finally:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
