#!/usr/bin/env python3
"""How many backend calls does ``Store.list()`` of a two-level namespace cost?

Fills a namespace nested at level 2 (``data/01/23/0123...``) with N items on the ``memory:``
backend, then lists it twice: once with the backend offering ``list_tree`` (one paginated stream,
as an object store's prefix listing: a call per page of 1000) and once without (one ``list``
call per nesting directory, as on a posix file system).  Each backend call of an object store
is a billed, latency-bound request, so the count is the figure that matters; the time on memory
is printed beside it.

    python benchmarks/listing_calls.py [--items 10000]
"""

import argparse
import hashlib
import platform
import time

from borgstore import Store
from borgstore.backends.memory import PAGE_SIZE, MemoryBackend


class CountingMemory(MemoryBackend):
    """The memory backend, counting the calls a listing makes to it."""

    def __init__(self, name, *, list_tree):
        super().__init__(name, list_tree=list_tree)
        self.list_calls = 0

    def list(self, name):
        self.list_calls += 1
        return super().list(name)


def measure(items: int, list_tree: bool, location: str):
    backend = CountingMemory(location, list_tree=list_tree)
    store = Store(backend=backend, config={"data/": {"levels": [2]}})
    with store:
        backend.list_calls = backend.pages_listed = 0
        started = time.perf_counter()
        listed = sum(1 for _ in store.list("data"))
        elapsed = time.perf_counter() - started
    assert listed == items, (listed, items)
    return backend.list_calls + backend.pages_listed, elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args(argv)

    location = f"listing-bench-{time.monotonic_ns()}"
    filler = Store(f"memory:{location}", config={"data/": {"levels": [2]}})
    filler.create()
    with filler:
        for i in range(args.items):
            filler.store("data/" + hashlib.sha256(str(i).encode()).hexdigest(), b"x")

    print(f"python {platform.python_version()}, {args.items} items in data/ at level 2, memory: backend")
    print(f"target with list_tree: at most 1 + items/{PAGE_SIZE} = {1 + args.items // PAGE_SIZE} calls")
    for list_tree in (False, True):
        calls, elapsed = measure(args.items, list_tree, location)
        way = "list_tree (one paginated stream)" if list_tree else "list per directory"
        print(f"  {way:34s} {calls:6d} backend calls  {elapsed * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
