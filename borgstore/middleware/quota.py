"""The ``quota`` middleware: a limit on the bytes a store holds.

Option ``limit``: bytes (an int >= 0).  A store that would take the usage above the limit raises
QuotaExceeded and stores nothing; reaching the limit exactly is allowed, and a write that does
not grow the usage (an overwrite with a smaller value) is always allowed, so a full store can
still be cleaned up.

The usage is kept in the store itself, in the root item ``quota.hid``: an ASCII decimal integer
with no newline, the very format the PyPI borgstore's posixfs writes, so both share a store's
quota file.  open() reads it; if it is missing or unreadable, or with ``rescan=True``, the usage
is found by walking the whole store (soft-deleted items included) and written back, unless
another session wrote a valid file during the walk (then that file's value wins).  A session
without a quota does not touch the file (it makes no storage call for a quota it does not have),
so the file does not count what such sessions changed: an application that mixes sessions with
and without a quota on one store opens with ``rescan=True``.  Changes are counted in memory and
written when the unwritten change reaches ``persist_delta`` bytes, when ``persist_interval``
seconds passed since the last write, and at flush() and close().  Writing applies this session's
change to the value found in the file, so sessions that share a store add up their changes, and
takes the file's value as this session's view of the others' usage.

Sessions in several processes (docs/middleware.md "quota" states the bound): where the backend
has ``store_new``, each read-modify-write of ``quota.hid`` holds a lock item in the store
(``quota.lock.tmp``, see _storelock.py), so no session's update overwrites another's.  With
``persist_delta=0`` a store reserves its bytes in ``quota.hid`` itself, under that lock, before
writing them: sessions together never pass the limit.  With ``persist_delta`` > 0 each session
adds up to ``persist_delta`` plus one item unseen by the others.

A move (soft deletion included: a move to ``<name>.del``) keeps the bytes it moves; one that
replaces an existing item frees that item's bytes.  A ``store_new`` reserves and counts its whole
value as a store of a new item does; one that finds an item (ObjectAlreadyExists) counts nothing.
"""

import contextlib
import logging
import threading
import time
from typing import ContextManager, Optional, TypeVar, Union

from .._plugins import MiddlewareSpec, hookimpl
from ..backends._base import Value
from ..backends.errors import BackendError, ObjectNotFound, QuotaExceeded
from ..constants import HID_SUFFIX, QUOTA_PERSIST_DELTA, QUOTA_PERSIST_INTERVAL, QUOTA_STORE_NAME, TMP_SUFFIX
from ._base import Link, Middleware
from ._optional import optional_operation
from ._storelock import StoreLock

logger = logging.getLogger(__name__)

PERSIST_DELTA = QUOTA_PERSIST_DELTA
PERSIST_INTERVAL = float(QUOTA_PERSIST_INTERVAL)
#: the lock around a read-modify-write of quota.hid: a temp item, so that no listing shows it and
#: remove_stale_temps() removes one a dead session left
LOCK_NAME = "quota.lock" + TMP_SUFFIX
#: seconds a waiter sees the lock unchanged before it takes it as left by a dead session
LOCK_STALE = 30.0


_Number = TypeVar("_Number", int, float)


def _check_number(option: str, value: _Number, kind: Union[type, tuple[type, ...]]) -> _Number:
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
        expected = "an int" if kind is int else "a number"
        raise ValueError(f"quota: {option} must be {expected} >= 0, not {value!r}")
    return value


def _size_of(value: Value) -> int:
    return value.nbytes if isinstance(value, memoryview) else len(value)


def parse_usage(data: bytes) -> Optional[int]:
    """The usage stored in a quota file, or None if the content is not a plain decimal integer."""
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit():
        return None
    return int(text)


class QuotaMiddleware(Middleware):
    name = "quota"
    enforces_limits = True

    def __init__(
        self,
        inner: Link,
        *,
        limit: int,
        persist_delta: int = PERSIST_DELTA,
        persist_interval: float = PERSIST_INTERVAL,
        rescan: bool = False,
        lock_stale: float = LOCK_STALE,
    ):
        super().__init__(inner)
        if not isinstance(rescan, bool):
            raise ValueError(f"quota: rescan must be True or False, not {rescan!r}")
        self.rescan = rescan
        self.limit = _check_number("limit", limit, int)
        self.persist_delta = _check_number("persist_delta", persist_delta, int)
        self.persist_interval = float(_check_number("persist_interval", persist_interval, (int, float)))
        self.lock_stale = float(_check_number("lock_stale", lock_stale, (int, float)))
        self._lock = threading.RLock()
        self._usage = 0
        self._unpersisted = 0  # the change since the usage was last written to QUOTA_STORE_NAME
        self._reserved = 0  # bytes of stores under way
        self._persisted_at = 0.0
        self._opened = False

    # --- the quota file ---
    def _read_persisted(self) -> Optional[int]:
        try:
            return parse_usage(self.inner.load(QUOTA_STORE_NAME))
        except ObjectNotFound:
            return None

    def _scan(self, directory: str = "") -> int:
        """The bytes of every item below *directory*, soft-deleted ones included."""
        total = 0
        if self.inner.capabilities.list_tree:
            return sum(info.size for info in self.inner.list_tree(directory) if info.name != QUOTA_STORE_NAME)
        for info in self.inner.list(directory):
            path = f"{directory}/{info.name}" if directory else info.name
            if info.directory:
                total += self._scan(path)
            elif path != QUOTA_STORE_NAME:
                total += info.size
        return total

    def _file_locked(self) -> ContextManager[object]:
        """The store-wide lock around a read-modify-write of quota.hid, where the backend can
        create an item atomically; elsewhere none (sessions in other processes may then overwrite
        each other's updates: docs/middleware.md)."""
        if hasattr(self.inner, "store_new") and self.inner.capabilities.store_new:
            return StoreLock(self.inner, LOCK_NAME, self.lock_stale)
        return contextlib.nullcontext()

    def _persist(self, rescan: bool = False) -> None:
        """Write the usage: the file's value plus this session's change, or with *rescan* or no
        valid file, a fresh count.  Call with self._lock held."""
        if not rescan:
            with self._file_locked():
                usage = self._usage_from_file()
                if usage is not None:
                    self._write(usage)
                    return
        # a walk over the whole store may take minutes: not under the lock, whose holders are quick
        counted = self._scan()
        with self._file_locked():
            # Another session may have written a valid file during the walk and reserved stores
            # in it since: the walk cannot have seen those, so the file wins (rescan=True asks
            # for the walk's count and says no other session writes meanwhile).
            usage = None if rescan else self._usage_from_file()
            self._write(counted if usage is None else usage)

    def _usage_from_file(self) -> Optional[int]:
        """The file's usage plus this session's unwritten change, or None if the file holds no
        valid usage.  Under the file lock."""
        on_disk = self._read_persisted()
        return None if on_disk is None else max(on_disk + self._unpersisted, 0)

    def _write(self, usage: int) -> None:
        """Write *usage* to quota.hid and take it as this session's view.  Under the file lock."""
        self.inner.store(QUOTA_STORE_NAME, str(usage).encode("ascii"))
        self._usage = usage
        self._unpersisted = 0
        self._persisted_at = time.monotonic()

    def _count(self, delta: int, reserved: int = 0) -> None:
        """Count *delta* stored bytes (releasing *reserved* ones) and write the usage if enough
        has changed or enough time has passed."""
        with self._lock:
            self._reserved -= reserved
            if self.persist_delta == 0:
                delta -= reserved  # reserved in quota.hid already (_reserve_in_file)
            self._usage += delta
            self._unpersisted += delta
            if (
                self._unpersisted
                and abs(self._unpersisted) >= self.persist_delta
                or time.monotonic() - self._persisted_at >= self.persist_interval
            ):
                try:
                    self._persist()
                except BackendError as exc:
                    # the change itself is done; the count stays unwritten and is retried
                    logger.warning("quota: could not write the usage to %s: %s", QUOTA_STORE_NAME, exc)

    def _reserve(self, name: str, delta: int) -> int:
        """Reserve the bytes a store of *name* adds, or raise QuotaExceeded.  Returns the bytes
        reserved: held until the store is done, so concurrent stores cannot together pass the
        limit.  Give them back with _unreserve() if the store fails."""
        with self._lock:
            if delta > 0 and self.persist_delta == 0:
                reserved = self._reserve_in_file(name, delta)
            else:
                _check_limit(name, delta, self._usage + self._reserved, self.limit)
                reserved = max(delta, 0)
            self._reserved += reserved
            return reserved

    def _reserve_in_file(self, name: str, delta: int) -> int:
        """persist_delta=0: add *delta* to quota.hid under the file lock before the bytes are
        written, so every session checks against every other's stores, those under way included."""
        for attempt in range(2):
            with self._file_locked():
                usage = self._usage_from_file()
                if usage is not None:
                    _check_limit(name, delta, usage, self.limit)
                    self._write(usage + delta)
                    return delta
            if attempt == 0:
                self._persist()  # no valid quota.hid (removed meanwhile): count anew, unless another session did
        raise BackendError(f"quota: {QUOTA_STORE_NAME} vanished again right after it was written")

    def _unreserve(self, reserved: int) -> None:
        """Give back the bytes _reserve() reserved for a store that failed."""
        with self._lock:
            self._reserved -= reserved
            if reserved and self.persist_delta == 0:
                self._usage -= reserved
                self._unpersisted -= reserved  # taken back from quota.hid now, or at the next write
                try:
                    self._persist()
                except BackendError as exc:
                    logger.warning("quota: could not write the usage to %s: %s", QUOTA_STORE_NAME, exc)

    def _size(self, name: str) -> int:
        info = self.inner.info(name)
        return info.size if info.exists and not info.directory else 0

    # --- lifecycle ---
    def open(self) -> None:
        self.inner.open()
        try:
            if HID_SUFFIX in self.inner.capabilities.reserved_suffixes:
                raise BackendError(
                    f"the quota middleware keeps {QUOTA_STORE_NAME} in the store, and this backend refuses "
                    f"{HID_SUFFIX} names (a REST server's storage: set the quota on the server)"
                )
            with self._lock:
                self._unpersisted = 0
                self._persist(rescan=self.rescan)
        except BaseException:
            self.inner.close()
            raise
        self._opened = True

    def close(self) -> None:
        try:
            if self._opened:
                with self._lock:
                    self._persist()
        finally:
            self._opened = False
            self.inner.close()

    def flush(self) -> None:
        with self._lock:
            self._persist()
        return self.inner.flush()

    def quota(self) -> dict[str, int]:
        with self._lock:
            return {"limit": self.limit, "usage": self._usage}

    # --- changes ---
    def store(self, name: str, value: Value) -> None:
        delta = _size_of(value) - self._size(name)
        reserved = self._reserve(name, delta)
        try:
            self.inner.store(name, value)
        except BaseException:
            self._unreserve(reserved)
            raise
        self._count(delta, reserved)

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        # it succeeds only where no item was, so it adds the whole value: no look-up of a size
        delta = _size_of(value)
        reserved = self._reserve(name, delta)
        try:
            self.inner.store_new(name, value)
        except BaseException:  # ObjectAlreadyExists included: nothing was stored
            self._unreserve(reserved)
            raise
        self._count(delta, reserved)

    def delete(self, name: str) -> None:
        if name.endswith(TMP_SUFFIX):
            # a stale temp (remove_stale_temps): never counted, so nothing to free
            return self.inner.delete(name)
        size = self._size(name)
        self.inner.delete(name)
        self._count(-size)

    def move(self, curr_name: str, new_name: str) -> None:
        replaced = 0 if curr_name == new_name else self._size(new_name)
        self.inner.move(curr_name, new_name)
        if replaced:
            self._count(-replaced)


def _check_limit(name: str, delta: int, usage: int, limit: int) -> None:
    """Raise QuotaExceeded if a store of *name* adding *delta* bytes to *usage* passes *limit*."""
    wanted = usage + delta
    if delta > 0 and wanted > limit:
        raise QuotaExceeded(
            f"quota exceeded: storing {name!r} needs {delta} more bytes; "
            f"usage {usage} + {delta} = {wanted} > limit {limit}"
        )


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    return [MiddlewareSpec("quota", QuotaMiddleware, "a limit on the bytes a store holds (usage kept in quota.hid)")]
