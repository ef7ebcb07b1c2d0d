#!/usr/bin/env python3
"""Where does the time of one small operation go?  Cost per layer of the default chain.

Calls each operation on each link of a ``file://`` store's chain (the backend, the adapter, the
middleware from the inside out, the Store) and on bare ``os`` calls, over the same 1 KiB items
on tmpfs, and prints microseconds per call (the minimum and the median of the rounds).  The
difference between two neighbouring rows is what that layer adds.

    python benchmarks/layers_posixfs.py [--dir /dev/shm/...] [--count 5000] [--rounds 15]
"""

import argparse
import hashlib
import os
import shutil
import statistics
import time

from borgstore import Store
from borgstore._names import check_name

READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
FIRST_CHUNK = 16 * 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/dev/shm/borgstore-layers")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)

    shutil.rmtree(args.dir, ignore_errors=True)
    store = Store(f"file://{args.dir}", config={"data/": {"levels": [1]}}, backend_options={"durability": "none"})
    store.create()
    store.open()
    names = ["data/" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.count)]
    value = os.urandom(1024)
    for name in names:
        store.store(name, value)
    namespace = store._namespaces["data"]
    nested = [namespace.nest_write(name) for name in names]
    paths = [f"{args.dir}/{name}" for name in nested]
    links = list(store.chain.layers())[::-1]  # innermost first

    def bare_load(path):
        fd = os.open(path, READ_FLAGS)
        try:
            data = os.read(fd, FIRST_CHUNK)
            if len(data) == FIRST_CHUNK:
                data = os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
        return data

    counter = iter(range(10**12))

    def bare_store(path):
        temp = f"{path}.{next(counter)}.tmp"
        fd = os.open(temp, WRITE_FLAGS, 0o600)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)
        os.rename(temp, path)

    rows = [("load", "bare os", bare_load, paths), ("load", "backend", store.backend.load, nested)]
    rows += [("load", f"+ {link.name or type(link).__name__}", link.load, nested) for link in links]
    rows += [("load", "+ Store", store.load, names)]
    rows += [("store", "bare os", bare_store, paths)]
    rows += [("store", "backend", lambda n: store.backend.store(n, value), nested)]
    rows += [("store", f"+ {link.name}", lambda n, link=link: link.store(n, value), nested) for link in links]
    rows += [("store", "+ Store", lambda n: store.store(n, value), names)]
    rows += [("info", "bare os", os.stat, paths), ("info", "backend", store.backend.info, nested)]
    rows += [("info", f"+ {link.name}", link.info, nested) for link in links]
    rows += [("info", "+ Store", store.info, names)]
    rows += [("parts", "check_name", check_name, names), ("parts", "nest_write", namespace.nest_write, names)]

    timings = {index: [] for index in range(len(rows))}
    for _ in range(args.rounds):
        for index, (_, _, function, items) in enumerate(rows):
            started = time.perf_counter()
            for item in items:
                function(item)
            timings[index].append((time.perf_counter() - started) / len(items) * 1e6)
    store.close()
    shutil.rmtree(args.dir, ignore_errors=True)

    print(f"{args.count} items of 1 KiB on {args.dir}, {args.rounds} rounds; microseconds per call")
    print(f"{'op':6s} {'layer':16s} {'min':>7s} {'median':>7s}")
    for index, (op, layer, _, _) in enumerate(rows):
        values = timings[index]
        print(f"{op:6s} {layer:16s} {min(values):7.2f} {statistics.median(values):7.2f}")


if __name__ == "__main__":
    main()
