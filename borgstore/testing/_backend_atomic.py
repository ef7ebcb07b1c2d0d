"""Example checks of the optional operations that concern writers: ``store_new`` (capability
``store_new``: write only where no item exists, atomically) and ``list_temp`` (no flag: a
backend has it or not; the stale temp clean-up uses it).

=========================  ==================================================================
flag / operation           rule
=========================  ==================================================================
``store_new``              ``store-new-creates``, ``store-new-races``
``list_temp()``            ``list-temp-shows-temps``
=========================  ==================================================================

A store in progress is hard to catch from outside, so ``list-temp-shows-temps`` stores items
whose names end in ``.tmp`` with store(): temp names are valid backend names, and such an item
is exactly what a writer that died leaves behind.
"""

import threading

from ..backends.errors import BackendError, ObjectAlreadyExists
from ..constants import TMP_SUFFIX
from ._backend_base import check, created_and_open, pattern, raise_thread_errors, run_threads, show_bytes, show_names
from ._backend_capabilities import CAPABILITY_RULES, expect_no_temporary_items
from ._backend_edges import HOSTILE_NAMES
from ._rules import ConformanceFailure, expect, expect_raises, no_error, require
from ._settings import profile_name

CAPABILITY_RULES["store_new"] = ("store-new-creates", "store-new-races")

#: threads racing on one new name in store-new-races
RACERS = 8


def _no_temp_left(rule, backend, name):
    """After store_new calls on *name*, no temp item may be left beside it (list_temp where the
    backend has it, else the rmdir probe of concurrent-writers)."""
    directory = name.rpartition("/")[0]
    if hasattr(backend, "list_temp"):
        left = [info.name for info in backend.list_temp(directory)]
        expect(rule, not left, f"temp items left in {directory!r} after store_new: {show_names(left)}")
    else:
        expect_no_temporary_items(rule, backend, name)


@check("store-new-creates")
def check_store_new_creates(backend, profile):
    """store_new() stores a new name; on an existing one: ObjectAlreadyExists, value kept, no temp item left."""
    rule = "store-new-creates"
    with created_and_open(backend) as caps:
        require(caps.store_new, "the backend declares store_new=False")
        require(caps.write and caps.read, "needs write=True and read=True")
        name, old, new = "data/new/item", pattern(1000, 1), pattern(3000, 2)
        with no_error(rule, f"store_new({name!r}) of a new name in a missing directory"):
            backend.store_new(name, old)
        got = backend.load(name)
        expect(rule, got == old, f"after store_new({name!r}), load() gave {show_bytes(got)}")
        with expect_raises(rule, ObjectAlreadyExists, f"store_new({name!r}) of an existing item"):
            backend.store_new(name, new)
        got = backend.load(name)
        expect(rule, got == old, f"a refused store_new({name!r}) changed the item: load() gave {show_bytes(got)}")
        info = backend.info(name)
        expect(rule, info.exists and info.size == len(old), f"after a refused store_new, info() = {info}")
        backend.store("data/other", b"by store()")
        with expect_raises(rule, ObjectAlreadyExists, "store_new('data/other') of an item made by store()"):
            backend.store_new("data/other", b"new")
        for hostile in HOSTILE_NAMES:
            with expect_raises(rule, ValueError, f"store_new({hostile!r}, ...)"):
                backend.store_new(hostile, b"hostile")
        _no_temp_left(rule, backend, name)


def _race(backend, name, errors):
    """RACERS threads call store_new(name) at once; return {thread: value} of the winners, and
    add the failures that are not ObjectAlreadyExists to *errors*."""
    # a thread that never arrives breaks the barrier (an error) instead of hanging the others
    barrier = threading.Barrier(RACERS, timeout=60)
    values = {number: pattern(64 * 1024 + number, number) for number in range(RACERS)}
    winners = {}

    def racer(number):
        def work():
            barrier.wait()
            try:
                backend.store_new(name, values[number])
            except ObjectAlreadyExists:
                return
            winners[number] = values[number]

        return work

    errors.extend(run_threads([racer(number) for number in range(RACERS)]))
    return winners


@check("store-new-races")
def check_store_new_races(backend, profile):
    """Threads racing store_new() on one new name: one wins, the rest get ObjectAlreadyExists; its value stays."""
    rule = "store-new-races"
    rounds = 10 if profile_name(profile) != "deep" else 60
    with created_and_open(backend) as caps:
        require(caps.store_new, "the backend declares store_new=False")
        require(caps.thread_safe, "racing threads need thread_safe=True")
        require(caps.write and caps.read, "needs write=True and read=True")
        for round_number in range(rounds):
            name = f"data/race/{round_number:03d}"
            errors: list[BaseException] = []
            winners = _race(backend, name, errors)
            raise_thread_errors(rule, errors)
            shown = f"round {round_number}: {len(winners)} of {RACERS} racing store_new({name!r}) calls succeeded"
            expect(rule, len(winners) == 1, f"{shown}, expected exactly one")
            got = backend.load(name)
            (value,) = winners.values()
            expect(rule, got == value, f"{shown}; load() gave {show_bytes(got)}, not the winner's value")
        # every round's item but the first goes, so that only a left temp item can keep the
        # directory from being removed (the probe where the backend has no list_temp)
        for round_number in range(1, rounds):
            backend.delete(f"data/race/{round_number:03d}")
        _no_temp_left(rule, backend, "data/race/000")


@check("list-temp-shows-temps")
def check_list_temp_shows_temps(backend, profile):
    """list_temp(d): each .tmp item below d (any depth, relative path, mtime), no other; missing d: nothing."""
    rule = "list-temp-shows-temps"
    with created_and_open(backend) as caps:
        require(hasattr(backend, "list_temp"), "the backend has no list_temp()")
        require(caps.write and caps.list, "needs write=True and list=True")
        temps = {"data/00/item" + TMP_SUFFIX: b"left by a writer", "data/00/11/deeper" + TMP_SUFFIX: b"deeper"}
        for name, value in temps.items():
            backend.store(name, value)
        backend.store("data/00/item", b"the item")
        backend.store("top" + TMP_SUFFIX, b"in the root")
        _expect_temps(rule, backend, "data", {name[len("data/") :] for name in temps})
        _expect_temps(rule, backend, "data/00/11", {"deeper" + TMP_SUFFIX})
        _expect_temps(rule, backend, "", set(temps) | {"top" + TMP_SUFFIX})
        _expect_temps(rule, backend, "no/such/directory", set())
        for hostile in HOSTILE_NAMES:
            with expect_raises(rule, ValueError, f"list_temp({hostile!r})"):
                list(backend.list_temp(hostile))
        listed = [info.name for info in backend.list("data/00")]
        shown = f"list('data/00') = {listed}: a .tmp item is listed"
        expect(rule, not any(name.endswith(TMP_SUFFIX) for name in listed), shown)


def _expect_temps(rule, backend, directory, wanted):
    what = f"list_temp({directory!r})"
    try:
        found = list(backend.list_temp(directory))
    except BackendError as exc:  # ObjectNotFound too: a missing directory yields nothing
        raise ConformanceFailure(rule, f"{what} raised {type(exc).__name__}: {exc}") from exc
    names = {info.name for info in found}
    expect(rule, names == wanted, f"{what} gave {show_names(names)}, expected {show_names(wanted)}")
    for info in found:
        shown = f"{what}: {info.name!r} has no mtime ({info})"
        expect(rule, isinstance(info.mtime, (int, float)) and info.mtime > 0, shown)
        expect(rule, info.exists and not info.directory, f"{what}: {info} is not an existing item")
