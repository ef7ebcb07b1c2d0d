"""Requests on one sftp session that several operations share, and what their failures mean.

Statuses map onto errors through the table in _errors; a ``SSH_FX_FAILURE`` is never taken for a
missing item, only a stat that shows what is there may turn it into one.
"""

import threading
from collections import deque

from borgstore.backends.errors import BackendError, ObjectNotFound
from borgstore.backends.toolkit import temp_name
from borgstore.constants import TMP_SUFFIX

from . import _protocol as p
from ._errors import status_error

# requests in flight per transfer: enough to keep a fast link busy, bounded so that a huge value
# does not queue megabytes of replies
MAX_IN_FLIGHT = 64
# small requests (remove, open for fsync) sent before their replies are read
MAX_BATCH = 256


class Root:
    """The store's directory on the server: maps backend names to server paths, and a failed
    request to the error that names both."""

    def __init__(self, host: str, path: str):
        self.host = host
        self.path = path
        # directories below the store's own that a request showed to exist: a store into one of
        # them sends no MKDIR (see _writes._create).  Shared by the sessions of all threads, and
        # only a hint: a directory removed since (by another client) costs a second burst, never
        # a failure.  Invariant: a known directory's parents are known too.
        self._known: set[str] = set()
        self._known_lock = threading.Lock()

    def path_of(self, name: str) -> str:
        return f"{self.path}/{name}" if name else self.path

    def dirs_to(self, path: str, *, all_levels: bool = False) -> list:
        """The directories from below the store's own down to *path* (a directory in the store),
        outermost first: those not known to exist, or with *all_levels* every one of them.  The
        store's own directory is never among them: an operation inside the store must not
        create it (or anything above it) again after it was destroyed."""
        dirs = []
        with self._known_lock:
            while path.startswith(self.path + "/") and (all_levels or path not in self._known):
                dirs.append(path)
                path = path.rsplit("/", 1)[0]
        dirs.reverse()
        return dirs

    def learn_dir(self, path: str):
        """Directory *path* (and so every parent of it) exists: a request just used it."""
        with self._known_lock:
            while path.startswith(self.path + "/") and path not in self._known:
                self._known.add(path)
                path = path.rsplit("/", 1)[0]

    def forget_dirs(self, path: str | None = None):
        """Directory *path* and everything below it may be gone (None: every directory)."""
        with self._known_lock:
            if path is None:
                self._known.clear()
            else:
                below = path + "/"
                self._known = {known for known in self._known if known != path and not known.startswith(below)}

    def error(self, exc: p.StatusError, what: str, name: str, missing: str | None = None) -> BackendError:
        """The error for request *what* on *name* that the server answered with *exc*.

        *missing*: the ObjectNotFound message for ``SSH_FX_NO_SUCH_FILE`` (default: the name)."""
        if exc.code == p.NO_SUCH_FILE:
            return ObjectNotFound(missing or name)
        return self.failure(exc, what, name)

    def failure(self, exc: p.StatusError, what: str, name: str) -> BackendError:
        """The error of the status table for request *what* on *name*, naming the path and the
        server's message; NO_SUCH_FILE too is a BackendError here: used where nothing missing is
        expected (a store's temp file vanished, say), so ObjectNotFound would mislead."""
        where = f"{what} {name!r} ({self.host}:{self.path_of(name)}) failed"
        if exc.code == p.NO_SUCH_FILE:
            return BackendError(f"{where}: {exc}")
        return status_error(exc, where)

    def item_error(self, session: p.Session, exc: p.StatusError, what: str, name: str) -> BackendError:
        """The error for *what* on item *name* failing with *exc*: a directory is not an item, so
        ObjectNotFound; anything else is the server's error (see error())."""
        if exc.code == p.FAILURE:
            # servers refuse to read or remove a directory with a generic failure: ask what is there
            try:
                attrs = stat(session, self.path_of(name))
            except p.StatusError:
                attrs = None
            if attrs is not None and attrs.is_dir:
                return ObjectNotFound(name)
        return self.error(exc, what, name)


def change(session: p.Session, attempt, kind: int, *parts, expect=None):
    """Send a request that changes the store and wait for its reply.  Once it has left (flush()
    returned; a send that fails delivers no complete request), *attempt* records that a lost
    connection leaves its outcome unknown."""
    request_id = session.send(kind, *parts)
    session.flush()
    if attempt is not None:
        attempt.mark_sent()
    return session.result(request_id, expect)


def stat(session: p.Session, path: str) -> p.Attributes | None:
    """The attributes of *path*, None if nothing is there (other failures raise StatusError)."""
    try:
        return p.Reader(session.request(p.STAT, p.string(path), expect=p.ATTRS)).attrs()
    except p.StatusError as exc:
        if exc.code == p.NO_SUCH_FILE:
            return None
        raise


def mkdirs(session: p.Session, path: str, attempt=None, *, top: str | None = None):
    """Create directory *path* and its missing parents (existing ones are fine); *attempt*: the
    directory is what the operation makes (see change()).  *top*: a directory that is never
    created, nor anything above it (the store's own, for operations inside the store: a store
    destroyed meanwhile gives NO_SUCH_FILE, it is not made again)."""
    missing = []
    while True:
        try:
            change(session, attempt, p.MKDIR, p.string(path), p.attrs_request())
            break
        except p.StatusError as exc:
            parent = path.rsplit("/", 1)[0] or "/"
            below_top = top is None or parent.startswith(top + "/")
            if exc.code == p.NO_SUCH_FILE and "/" in path.strip("/") and below_top:
                missing.append(path)
                path = parent
                continue
            attrs = stat(session, path)
            if attrs is not None and attrs.is_dir:
                break
            raise
    for path in reversed(missing):
        try:
            change(session, attempt, p.MKDIR, p.string(path), p.attrs_request())
        except p.StatusError:
            attrs = stat(session, path)
            if attrs is None or not attrs.is_dir:
                raise


def listdir(session: p.Session, path: str) -> list:
    """[(name, attrs)] of directory *path*, unsorted, without '.' and '..'."""
    handle = p.Reader(session.request(p.OPENDIR, p.string(path), expect=p.HANDLE)).bytes()
    h = p.string(handle)
    entries = []
    # two READDIRs in flight: a small directory's entries and its end arrive in one round trip
    pending: list[int] = []
    try:
        while True:
            if not pending:
                pending = [session.send(p.READDIR, h), session.send(p.READDIR, h)]
            kind, body = session.wait(pending.pop(0))
            if _end_of_directory(session, kind, body):
                break
            entries.extend(_entries(session, kind, body))
    finally:
        if not session.broken:
            for request_id in pending:
                session.forget(request_id)
            session.forget(session.send(p.CLOSE, h))
    return entries


def collect(session: p.Session, ids) -> p.StatusError | None:
    """Wait for all *ids*; return the first error status (after draining them all)."""
    failure = None
    for request_id in ids:
        try:
            session.result(request_id)
        except p.StatusError as exc:
            failure = failure or exc
    return failure


def remove_quietly(session: p.Session, path: str):
    try:
        session.request(p.REMOVE, p.string(path))
    except p.StatusError:
        pass


def rename(session: p.Session, source: str, target: str, attempt):
    """Rename *source* to *target*, replacing it; *attempt* records a set-aside temp file and
    that the change went out (see change())."""
    if "posix-rename@openssh.com" in session.extensions:
        change(session, attempt, p.EXTENDED, p.string("posix-rename@openssh.com"), p.string(source), p.string(target))
        return
    # SFTP v3 RENAME refuses to replace an existing target: move the old one out of the way
    # first, so that at every moment one complete value is reachable (under a name or aside)
    try:
        change(session, attempt, p.RENAME, p.string(source), p.string(target))
        return
    except p.StatusError as exc:
        if exc.code == p.NO_SUCH_FILE:
            raise
    aside = temp_name(target)
    attempt.temp_names.append(aside)  # removed after a reconnect if the connection dies now
    change(session, attempt, p.RENAME, p.string(target), p.string(aside))
    try:
        change(session, attempt, p.RENAME, p.string(source), p.string(target))
    except p.StatusError:
        session.request(p.RENAME, p.string(aside), p.string(target))
        raise
    remove_quietly(session, aside)


def remove_tree(session: p.Session, path: str, attempt=None):
    """Remove directory *path* and everything below it (*attempt*: see change())."""
    entries = listdir(session, path)
    files = [f"{path}/{name}" for name, attrs in entries if not attrs.is_dir]
    for batch in range(0, len(files), MAX_BATCH):
        ids = [session.send(p.REMOVE, p.string(f)) for f in files[batch : batch + MAX_BATCH]]
        session.flush()
        if attempt is not None:
            attempt.mark_sent()
        failure = collect(session, ids)
        if failure is not None and failure.code != p.NO_SUCH_FILE:
            raise failure
    for name, attrs in entries:
        if attrs.is_dir:
            remove_tree(session, f"{path}/{name}", attempt)
    change(session, attempt, p.RMDIR, p.string(path))


def listdirs(session: p.Session, paths) -> dict:
    """{path: [(name, attrs)] without '.' and '..', or None where no directory is} for every
    directory of *paths*: MAX_BATCH at a time, all OPENDIRs of a batch in flight, then two
    READDIRs per directory (a small one's entries and its end in one round trip)."""
    paths = list(paths)
    result: dict[str, list | None] = {}
    for batch in range(0, len(paths), MAX_BATCH):
        opens = [(path, session.send(p.OPENDIR, p.string(path))) for path in paths[batch : batch + MAX_BATCH]]
        handles = {}
        failure = None
        for path, request_id in opens:
            try:
                handles[path] = p.string(p.Reader(session.result(request_id, expect=p.HANDLE)).bytes())
            except p.StatusError as exc:
                if exc.code == p.NO_SUCH_FILE:
                    result[path] = None  # gone meanwhile, or an item (OpenSSH: NO_SUCH_FILE too)
                else:
                    failure = failure or exc
        try:
            if failure is None:
                _read_directories(session, handles, result)
        finally:
            if not session.broken:
                for handle in handles.values():
                    session.forget(session.send(p.CLOSE, handle))
        if failure is not None:
            raise failure
    return result


def _read_directories(session: p.Session, handles: dict, result: dict):
    """Read every open directory of *handles* ({path: handle}) to its end into *result*."""
    pending: deque[tuple[str, int]] = deque()  # (path, request id) in send order
    in_flight = {}
    for path, handle in handles.items():
        result[path] = []
        pending += [(path, session.send(p.READDIR, handle)), (path, session.send(p.READDIR, handle))]
        in_flight[path] = 2
    done = set()
    try:
        while pending:
            path, request_id = pending.popleft()
            kind, body = session.wait(request_id)
            in_flight[path] -= 1
            if path in done:
                continue  # the second READDIR after the end
            if _end_of_directory(session, kind, body):
                done.add(path)
                continue
            result[path].extend(_entries(session, kind, body))
            if not in_flight[path]:  # a large directory: two more, as at the start
                pending += [(path, session.send(p.READDIR, handles[path])) for _ in range(2)]
                in_flight[path] += 2
    finally:
        if not session.broken:
            for _, request_id in pending:
                session.forget(request_id)


def find_temps(session: p.Session, top: str) -> list:
    """[(name relative to *top*, attrs)] of every ``.tmp`` item below directory *top*, at any
    depth, one level of directories at a time (see listdirs); a missing *top*: []."""
    found = []
    level = [("", top)]  # (name prefix relative to top, path)
    while level:
        listing = listdirs(session, [path for _, path in level])
        deeper = []
        for prefix, path in level:
            for filename, attrs in listing.get(path) or ():
                if attrs.is_dir:
                    deeper.append((f"{prefix}{filename}/", f"{path}/{filename}"))
                elif filename.endswith(TMP_SUFFIX):
                    found.append((f"{prefix}{filename}", attrs))
        level = deeper
    return found


def _end_of_directory(session, kind: int, body: bytes) -> bool:
    """True if a READDIR reply says the directory has no more entries; other statuses raise."""
    if kind != p.STATUS:
        return False
    try:
        session.check(kind, body)
    except p.StatusError as exc:
        if exc.code != p.EOF:
            raise
    return True


def _entries(session, kind: int, body: bytes) -> list:
    """The ``(filename, attrs)`` of a READDIR reply, without ``.`` and ``..``."""
    session.check(kind, body, expect=p.NAME)
    reader = p.Reader(body)
    entries = []
    for _ in range(reader.u32()):
        filename = reader.text()
        reader.bytes()  # the ls -l style long name
        attrs = reader.attrs()
        if filename not in (".", ".."):
            entries.append((filename, attrs))
    return entries
