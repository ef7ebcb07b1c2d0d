"""Copying a whole store from one backend to another: ``borgstore copy SRC DST``.

The copy works on backend names (``data/01/23/0123abcd.del``), below any namespace config, so a
store is reproduced exactly without knowing its config.  The rules (resuming, directories,
``quota.hid``, hashes, interruption) are in docs/cli.md, section "copy".  This module is the
transfer engine; the two ends (a chain per thread, the walk of the tree) are borgstore._copy_sides.
"""

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

from . import _plugins
from ._copy_sides import Side, Stopped, empty_leaves, walk
from ._progress import CopySummary, Reporter
from .backends._base import Capabilities, new_hash
from .backends.errors import BackendDoesNotExist, ObjectNotFound
from .constants import QUOTA_STORE_NAME

#: hash algorithms in the order copy prefers them when both backends compute them server side
HASH_PREFERENCE = ("sha256", "sha512", "blake2b", "sha1", "md5")
#: seconds between two ticks of the caller's reporter while transfers run
TICK = 0.2


def choose_hash(source_capabilities: Capabilities, destination_capabilities: Capabilities) -> str:
    """The algorithm a copy compares items with: the first of :data:`HASH_PREFERENCE` that both
    backends compute where the data is, else sha256 (hashed after reading the item)."""
    common = set(source_capabilities.hash_algorithms) & set(destination_capabilities.hash_algorithms)
    return next((name for name in HASH_PREFERENCE if name in common), "sha256")


@dataclass
class _Plan:
    names: list[str]  # the source's items to copy, quota.hid aside
    source_sizes: dict[str, int]
    destination_sizes: dict[str, int]
    directories: list[str]  # empty source directories to make at the destination
    quota: Optional[int]  # the source's quota.hid size if it travels, else None
    destination_quota: bool  # the destination has a quota.hid


class Copy:
    """One copy of the store at *source* (a URL) to *destination* (a URL; created if missing).

    :param transfers: items in flight at once (worker threads).
    :param verify: after each copy, compare the destination's hash with the source's; a
        difference, or an item found at the destination with other content, is a mismatch.
    :param dry_run: list and compare, report what would be copied, change nothing.
    :param reporter: a :class:`Reporter` (progress display); default: none.
    :param stop: an event; setting it stops the copy cleanly: no transfer starts any more, the
        ones in flight finish, :meth:`run` returns with ``summary.interrupted``.

    A ``KeyboardInterrupt`` in the thread running :meth:`run` abandons the transfers in flight
    (their threads are daemons; ``store()`` being atomic, none leaves a partial item): it is
    raised again after ``reporter.finish()``, with :attr:`summary` telling what was done.
    """

    def __init__(
        self,
        source: str,
        destination: str,
        *,
        transfers: int = 4,
        verify: bool = False,
        dry_run: bool = False,
        reporter: Optional[Reporter] = None,
        stop: Optional[threading.Event] = None,
    ):
        _check_arguments(source, destination, transfers)
        self.source = Side(source, "source")
        self.destination = Side(destination, "destination")
        self.summary = CopySummary(
            source=self.source.shown,
            destination=self.destination.shown,
            dry_run=bool(dry_run),
            verify=bool(verify),
            transfers=transfers,
        )
        self._reporter = reporter or Reporter()
        self._stop = stop if stop is not None else threading.Event()
        self._lock = threading.RLock()
        self._gate = threading.Lock()
        self._gate_open = False
        self._in_flight = 0
        self._quota_copied = False
        self._stop_reported = False
        self._plan = _Plan(
            names=[], source_sizes={}, destination_sizes={}, directories=[], quota=None, destination_quota=False
        )
        self._started = time.monotonic()

    def run(self) -> CopySummary:
        """Copy; return the summary (also on interruption: see :attr:`CopySummary.exit_status`)."""
        self._started = time.monotonic()
        closing = True
        try:
            self.summary.destination_created = self._open()
            try:
                self._plan = self._make_plan()
            except Stopped:
                self.summary.interrupted = True
            else:
                self._transfer()
                self._finish_up()
        except KeyboardInterrupt:
            closing = False  # threads may still use the backends: the process is ending
            self._stop.set()
            with self._lock:
                self.summary.interrupted = True
                self.summary.abandoned = self._in_flight
            self._report_end()
            raise
        finally:
            if closing:
                self._close()
        self._report_end()
        return self.summary

    # --- the phases ---
    def _open(self) -> bool:
        self.source.open(create=False)
        try:
            return self.destination.open(create=not self.summary.dry_run)
        except BackendDoesNotExist:
            if not self.summary.dry_run:
                raise
            self.summary.notes.append(f"the destination {self.destination.shown} does not exist: it would be created")
            return False

    def _make_plan(self) -> _Plan:
        src_caps, dst_caps = self.source.capabilities, self.destination.capabilities
        with_dirs = bool(src_caps.needs_mkdir and dst_caps.needs_mkdir)
        threads = self.summary.transfers
        self._report("listing", "source")
        source_sizes, source_dirs = walk(self.source, with_dirs, self._stop, threads)
        destination_sizes: dict[str, int] = {}
        destination_dirs: set[str] = set()
        if self.destination.opened:
            self._report("listing", "destination")
            destination_sizes, destination_dirs = walk(self.destination, with_dirs, self._stop, threads)
        quota = source_sizes.pop(QUOTA_STORE_NAME, None)
        destination_quota = QUOTA_STORE_NAME in destination_sizes
        extra = sum(1 for name in destination_sizes if name not in source_sizes and name != QUOTA_STORE_NAME)
        if quota is not None and extra:
            self.summary.notes.append(
                f"{QUOTA_STORE_NAME} is not copied: the destination holds {extra} item(s) the source does not "
                "have, so the source's usage figure would not be the destination's"
            )
            quota = None
        plan = _Plan(
            names=sorted(source_sizes),
            source_sizes=source_sizes,
            destination_sizes=destination_sizes,
            # made only where both sides have real directories (a walk without them found none)
            directories=sorted(empty_leaves(source_dirs, source_sizes) - destination_dirs) if with_dirs else [],
            quota=quota,
            destination_quota=destination_quota,
        )
        if quota is not None:
            source_sizes[QUOTA_STORE_NAME] = quota
        summary = self.summary
        summary.hash = choose_hash(src_caps, dst_caps)
        summary.items = len(plan.names) + (quota is not None)
        summary.bytes = sum(source_sizes.values())
        summary.extra = extra
        summary.directories = len(plan.directories)
        self._report("start")
        return plan

    def _transfer(self) -> None:
        tasks = iter(self._plan.names)
        count = min(self.summary.transfers, len(self._plan.names))
        workers = [
            threading.Thread(target=self._work, args=(tasks,), name=f"borgstore-copy-{i}", daemon=True)
            for i in range(count)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(TICK)
                self._tick()

    def _finish_up(self) -> None:
        """The empty directories and quota.hid, unless the copy was stopped or items failed."""
        plan, summary = self._plan, self.summary
        if self._stop.is_set():
            self._tick()
            summary.interrupted = True
            return
        if plan.directories and not summary.dry_run:
            self._make_directories(plan.directories)
        if plan.quota is not None:
            if summary.failed:
                summary.notes.append(f"{QUOTA_STORE_NAME} is not copied: {summary.failed} item(s) failed")
            else:
                self._do(QUOTA_STORE_NAME)
                self._quota_copied = not summary.failed

    def _quota_note(self) -> None:
        """Say what became of the destination's own quota.hid, where copy changed it."""
        plan = self._plan
        if not plan.destination_quota or self._quota_copied:
            return
        if self._gate_open:
            self.summary.notes.append(
                f"the destination's {QUOTA_STORE_NAME} was removed: a quota counts the store anew at its next open"
            )
        elif self.summary.dry_run and self.summary.copied:
            self.summary.notes.append(
                f"the destination's {QUOTA_STORE_NAME} would be removed (a quota would count anew)"
            )

    def _make_directories(self, directories: Iterable[str]) -> None:
        link = self.destination.link()
        for directory in directories:
            try:
                link.mkdir(directory)
            except Exception as exc:
                with self._lock:
                    self.summary.failed += 1
                    self.summary.failures.append([directory + "/", f"{type(exc).__name__}: {exc}"])
                    self._reporter.problem(
                        "error", directory + "/", f"mkdir: {type(exc).__name__}: {exc}", self.summary
                    )
            else:
                self.summary.directories_created += 1

    def _close(self) -> None:
        """Close both sides; a failure (e.g. making the destination durable) counts as one."""
        for side in (self.destination, self.source):
            try:
                side.close()
            except Exception as exc:
                with self._lock:
                    self.summary.failed += 1
                    self.summary.failures.append([f"({side.role})", f"close: {type(exc).__name__}: {exc}"])

    # --- one item ---
    def _work(self, tasks: Iterator[str]) -> None:
        while not self._stop.is_set():
            with self._lock:
                name = next(tasks, None)
                if name is None:
                    return
                self._in_flight += 1
            try:
                self._do(name)
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _do(self, name: str) -> None:
        """Copy, skip or fail one item, and count it."""
        size = self._plan.source_sizes[name]
        try:
            action, done = self._copy_item(name, size)
        except Exception as exc:  # any failure of one item: the others go on
            self._failed(name, size, exc)
            return
        with self._lock:
            summary = self.summary
            summary.items_done += 1
            summary.bytes_done += size
            if action == "copied":
                summary.copied += 1
                summary.bytes_copied += done
            else:
                summary.skipped += 1
            self._reporter.item(action, name, size, summary)

    def _copy_item(self, name: str, size: int) -> tuple[str, int]:
        src = self.source.link()
        found = self._plan.destination_sizes.get(name)
        if found is not None:
            dst = self.destination.link()
            algorithm = self.summary.hash
            if found == size and src.hash(name, algorithm) == dst.hash(name, algorithm):
                return "skipped", 0
            self._replacing(name, found, size)
        if self.summary.dry_run:
            return "copied", size
        data = src.load(name)
        self._before_first_write()
        dst = self.destination.link()
        dst.store(name, data)
        if self.summary.verify:
            expected = new_hash(self.summary.hash, data).hexdigest()
            if dst.hash(name, self.summary.hash) != expected:
                self._mismatch(
                    name, f"after the copy, its {self.summary.hash} at the destination differs from the source's"
                )
        return "copied", len(data)

    def _replacing(self, name: str, found: int, size: int) -> None:
        with self._lock:
            self.summary.replaced += 1
        if self.summary.verify:
            what = "same size" if found == size else f"{found} bytes, the source's {size}"
            fate = "would be replaced" if self.summary.dry_run else "replaced"
            self._mismatch(name, f"the destination held other content ({what}): {fate}")

    def _before_first_write(self) -> None:
        """Before the destination changes: drop its quota.hid, which would then lie (a quota
        session counts anew without it; the source's is copied last where it is true)."""
        if self._gate_open:
            return
        with self._gate:
            if not self._gate_open:
                if self._plan.destination_quota:
                    try:
                        self.destination.link().delete(QUOTA_STORE_NAME)
                    except ObjectNotFound:
                        pass
                    self._plan.destination_sizes.pop(QUOTA_STORE_NAME, None)
                self._gate_open = True

    # --- counting and reporting ---
    def _failed(self, name: str, size: int, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        with self._lock:
            summary = self.summary
            summary.failed += 1
            summary.items_done += 1
            summary.bytes_done += size
            summary.failures.append([name, f"{type(exc).__name__}: {message}"])
            self._reporter.problem("error", name, f"{type(exc).__name__}: {message}", summary)
            self._reporter.item("failed", name, size, summary)

    def _mismatch(self, name: str, message: str) -> None:
        with self._lock:
            self.summary.mismatches.append(name)
            self._reporter.problem("mismatch", name, message, self.summary)

    def _tick(self) -> None:
        with self._lock:
            self.summary.seconds = time.monotonic() - self._started
            if self._stop.is_set() and not self._stop_reported:
                self._stop_reported = True
                self._reporter.stopping(self._in_flight, self.summary)
            self._reporter.tick(self.summary)

    def _report(self, event: str, *args: object) -> None:
        with self._lock:
            self.summary.seconds = time.monotonic() - self._started
            getattr(self._reporter, event)(*args, self.summary)

    def _report_end(self) -> None:
        self._quota_note()
        with self._lock:
            summary = self.summary
            summary.seconds = time.monotonic() - self._started
            if summary.interrupted:
                summary.not_started = max(summary.items - summary.items_done - summary.abandoned, 0)
            reporter, self._reporter = self._reporter, Reporter()  # abandoned threads report to nobody
            reporter.finish(summary)


def _check_arguments(source: str, destination: str, transfers: int) -> None:
    for role, url in (("source", source), ("destination", destination)):
        if not isinstance(url, str) or ":" not in url:
            raise ValueError(f"the {role} must be a store URL such as file:///path, not {url!r}")
    if isinstance(transfers, bool) or not isinstance(transfers, int) or transfers < 1:
        raise ValueError(f"transfers must be an int >= 1, not {transfers!r}")
    src, dst = source.rstrip("/"), destination.rstrip("/")
    if src == dst:
        raise ValueError(f"the source and the destination are the same store: {_plugins.redact_url(source)}")
    if dst.startswith(src + "/") or src.startswith(dst + "/"):
        raise ValueError(
            f"one store lies inside the other: {_plugins.redact_url(source)} and {_plugins.redact_url(destination)}"
        )


def copy_store(source: str, destination: str, **options: Any) -> CopySummary:
    """Copy the store at *source* to *destination* (both URLs); options as :class:`Copy`."""
    return Copy(source, destination, **options).run()
