"""Running an operation on a pooled session, and running it again after the connection broke.

An operation that is safe to repeat is retried on a new connection after a network failure,
within a bounded number of tries and time (docs/sftp.md says why each operation is safe to
repeat).  Host key and authentication failures are never retried: they are not connection
errors.  Temp files that a broken try left behind are removed after the next connect.
"""

import threading
import time

from borgstore.backends.errors import BackendConnectionError, BackendError

from . import _protocol as p
from ._pool import Pool


class Attempt:
    """What one try of an operation leaves behind if its connection breaks."""

    __slots__ = ("temp_names",)

    def __init__(self):
        self.temp_names = []


class _Broken(Exception):
    """One try failed for a reason a new connection may cure (its cause says which)."""


class Runner:
    """Runs operation(session, attempt) with a pooled session, healing the connection."""

    def __init__(self, pool: Pool, *, retries: int, retry_time: float):
        self.pool = pool
        self.retries = retries
        self.retry_time = retry_time
        self._orphans = set()  # temp paths a broken connection left behind
        self._lock = threading.Lock()

    def run(self, operation, *, what: str):
        """Run *operation*; every operation given here must be safe to repeat after its
        connection broke at any point.  Out of tries or time: BackendConnectionError."""
        deadline = time.monotonic() + self.retry_time
        delay = 0.5
        tries = 0
        while True:
            tries += 1
            try:
                return self._try(operation, what)
            except _Broken as broken:
                last_error = broken.__cause__
            if tries >= self.retries or time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise BackendConnectionError(
            f"{what}: cannot reach the sftp server {self.pool.host} ({tries} tries): {last_error}"
        ) from last_error

    def _try(self, operation, what: str):
        connection = None
        try:
            connection = self.pool.connect()
            session = connection.acquire()
        except (p.ConnectionLost, BackendConnectionError) as exc:
            if connection is not None:
                self.pool.drop(connection)
            raise _Broken() from exc
        attempt = Attempt()
        try:
            if self._orphans:
                self._remove_orphans(session)
            result = operation(session, attempt)
        except p.ConnectionLost as exc:
            session.close()
            connection.release(session)
            self.pool.drop(connection)
            self._keep_orphans(attempt.temp_names)
            raise _Broken() from exc
        except BaseException as exc:
            # Ctrl-C or an error mid-operation may leave replies in flight: never reuse it
            if session.replies or session.discard or not isinstance(exc, Exception):
                session.close()
                self._keep_orphans(attempt.temp_names)
            connection.release(session)
            if isinstance(exc, p.StatusError):
                raise BackendError(f"{what} on {self.pool.host} failed: {exc}") from exc
            raise
        connection.release(session)
        return result

    def _keep_orphans(self, paths):
        with self._lock:
            self._orphans.update(paths)

    def _remove_orphans(self, session: p.Session):
        with self._lock:
            orphans, self._orphans = self._orphans, set()
        try:
            ids = [session.send(p.REMOVE, p.string(path)) for path in orphans]
            for request_id in ids:
                try:
                    session.result(request_id)
                except p.StatusError:
                    pass  # already gone, or the write never created it
        except BaseException:
            self._keep_orphans(orphans)
            raise
