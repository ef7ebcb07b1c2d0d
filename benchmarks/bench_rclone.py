#!/usr/bin/env python3
"""How fast is a store on rclone?  Our rclone backend against the PyPI borgstore 0.7 rclone backend.

Both run the same workload through their ``Store`` (URL ``rclone:<dir>``, default middleware
chain, ``{"data/": {"levels": [1]}}``) against a real ``rclone rcd`` serving a local directory on a
RAM-backed file system (``--dir``, default /dev/shm), so what shows is what the HTTP/rc path and
our code cost, not the disk.  Phases: small stores and small loads (1 KiB values), then 4 MiB
stores and loads.  Each contender runs in its own Python process (the PyPI package cannot share
one with ours); the contenders alternate (A B A B ...), and the median and range of the rounds are
printed.  Opening the store (starting rclone) is not timed.

    python benchmarks/bench_rclone.py [--dir /dev/shm/...] [--repeat 3] [--small 1000] [--large 24]
        [--pypi-python /tmp/facts/venv/bin/python]   # a Python with borgstore==0.7.* and requests

See docs/rclone.md for recorded figures and the targets.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid

KIB = 1024
MIB = 1024 * KIB
SMALL_SIZE = 1 * KIB
LARGE_SIZE = 4 * MIB
CONFIG = {"data/": {"levels": [1]}}
PHASES = ("small_store", "small_load", "large_store", "large_load")


# --- the worker: one contender, one round, in its own process ------------------------------------


def run_round(root: str, small: int, large: int) -> dict:
    """Run every phase once on a fresh store at *root*; return seconds per phase."""
    from borgstore.store import Store  # whichever borgstore this interpreter has

    small_value = os.urandom(SMALL_SIZE)
    large_value = os.urandom(LARGE_SIZE)
    small_keys = [f"data/{uuid.uuid4().hex}" for _ in range(small)]
    large_keys = [f"data/{uuid.uuid4().hex}" for _ in range(large)]
    store = Store(f"rclone:{root}", config=CONFIG)
    store.create()
    seconds = {}
    with store:
        t = time.perf_counter()
        for key in small_keys:
            store.store(key, small_value)
        seconds["small_store"] = time.perf_counter() - t
        t = time.perf_counter()
        for key in small_keys:
            if len(store.load(key)) != SMALL_SIZE:
                raise SystemExit(f"short load of {key}")
        seconds["small_load"] = time.perf_counter() - t
        t = time.perf_counter()
        for key in large_keys:
            store.store(key, large_value)
        seconds["large_store"] = time.perf_counter() - t
        t = time.perf_counter()
        for key in large_keys:
            if len(store.load(key)) != LARGE_SIZE:
                raise SystemExit(f"short load of {key}")
        seconds["large_load"] = time.perf_counter() - t
    store.destroy()
    import borgstore

    return {"version": borgstore.__version__, "seconds": seconds}


# --- the driver -----------------------------------------------------------------------------------


def run_contender(python: str, root: str, small: int, large: int, isolated: bool) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    args = (
        [python] + (["-I"] if isolated else []) + [os.path.abspath(__file__), "--worker", root, str(small), str(large)]
    )
    # -I keeps the PyPI interpreter from importing our borgstore from the working directory
    done = subprocess.run(args, check=False, capture_output=True, text=True, cwd="/", timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rates(seconds: dict, small: int, large: int) -> dict:
    return {
        "small_store": small / seconds["small_store"],  # ops/s
        "small_load": small / seconds["small_load"],
        "large_store": large * LARGE_SIZE / 1e6 / seconds["large_store"],  # MB/s
        "large_load": large * LARGE_SIZE / 1e6 / seconds["large_load"],
    }


def machine_description(directory: str) -> str:
    fs_type = "?"
    try:
        with open("/proc/mounts") as f:
            best = ""
            for line in f:
                _dev, mount, kind = line.split()[:3]
                if directory.startswith(mount) and len(mount) > len(best):
                    best, fs_type = mount, kind
    except OSError:
        pass
    rclone = shutil.which(os.environ.get("RCLONE_BINARY") or "rclone") or "rclone"
    try:
        rclone_version = subprocess.run(
            [rclone, "version"], check=False, capture_output=True, text=True
        ).stdout.splitlines()[0]
    except (OSError, IndexError):
        rclone_version = "rclone: not found"
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}, "
        f"store on {fs_type} ({directory}), {rclone_version}, load average {os.getloadavg()[0]:.2f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/dev/shm/borgstore-bench-rclone")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000, help="number of 1 KiB items")
    parser.add_argument("--large", type=int, default=24, help="number of 4 MiB items")
    parser.add_argument(
        "--pypi-python",
        default="/tmp/facts/venv/bin/python",
        help="a Python with the PyPI borgstore 0.7 and requests ('' to skip it)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("DIR", "SMALL", "LARGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        root, small, large = args.worker
        print(json.dumps(run_round(root, int(small), int(large))))
        return

    contenders = [("ours", sys.executable, False)]
    if args.pypi_python and os.path.exists(args.pypi_python):
        contenders.append(("pypi", args.pypi_python, True))
    else:
        print(f"(PyPI reference skipped: {args.pypi_python!r} not found)")
    print(machine_description(args.dir))
    print(
        f"{args.small} x {SMALL_SIZE} B and {args.large} x {LARGE_SIZE // MIB} MiB, {args.repeat} rounds, alternating"
    )
    results = {label: [] for label, _, _ in contenders}
    versions = {}
    for _ in range(args.repeat):
        for label, python, isolated in contenders:
            out = run_contender(python, f"{args.dir}-{label}", args.small, args.large, isolated)
            versions[label] = out["version"]
            results[label].append(rates(out["seconds"], args.small, args.large))
    for label, _, _ in contenders:
        shutil.rmtree(f"{args.dir}-{label}", ignore_errors=True)

    units = {"small_store": "stores/s", "small_load": "loads/s", "large_store": "MB/s", "large_load": "MB/s"}
    print(
        f"{'phase':<12} "
        + " ".join(f"{label + ' ' + versions[label]:>34}" for label, _, _ in contenders)
        + ("   ours/pypi" if "pypi" in results else "")
    )
    for phase in PHASES:
        cells = []
        medians = {}
        for label, _, _ in contenders:
            values = [r[phase] for r in results[label]]
            medians[label] = statistics.median(values)
            cells.append(f"{medians[label]:>9.0f} {units[phase]:<8} ({min(values):.0f}-{max(values):.0f})")
        ratio = f"   {medians['ours'] / medians['pypi']:.2f}x" if "pypi" in medians else ""
        print(f"{phase:<12} " + " ".join(f"{cell:>34}" for cell in cells) + ratio)


if __name__ == "__main__":
    main()
