"""Example checks of the backend contract: the rules a model expresses badly.

Each check takes a fresh backend object whose location does not exist yet, creates what it needs,
and leaves the location destroyed.  Its docstring's first line states the rule.
"""

import threading
from contextlib import contextmanager

from ..backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ObjectNotFound,
)
from ._model import INTERNAL_ROOT_ITEMS
from ._rules import capabilities_of, expect, expect_raises, no_error, require
from ._settings import LARGE_VALUE, profile_name

#: rule id -> check(backend, profile); filled by @check in definition order
BACKEND_CHECKS = {}


def check(rule_id):
    def register(function):
        function.rule = rule_id
        BACKEND_CHECKS[rule_id] = function
        return function

    return register


def _cleanup(backend):
    """Best effort: leave nothing behind, whatever state a failed check left the backend in."""
    for step in (backend.close, backend.destroy):
        try:
            step()
        except Exception:
            pass


@contextmanager
def _created_and_open(backend):
    """Create and open *backend* for one check; clean up afterwards, however the check ended."""
    try:
        with no_error("create", "create() of a fresh location"):
            backend.create()
        with no_error("open", "open() right after create()"):
            backend.open()
        yield
    finally:
        _cleanup(backend)


def _pattern(size: int, seed: int) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


@check("open-missing")
def check_open_missing(backend, profile):
    """open() of a location that was never created raises BackendDoesNotExist."""
    try:
        with expect_raises("open-missing", BackendDoesNotExist, "open() before create()"):
            backend.open()
    finally:
        _cleanup(backend)


@check("destroy-missing")
def check_destroy_missing(backend, profile):
    """destroy() of a location that was never created raises BackendDoesNotExist."""
    with expect_raises("destroy-missing", BackendDoesNotExist, "destroy() before create()"):
        backend.destroy()


@check("lifecycle")
def check_lifecycle(backend, profile):
    """create, open, store, close, open, load, close, destroy work; afterwards open() raises BackendDoesNotExist."""
    caps = capabilities_of(backend)
    require(caps.write, "needs write=True")
    with _created_and_open(backend):
        with no_error("lifecycle", "store() in a new store"):
            backend.store("config", b"lifecycle")
        with no_error("lifecycle", "close() and open() again"):
            backend.close()
            backend.open()
        if caps.read:
            with no_error("lifecycle", "load() after reopening"):
                value = backend.load("config")
            expect("lifecycle", value == b"lifecycle", f"after reopening, load() gave {value!r}")
        with no_error("lifecycle", "close() and destroy()"):
            backend.close()
            backend.destroy()
        with expect_raises("lifecycle", BackendDoesNotExist, "open() after destroy()"):
            backend.open()


@check("create-empty-ok")
def check_create_on_empty_location(backend, profile):
    """create() on an existing but empty location succeeds."""
    try:
        with no_error("create-empty-ok", "create()"):
            backend.create()
        with no_error("create-empty-ok", "a second create() while the location is still empty"):
            backend.create()
    finally:
        _cleanup(backend)


@check("create-non-empty")
def check_create_on_non_empty_location(backend, profile):
    """create() on a non-empty location raises BackendAlreadyExists and loses nothing."""
    caps = capabilities_of(backend)
    require(caps.write, "needs write=True")
    with _created_and_open(backend):
        backend.store("data/0123", b"precious")
        backend.close()
        with expect_raises("create-non-empty", BackendAlreadyExists, "create() on a location holding an item"):
            backend.create()
        backend.open()
        if caps.read:
            with no_error("create-non-empty", "load() after the refused create()"):
                value = backend.load("data/0123")
            expect("create-non-empty", value == b"precious", f"the refused create() changed the item to {value!r}")


@check("must-not-be-open")
def check_lifecycle_while_open(backend, profile):
    """open(), create() and destroy() on an open backend raise BackendMustNotBeOpen."""
    with _created_and_open(backend):
        for what, op in (("open()", backend.open), ("create()", backend.create), ("destroy()", backend.destroy)):
            with expect_raises("must-not-be-open", BackendMustNotBeOpen, f"{what} while open"):
                op()
        with no_error("must-not-be-open", "close() after the refused calls"):
            backend.close()
        with no_error("must-not-be-open", "destroy() after close()"):
            backend.destroy()


def _item_operations(backend):
    """The operations the backend declares it has, each as (description, call)."""
    caps = capabilities_of(backend)
    operations = []
    if caps.read:
        operations += [("info('x')", lambda: backend.info("x")), ("load('x')", lambda: backend.load("x"))]
    if caps.write:
        operations += [
            ("store('x', b'1')", lambda: backend.store("x", b"1")),
            ("delete('x')", lambda: backend.delete("x")),
            ("move('x', 'y')", lambda: backend.move("x", "y")),
            ("mkdir('d')", lambda: backend.mkdir("d")),
            ("rmdir('d')", lambda: backend.rmdir("d")),
        ]
    if caps.list:
        operations.append(("list('')", lambda: [*backend.list("")]))
    return operations


@check("closed-backend-raises")
def check_closed_backend(backend, profile):
    """Every item and directory operation on a closed backend raises BackendMustBeOpen and changes nothing."""
    caps = capabilities_of(backend)
    try:
        with no_error("create", "create() of a fresh location"):
            backend.create()
        for state in ("never opened", "closed"):
            for what, op in _item_operations(backend):
                with expect_raises("closed-backend-raises", BackendMustBeOpen, f"{what} on a {state} backend"):
                    op()
            if state == "never opened":
                backend.open()
                if caps.write:
                    backend.store("x", b"kept")
                backend.close()
        backend.open()
        if caps.write and caps.read:
            value = backend.load("x")
            expect(
                "closed-backend-raises",
                value == b"kept",
                f"an operation on the closed backend changed 'x' to {value!r}",
            )
            expect("closed-backend-raises", not backend.info("y").exists, "move() on the closed backend created 'y'")
    finally:
        _cleanup(backend)


@check("empty-value")
def check_empty_value(backend, profile):
    """An empty value stores, loads back as b'', and info() shows size 0."""
    caps = capabilities_of(backend)
    require(caps.write and caps.read, "needs write=True and read=True")
    with _created_and_open(backend):
        with no_error("empty-value", "store('data/empty', b'')"):
            backend.store("data/empty", b"")
        expect("empty-value", backend.load("data/empty") == b"", "load() of an empty value")
        expect("empty-value", backend.load("data/empty", offset=-5, size=3) == b"", "a ranged load() of an empty value")
        info = backend.info("data/empty")
        expect("empty-value", info.exists and info.size == 0 and not info.directory, f"info() = {info}")


@check("large-value")
def check_large_value(backend, profile):
    """A value of several MiB stores and loads back whole and in ranges, with the right size."""
    caps = capabilities_of(backend)
    require(caps.write and caps.read, "needs write=True and read=True")
    size = LARGE_VALUE[profile_name(profile)] + 12345  # not a multiple of any usual chunk size
    value = _pattern(size, 7)
    with _created_and_open(backend):
        with no_error("large-value", f"store() of {size} bytes"):
            backend.store("data/large", value)
        info = backend.info("data/large")
        expect("large-value", info.exists and info.size == size, f"info() = {info}, expected size {size}")
        expect("large-value", backend.load("data/large") == value, f"load() of {size} bytes differs")
        middle = size // 2
        expect(
            "large-value",
            backend.load("data/large", offset=middle, size=1000) == value[middle : middle + 1000],
            "a range in the middle differs",
        )
        expect("large-value", backend.load("data/large", offset=-1000) == value[-1000:], "the last 1000 bytes differ")


@check("tmp-items-hidden")
def check_tmp_items_hidden(backend, profile):
    """Items whose names end in .tmp (stores in progress) never appear in a listing."""
    caps = capabilities_of(backend)
    require(caps.write and caps.list, "needs write=True and list=True")
    with _created_and_open(backend):
        backend.store("data/ab/abcd", b"visible")
        backend.store("data/ab/abcd.tmp", b"in progress")
        backend.store("top.tmp", b"in progress")
        listed = [info.name for info in backend.list("data/ab")]
        expect("tmp-items-hidden", listed == ["abcd"], f"list('data/ab') = {listed}, expected ['abcd']")
        listed = [info.name for info in backend.list("") if info.name not in INTERNAL_ROOT_ITEMS]
        expect("tmp-items-hidden", listed == ["data"], f"list('') = {listed}, expected ['data']")


def _run_threads(workers):
    errors = []

    def guarded(work):
        try:
            work()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@check("threads")
def check_threads(backend, profile):
    """A backend declared thread_safe gives every thread its own correct results when used by several at once."""
    caps = capabilities_of(backend)
    require(caps.thread_safe, "the backend declares thread_safe=False (the Store serializes its calls)")
    require(caps.write and caps.read and caps.list, "needs write, read and list")
    rounds = 40 if profile_name(profile) == "quick" else 400
    with _created_and_open(backend):

        def worker(number):
            def work():
                for i in range(rounds):
                    name = f"data/{number:02x}/{number:02x}{i:06x}"
                    value = _pattern(100 + i * 13, number + i)
                    backend.store(name, value)
                    got = backend.load(name)
                    expect("threads", got == value, f"thread {number}: load({name!r}) gave another value")
                    if i % 3 == 0:
                        backend.delete(name)
                        expect("threads", not backend.info(name).exists, f"thread {number}: {name!r} still there")
                listed = sorted(info.name for info in backend.list(f"data/{number:02x}"))
                wanted = sorted(f"{number:02x}{i:06x}" for i in range(rounds) if i % 3)
                expect(
                    "threads",
                    listed == wanted,
                    f"thread {number}: list() shows {len(listed)} items, expected {len(wanted)}",
                )

            return work

        errors = _run_threads([worker(n) for n in range(4)])
        for error in errors:
            if isinstance(error, AssertionError):
                raise error
            raise AssertionError(f"[threads] a thread raised {type(error).__name__}: {error}") from error


@check("store-atomic")
def check_store_atomic(backend, profile):
    """A reader never sees a partial value: during an overwrite it loads the old or the new value, never a mix."""
    caps = capabilities_of(backend)
    require(caps.thread_safe, "a concurrent reader needs thread_safe=True")
    require(caps.atomic_store, "the backend declares atomic_store=False")
    require(caps.write and caps.read, "needs write and read")
    old, new = _pattern(1024 * 1024, 1), _pattern(2 * 1024 * 1024 + 77, 2)
    sizes = {len(old), len(new)}
    rounds = 30 if profile_name(profile) == "quick" else 300
    stop = threading.Event()
    seen = []
    with _created_and_open(backend):
        backend.store("data/item", old)

        def writer():
            try:
                for i in range(rounds):
                    backend.store("data/item", new if i % 2 == 0 else old)
            finally:
                stop.set()

        def reader():
            while not stop.is_set():
                try:
                    value = backend.load("data/item")
                except ObjectNotFound:
                    seen.append("load() raised ObjectNotFound while the item was being overwritten")
                    return
                if value != old and value != new:
                    seen.append(f"load() gave {len(value)} bytes, neither the old nor the new value")
                    return
                info = backend.info("data/item")
                if not info.exists or info.size not in sizes:
                    seen.append(f"info() showed {info} while the item was being overwritten")
                    return

        errors = _run_threads([writer, reader, reader])
        expect("store-atomic", not seen, seen[0] if seen else "")
        for error in errors:
            raise AssertionError(f"[store-atomic] a thread raised {type(error).__name__}: {error}") from error
