"""Example checks of the backend contract: the rules a model expresses badly.

Each check takes a fresh backend object whose location does not exist yet, creates what it needs,
and leaves the location destroyed.  Its docstring's first line states the rule.  Capabilities are
read after open() (a backend may learn them then); a check that needs a capability the backend
declares off raises NotApplicable.

This module holds the lifecycle and value checks; :mod:`._backend_edges` (hostile names, the
edges of the operations, conflicts) and :mod:`._backend_capabilities` (one rule per capability
flag, threads) register theirs into the same :data:`BACKEND_CHECKS` when imported below.
"""

from ..backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ObjectNotFound,
    ReadRangeError,
)
from ._backend_base import BACKEND_CHECKS, check, cleanup, created_and_open, pattern
from ._model import INTERNAL_ROOT_ITEMS
from ._rules import ConformanceFailure, capabilities_of, expect, expect_raises, no_error, require
from ._settings import LARGE_VALUE, profile_name

__all__ = ["BACKEND_CHECKS"]


@check("open-missing")
def check_open_missing(backend, profile):
    """open() of a location that was never created raises BackendDoesNotExist."""
    try:
        with expect_raises("open-missing", BackendDoesNotExist, "open() before create()"):
            backend.open()
    finally:
        cleanup(backend)


@check("destroy-missing")
def check_destroy_missing(backend, profile):
    """destroy() of a location that was never created raises BackendDoesNotExist."""
    with expect_raises("destroy-missing", BackendDoesNotExist, "destroy() before create()"):
        backend.destroy()


@check("lifecycle")
def check_lifecycle(backend, profile):
    """create, open, store, close, open, load, close, destroy work; afterwards open() raises BackendDoesNotExist."""
    with created_and_open(backend) as caps:
        require(caps.write, "needs write=True")
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
        cleanup(backend)


@check("create-non-empty")
def check_create_on_non_empty_location(backend, profile):
    """create() on a non-empty location raises BackendAlreadyExists and loses nothing."""
    with created_and_open(backend) as caps:
        require(caps.write, "needs write=True")
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
    with created_and_open(backend):
        for what, op in (("open()", backend.open), ("create()", backend.create), ("destroy()", backend.destroy)):
            with expect_raises("must-not-be-open", BackendMustNotBeOpen, f"{what} while open"):
                op()
        with no_error("must-not-be-open", "close() after the refused calls"):
            backend.close()
        with no_error("must-not-be-open", "destroy() after close()"):
            backend.destroy()


@check("close-twice")
def check_close_twice(backend, profile):
    """close() of a backend that is not open (never opened, or closed already) raises BackendMustBeOpen."""
    with created_and_open(backend):
        backend.close()
        with expect_raises("close-twice", BackendMustBeOpen, "a second close()"):
            backend.close()
        with no_error("close-twice", "open() after the refused close()"):
            backend.open()
        backend.close()
        backend.destroy()
        backend.create()
        with expect_raises("close-twice", BackendMustBeOpen, "close() of a backend that was never opened"):
            backend.close()


def _item_operations(backend, caps=None):
    """The item and directory operations, each as (description, call): those *caps* declares,
    or all of them without *caps*."""
    every = caps is None
    operations = []
    if every or caps.read:
        operations += [
            ("info('x')", lambda: backend.info("x")),
            ("load('x')", lambda: backend.load("x")),
            ("hash('x')", lambda: backend.hash("x")),
            ("gather([('x', 0, 1)])", lambda: backend.gather([("x", 0, 1)])),
        ]
    if every or caps.write:
        operations += [
            ("store('x', b'1')", lambda: backend.store("x", b"1")),
            ("delete('x')", lambda: backend.delete("x")),
            ("move('x', 'y')", lambda: backend.move("x", "y")),
            ("mkdir('d')", lambda: backend.mkdir("d")),
            ("rmdir('d')", lambda: backend.rmdir("d")),
        ]
    if every or caps.list:
        operations.append(("list('')", lambda: [*backend.list("")]))
    if every or caps.list_tree:
        operations.append(("list_tree('')", lambda: [*backend.list_tree("")]))
    return operations


def _outcome(call):
    try:
        call()
    except Exception as exc:
        return exc
    return None


@check("closed-backend-raises")
def check_closed_backend(backend, profile):
    """Every item and directory operation on a closed backend raises BackendMustBeOpen and changes nothing."""
    rule = "closed-backend-raises"
    try:
        with no_error("create", "create() of a fresh location"):
            backend.create()
        # what a backend declares is known only once it is open: judge these calls afterwards
        never_opened = {what: _outcome(op) for what, op in _item_operations(backend)}
        with no_error("open", "open() right after create()"):
            backend.open()
        caps = capabilities_of(backend)
        if caps.write:
            backend.store("x", b"kept")
        backend.close()
        for what, op in _item_operations(backend, caps):
            with expect_raises(rule, BackendMustBeOpen, f"{what} on a closed backend"):
                op()
            outcome = never_opened[what]
            expect(
                rule,
                isinstance(outcome, BackendMustBeOpen),
                f"{what} on a never opened backend: expected BackendMustBeOpen, got "
                + (f"{type(outcome).__name__}: {outcome}" if outcome is not None else "no error"),
            )
        backend.open()
        if caps.write and caps.read:
            value = backend.load("x")
            expect(rule, value == b"kept", f"an operation on the closed backend changed 'x' to {value!r}")
            expect(rule, not backend.info("y").exists, "move() on the closed backend created 'y'")
    finally:
        cleanup(backend)


@check("empty-value")
def check_empty_value(backend, profile):
    """An empty value stores, loads back as b'', and info() shows size 0."""
    with created_and_open(backend) as caps:
        require(caps.write and caps.read, "needs write=True and read=True")
        with no_error("empty-value", "store('data/empty', b'')"):
            backend.store("data/empty", b"")
        expect("empty-value", backend.load("data/empty") == b"", "load() of an empty value")
        expect("empty-value", backend.load("data/empty", offset=-5, size=3) == b"", "a ranged load() of an empty value")
        info = backend.info("data/empty")
        expect("empty-value", info.exists and info.size == 0 and not info.directory, f"info() = {info}")


@check("large-value")
def check_large_value(backend, profile):
    """A value of several MiB stores and loads back whole and in ranges, with the right size."""
    size = LARGE_VALUE[profile_name(profile)] + 12345  # not a multiple of any usual chunk size
    value = pattern(size, 7)
    with created_and_open(backend) as caps:
        require(caps.write and caps.read, "needs write=True and read=True")
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
    with created_and_open(backend) as caps:
        require(caps.write and caps.list, "needs write=True and list=True")
        require(".tmp" not in caps.reserved_suffixes, "the storage reserves .tmp names")
        backend.store("data/ab/abcd", b"visible")
        backend.store("data/ab/abcd.tmp", b"in progress")
        backend.store("top.tmp", b"in progress")
        listed = [info.name for info in backend.list("data/ab")]
        expect("tmp-items-hidden", listed == ["abcd"], f"list('data/ab') = {listed}, expected ['abcd']")
        listed = [info.name for info in backend.list("") if info.name not in INTERNAL_ROOT_ITEMS]
        expect("tmp-items-hidden", listed == ["data"], f"list('') = {listed}, expected ['data']")


def _expect_missing(rule, what, call):
    """*call* must raise ObjectNotFound: nothing is there."""
    with expect_raises(rule, ObjectNotFound, what):
        result = call()
        raise ConformanceFailure(rule, f"{what} returned {result!r:.80} instead of raising ObjectNotFound")


def _check_loads(backend):
    """The ranges of load() on one value, each by the rule it belongs to."""
    value = bytes(range(100))
    backend.store("data/range", value)
    for rule, offset, size in (
        ("load-whole", 0, None),
        ("load-range", 10, 20),
        ("load-range", 0, 0),
        ("load-range", 99, 1),
        ("load-negative-offset", -10, None),
        ("load-negative-offset", -10, 5),
        ("load-negative-offset", -200, 3),
        ("load-past-end", 95, 10),
        ("load-past-end", 150, 10),
    ):
        start = max(len(value) + offset, 0) if offset < 0 else offset
        expected = value[start:] if size is None else value[start : start + size]
        with no_error(rule, f"load('data/range', size={size}, offset={offset})"):
            got = backend.load("data/range", size=size, offset=offset)
        expect(rule, got == expected, f"load('data/range', size={size}, offset={offset}) gave {got!r:.80}")
    with expect_raises("gather-short-read", ReadRangeError, "gather([('data/range', 90, 11)]) past the end"):
        backend.gather([("data/range", 90, 11)])


def _check_move_and_delete(backend):
    backend.store("data/a", b"the source")
    backend.store("data/b", b"the old target, longer")
    backend.move("data/a", "data/b")
    value, info = backend.load("data/b"), backend.info("data/b")
    expect("move-replaces-target", value == b"the source", f"move() onto an item left {value!r}")
    expect("info-size", info.size == 10, f"after move() onto an item, info() = {info}")
    _expect_missing("move", "load('data/a') after move('data/a', 'data/b')", lambda: backend.load("data/a"))
    what = "move('data/a', 'data/b') of a missing item"
    _expect_missing("move-missing", what, lambda: backend.move("data/a", "data/b"))
    expect("move-missing", backend.load("data/b") == b"the source", "a failed move() changed its target")
    backend.delete("data/b")
    _expect_missing("delete", "load('data/b') after delete('data/b')", lambda: backend.load("data/b"))
    _expect_missing("delete-missing", "a second delete('data/b')", lambda: backend.delete("data/b"))
    _expect_missing("hash-missing", "hash('data/b') of a missing item", lambda: backend.hash("data/b"))
    expect("info-missing", not backend.info("data/b").exists, "info() of a deleted item says it exists")


def _check_directories(backend, caps):
    if caps.needs_mkdir:
        backend.mkdir("new/parent/child")
        for name in ("new", "new/parent", "new/parent/child"):
            info = backend.info(name)
            shown = f"after mkdir('new/parent/child'), info({name!r}) = {info}"
            expect("mkdir-parents", info.exists and info.directory, shown)
    if caps.list:
        # stored out of order; names a "safe key" rewriting would fold into one
        for name in ("b-", "b", "a-b", "a.del", "a/x", "a:b", "a_b", "~"):
            backend.store(f"sorted/{name}", b"x")
        listed = [info.name for info in backend.list("sorted")]
        expect("list-sorted", listed == sorted(listed), f"list('sorted') is not sorted: {listed}")
        wanted = ["a", "a-b", "a.del", "a:b", "a_b", "b", "b-", "~"]
        expect("list-entries", sorted(listed) == wanted, f"list('sorted') = {listed}, expected {wanted}")
        try:
            missing = [*backend.list("no/such/directory")]
        except ObjectNotFound:
            missing = None
        allowed = missing is None or not caps.needs_mkdir and not missing
        expect("list-missing", allowed, f"list() of a missing directory gave {missing}")


@check("operations")
def check_operations(backend, profile):
    """Each operation keeps its basic promises in one fixed sequence (the state machine explores the rest)."""
    with created_and_open(backend) as caps:
        require(caps.write and caps.read, "needs write=True and read=True")
        _check_loads(backend)
        _check_move_and_delete(backend)
        _check_directories(backend, caps)
        quota = backend.quota()
        shown = f"quota() = {quota!r}, expected {{'limit': int, 'usage': int}}"
        expect("quota", isinstance(quota, dict) and all(type(quota.get(k)) is int for k in ("limit", "usage")), shown)


# registered after the checks above, so that reports list them in this order
from . import _backend_edges, _backend_capabilities  # noqa: E402,F401
from . import _backend_atomic  # noqa: E402,F401
