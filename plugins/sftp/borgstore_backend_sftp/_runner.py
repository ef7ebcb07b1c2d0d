"""Running one try of an operation on a pooled session, and what a broken connection leaves.

There is no retry here: retrying is the ``retry`` middleware's job (the sftp backend declares
``transient_errors``, so a Store's default chain has it).  What stays with the backend is what
only the backend can do: a broken connection is dropped, so the next call connects anew, and the
temp files that a broken try left behind are removed once a session is available again.

A lost connection raises BackendConnectionError (BackendTimeout when the server stopped
answering) whose ``maybe_applied`` says whether the request that changes the store had been
sent: an operation sends it through ``_requests.change()``, which marks the attempt once it left.
"""

import threading

from borgstore.backends.errors import BackendError

from . import _protocol as p
from ._errors import connection_error, status_error
from ._pool import Pool


class Attempt:
    """What one try of an operation did: temp files it may leave behind if its connection
    breaks, and whether its change went out."""

    __slots__ = ("sent", "temp_names")

    def __init__(self):
        self.temp_names = []
        self.sent = False

    def mark_sent(self):
        """The request that changes the store has left: from now on a lost connection leaves
        the outcome unknown (maybe_applied)."""
        self.sent = True


class Runner:
    """Runs operation(session, attempt) once with a pooled session."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self._orphans: set[str] = set()  # temp paths a broken connection left behind
        self._lock = threading.Lock()

    def run(self, operation, *, what: str):
        """Run *operation* on a session; a lost connection raises the error connection_error()
        gives, a status that escaped the operation the one of its SFTP status."""
        connection = None
        try:
            connection = self.pool.connect()
            session = connection.acquire()
        except p.ConnectionLost as exc:
            if connection is not None:
                self.pool.drop(connection)
            raise connection_error(f"{what}: no sftp session with {self.pool.host}", exc) from exc
        attempt = Attempt()
        try:
            if self._orphans:
                self._remove_orphans(session)
            result = operation(session, attempt)
        except p.ConnectionLost as exc:
            # the connection first: closing it unblocks, and a frozen server's socket could
            # block the channel's own close message
            self.pool.drop(connection)
            session.close()
            connection.release(session)
            self._keep_orphans(attempt.temp_names)
            message = f"{what}: the connection to {self.pool.host} was lost"
            raise connection_error(message, exc, maybe_applied=attempt.sent) from exc
        except BaseException as exc:
            # Ctrl-C or an error mid-operation may leave replies in flight: never reuse it
            if session.replies or session.discard or not isinstance(exc, Exception):
                session.close()
                self._keep_orphans(attempt.temp_names)
            connection.release(session)
            if isinstance(exc, p.StatusError):
                raise status_error(exc, f"{what} on {self.pool.host}", maybe_applied=attempt.sent) from exc
            if isinstance(exc, BackendError) and exc.temporary and attempt.sent:
                exc.maybe_applied = True  # a connection status the server gave after our change went out
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
