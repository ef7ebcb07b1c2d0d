"""What every example check of the backend contract shares: the registry, setting a backend up and
tearing it down, test values, threads, snapshots of a store's contents and failure diagnosis.

A check reads the backend's capabilities only once the backend is open (:func:`created_and_open`
yields them): a backend may learn what its storage can do only when it connects.
"""

import threading
from contextlib import contextmanager

from ..backends._base import new_hash
from ..backends.errors import ObjectNotFound
from ._model import INTERNAL_ROOT_ITEMS, join
from ._rules import ConformanceFailure, KitCheck, capabilities_of, no_error

#: rule id -> check(backend, profile); filled by @check in definition order
BACKEND_CHECKS: dict[str, KitCheck] = {}


def check(rule_id):
    """Register the decorated function as the example check of *rule_id*."""

    def register(function):
        function.rule = rule_id
        BACKEND_CHECKS[rule_id] = function
        return function

    return register


def cleanup(backend):
    """Best effort: leave nothing behind, whatever state a failed check left the backend in."""
    for step in (backend.close, backend.destroy):
        try:
            step()
        except Exception:
            pass


@contextmanager
def created_and_open(backend):
    """Create and open *backend* for one check and yield its capabilities (read after open());
    clean up afterwards, however the check ended."""
    try:
        with no_error("create", "create() of a fresh location"):
            backend.create()
        with no_error("open", "open() right after create()"):
            backend.open()
        yield capabilities_of(backend)
    finally:
        cleanup(backend)


def opened_capabilities(backend):
    """The capabilities *backend* declares once open: create, open, read them, close, destroy."""
    with created_and_open(backend) as caps:
        return caps


def pattern(size: int, seed: int) -> bytes:
    """*size* bytes that differ for every seed and at every offset within 4 KiB."""
    block = bytes((i * 31 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def run_threads(workers) -> list:
    """Run each callable of *workers* in a thread of its own; return the exceptions they raised."""
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


def raise_thread_errors(rule: str, errors) -> None:
    """Re-raise the first error a worker thread raised, as a failure of *rule*."""
    for error in errors:
        if isinstance(error, ConformanceFailure):
            raise error
        raise ConformanceFailure(rule, f"a thread raised {type(error).__name__}: {error}") from error


def show_names(names, limit: int = 8) -> str:
    """A short, readable list of names for a failure message."""
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def snapshot(backend, caps, names=()) -> dict:
    """What a store holds, as far as the declared capabilities let the kit see it: every entry a
    walk with list() finds (path -> size, or "dir"), and the value of each of *names*."""
    seen = {}
    if caps.list:
        pending = [""]
        while pending:
            directory = pending.pop()
            for info in backend.list(directory):
                path = join(directory, info.name)
                if info.directory:
                    seen[path] = "dir"
                    pending.append(path)
                elif path not in INTERNAL_ROOT_ITEMS:
                    seen[path] = info.size
    if caps.read:
        for name in names:
            try:
                seen["value of " + name] = new_hash("sha256", backend.load(name)).hexdigest()
            except ObjectNotFound:
                seen["value of " + name] = "missing"
    return seen


def changes(before: dict, after: dict) -> str:
    """What differs between two snapshots, for a failure message."""
    keys = sorted(set(before) | set(after))
    differing = [
        f"{k}: {before.get(k, 'absent')} -> {after.get(k, 'absent')}" for k in keys if before.get(k) != after.get(k)
    ]
    return "; ".join(differing[:6]) + ("; ..." if len(differing) > 6 else "")


def diagnose_ranges(backend, sources, values: dict):
    """After gather(*sources*) gave wrong data: the first source whose own load() is wrong, as
    (rule, message), or None if every range loads right (then gather itself is wrong).

    So a bug in load() is reported as the load-range bug it is, not under gather."""
    for name, offset, size in sources:
        expected = values[name][offset : offset + size]
        try:
            got = backend.load(name, size=size, offset=offset)
        except Exception as exc:
            return "load-range", f"load({name!r}, size={size}, offset={offset}) raised {type(exc).__name__}: {exc}"
        if got != expected:
            return (
                "load-range",
                f"load({name!r}, size={size}, offset={offset}) gave {show_bytes(got)}, expected {show_bytes(expected)}",
            )
    return None


def gather_or_diagnose(backend, sources, values: dict, rule: str):
    """gather(*sources*) must give the concatenated ranges of *values*; if it does not (wrong data
    or an error), the failure names the operation that broke: a load() of one range if that is
    wrong too (rule load-range), else gather() itself (*rule*)."""
    what = f"gather({sources!r})"
    expected = b"".join(values[name][offset : offset + size] for name, offset, size in sources)
    try:
        got = backend.gather(sources)
    except Exception as exc:
        got = exc
    if isinstance(got, bytes) and got == expected:
        return
    diagnosis = diagnose_ranges(backend, sources, values)
    if diagnosis:
        raise ConformanceFailure(*diagnosis)
    if isinstance(got, Exception):
        raise ConformanceFailure(rule, f"{what} raised {type(got).__name__}: {got}") from got
    raise ConformanceFailure(rule, f"{what} gave {show_bytes(got)}, expected {show_bytes(expected)}")


def show_bytes(data) -> str:
    if data is None:
        return "None"
    if len(data) <= 40:
        return repr(bytes(data))
    return f"<{len(data)} bytes, sha256 {new_hash('sha256', bytes(data)).hexdigest()[:12]}>"
