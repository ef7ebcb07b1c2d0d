"""Copying a whole store from one backend to another: ``borgstore copy SRC DST``.

The copy works on backend names (``data/01/23/0123abcd.del``), below any namespace config, so a
store is reproduced exactly without knowing its config.  The rules (resuming, directories,
``quota.hid``, hashes, interruption) are in docs/cli.md, section "copy".
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from . import _plugins
from ._chain import build_chain
from ._progress import CopySummary, Reporter
from .backends._base import new_hash
from .backends.errors import BackendDoesNotExist, ObjectNotFound
from .constants import QUOTA_STORE_NAME, TMP_SUFFIX

#: hash algorithms in the order copy prefers them when both backends compute them server side
HASH_PREFERENCE = ("sha256", "sha512", "blake2b", "sha1", "md5")
#: seconds between two ticks of the caller's reporter while transfers run
TICK = 0.2


def choose_hash(source_capabilities, destination_capabilities) -> str:
    """The algorithm a copy compares items with: the first of :data:`HASH_PREFERENCE` that both
    backends compute where the data is, else sha256 (hashed after reading the item)."""
    common = set(source_capabilities.hash_algorithms) & set(destination_capabilities.hash_algorithms)
    return next((name for name in HASH_PREFERENCE if name in common), "sha256")


class _Stopped(Exception):
    """A stop was asked for while listing."""


class _Side:
    """One end of a copy: its URL, the chain the copying thread uses, and where the backend is
    not thread-safe, one more backend object per worker thread (each opened on first use)."""

    def __init__(self, url: str, role: str):
        self.url = url
        self.role = role
        self.shown = _plugins.redact_url(url)
        self._main = self._build()
        # read before open(): the adapter decides at construction whether to serialize
        self.thread_safe = bool(getattr(self._main.capabilities, "thread_safe", False))
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()

    def _build(self):
        backend = _plugins.backend_for_url(self.url)
        # a network backend's chain retries temporary failures, as a Store's default chain does
        transient = getattr(getattr(backend, "capabilities", None), "transient_errors", False)
        return build_chain(backend, ["retry"] if transient else [], name=_plugins.url_scheme(self.url))

    @property
    def capabilities(self):
        return self._main.capabilities

    @property
    def opened(self) -> bool:
        return bool(self._opened)

    def open(self, create: bool) -> bool:
        """Open the store; if it does not exist, create it with *create* (True returned), else
        raise BackendDoesNotExist."""
        created = False
        try:
            self._main.open()
        except BackendDoesNotExist as exc:
            if not create:
                raise type(exc)(f"the {self.role} {self.shown} does not exist: {exc}") from None
            self._main.create()
            self._main.open()
            created = True
        self._opened.append(self._main)
        return created

    def link(self):
        """The chain for the calling thread."""
        if self.thread_safe or threading.get_ident() == self._owner:
            return self._main
        link = getattr(self._local, "link", None)
        if link is None:
            link = self._build()
            link.open()
            with self._lock:
                self._opened.append(link)
            self._local.link = link
        return link

    def close(self) -> None:
        """Close every chain opened; the first error is raised after all were tried."""
        error = None
        with self._lock:
            opened, self._opened = self._opened, []
        for link in opened:
            try:
                link.close()
            except Exception as exc:  # the others still get closed
                error = error or exc
        if error is not None:
            raise error


def _walk(side: _Side, with_dirs: bool, stop: threading.Event, threads: int):
    """``({name: size}, {directory})`` of every item (never a temp item) below the root."""
    link = side.link()
    if not with_dirs and link.capabilities.list_tree:
        items = {}
        for info in link.list_tree(""):
            if stop.is_set():
                raise _Stopped
            if not info.name.endswith(TMP_SUFFIX):
                items[info.name] = info.size
        return items, set()
    return _walk_directories(side, stop, threads)


def _walk_directories(side: _Side, stop: threading.Event, threads: int):
    """The walk with one ``list`` per directory, level by level, the directories of a level
    listed concurrently where the backend is thread-safe (a remote store has thousands)."""
    items, dirs, level = {}, set(), [""]

    def entries(directory):
        if stop.is_set():
            return []
        try:
            return list(side.link().list(directory))
        except ObjectNotFound:  # removed meanwhile by a writer of a live store
            return []

    pool = ThreadPoolExecutor(threads, thread_name_prefix="borgstore-copy-list") if side.thread_safe else None
    try:
        while level:
            listed = pool.map(entries, level) if pool is not None else map(entries, level)
            following = []
            for directory, infos in zip(level, listed, strict=True):
                for info in infos:
                    path = f"{directory}/{info.name}" if directory else info.name
                    if info.directory:
                        dirs.add(path)
                        following.append(path)
                    elif not path.endswith(TMP_SUFFIX):
                        items[path] = info.size
            if stop.is_set():
                raise _Stopped
            level = following
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return items, dirs


def _empty_leaves(dirs: set, items) -> set:
    """The directories in *dirs* with nothing below them (mkdir makes the parents)."""
    parents = set()
    for path in list(items) + list(dirs):
        parts = path.split("/")[:-1]
        for end in range(1, len(parts) + 1):
            parents.add("/".join(parts[:end]))
    return dirs - parents


@dataclass
class _Plan:
    names: list  # the source's items to copy, quota.hid aside
    source_sizes: dict
    destination_sizes: dict
    directories: list  # empty source directories to make at the destination
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
        self.source = _Side(source, "source")
        self.destination = _Side(destination, "destination")
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
            except _Stopped:
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
        source_sizes, source_dirs = _walk(self.source, with_dirs, self._stop, threads)
        destination_sizes, destination_dirs = {}, set()
        if self.destination.opened:
            self._report("listing", "destination")
            destination_sizes, destination_dirs = _walk(self.destination, with_dirs, self._stop, threads)
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
            directories=sorted(_empty_leaves(source_dirs, source_sizes) - destination_dirs) if with_dirs else [],
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

    def _make_directories(self, directories) -> None:
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
    def _work(self, tasks) -> None:
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

    def _copy_item(self, name: str, size: int):
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

    def _report(self, event: str, *args) -> None:
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


def _check_arguments(source, destination, transfers) -> None:
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


def copy_store(source: str, destination: str, **options) -> CopySummary:
    """Copy the store at *source* to *destination* (both URLs); options as :class:`Copy`."""
    return Copy(source, destination, **options).run()
