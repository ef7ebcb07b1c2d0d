"""Requests on one sftp session that several operations share, and what their failures mean.

Only ``SSH_FX_NO_SUCH_FILE`` means that something is missing.  ``SSH_FX_FAILURE`` is the
server's generic "it did not work" (an I/O error, a full disk, no file descriptors left, a
directory where a file was expected): it is never taken for a missing item, only a stat that
shows what is there may turn it into one.
"""

from borgstore.backends.errors import BackendError, ObjectNotFound, PermissionDenied
from borgstore.backends.toolkit import temp_name

from . import _protocol as p

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

    def path_of(self, name: str) -> str:
        return f"{self.path}/{name}" if name else self.path

    def error(self, exc: p.StatusError, what: str, name: str, missing: str | None = None) -> BackendError:
        """The error for request *what* on *name* that the server answered with *exc*.

        *missing*: the ObjectNotFound message for ``SSH_FX_NO_SUCH_FILE`` (default: the name)."""
        if exc.code == p.NO_SUCH_FILE:
            return ObjectNotFound(missing or name)
        return self.failure(exc, what, name)

    def failure(self, exc: p.StatusError, what: str, name: str) -> BackendError:
        """Like error(), for requests where nothing missing is expected (ObjectNotFound would
        mislead): PermissionDenied or a BackendError with the server's message."""
        where = f"{what} {name!r} ({self.host}:{self.path_of(name)})"
        if exc.code == p.PERMISSION_DENIED:
            return PermissionDenied(f"{where}: the sftp server denied access: {exc.message}")
        return BackendError(f"{where} failed: {exc}")

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


def stat(session: p.Session, path: str) -> p.Attributes | None:
    """The attributes of *path*, None if nothing is there (other failures raise StatusError)."""
    try:
        return p.Reader(session.request(p.STAT, p.string(path), expect=p.ATTRS)).attrs()
    except p.StatusError as exc:
        if exc.code == p.NO_SUCH_FILE:
            return None
        raise


def mkdirs(session: p.Session, path: str):
    """Create directory *path* and its missing parents (existing ones are fine)."""
    missing = []
    while True:
        try:
            session.request(p.MKDIR, p.string(path), p.attrs_request())
            break
        except p.StatusError as exc:
            if exc.code == p.NO_SUCH_FILE and "/" in path.strip("/"):
                missing.append(path)
                path = path.rsplit("/", 1)[0] or "/"
                continue
            attrs = stat(session, path)
            if attrs is not None and attrs.is_dir:
                break
            raise
    for path in reversed(missing):
        try:
            session.request(p.MKDIR, p.string(path), p.attrs_request())
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
    pending = []
    try:
        while True:
            if not pending:
                pending = [session.send(p.READDIR, h), session.send(p.READDIR, h)]
            kind, body = session.wait(pending.pop(0))
            if kind == p.STATUS:
                try:
                    session.check(kind, body)
                except p.StatusError as exc:
                    if exc.code != p.EOF:
                        raise
                break
            session.check(kind, body, expect=p.NAME)
            reader = p.Reader(body)
            for _ in range(reader.u32()):
                filename = reader.text()
                reader.bytes()  # the ls -l style long name
                attrs = reader.attrs()
                if filename not in (".", ".."):
                    entries.append((filename, attrs))
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


def rename(session: p.Session, source: str, target: str, attempt=None):
    """Rename *source* to *target*, replacing it; *attempt* records a set-aside temp file."""
    if "posix-rename@openssh.com" in session.extensions:
        session.request(p.EXTENDED, p.string("posix-rename@openssh.com"), p.string(source), p.string(target))
        return
    # SFTP v3 RENAME refuses to replace an existing target: move the old one out of the way
    # first, so that at every moment one complete value is reachable (under a name or aside)
    try:
        session.request(p.RENAME, p.string(source), p.string(target))
        return
    except p.StatusError as exc:
        if exc.code == p.NO_SUCH_FILE:
            raise
    aside = temp_name(target)
    if attempt is not None:
        attempt.temp_names.append(aside)  # removed after a reconnect if the connection dies now
    session.request(p.RENAME, p.string(target), p.string(aside))
    try:
        session.request(p.RENAME, p.string(source), p.string(target))
    except p.StatusError:
        session.request(p.RENAME, p.string(aside), p.string(target))
        raise
    remove_quietly(session, aside)


def remove_tree(session: p.Session, path: str):
    """Remove directory *path* and everything below it."""
    entries = listdir(session, path)
    files = [f"{path}/{name}" for name, attrs in entries if not attrs.is_dir]
    for batch in range(0, len(files), MAX_BATCH):
        ids = [session.send(p.REMOVE, p.string(f)) for f in files[batch : batch + MAX_BATCH]]
        failure = collect(session, ids)
        if failure is not None and failure.code != p.NO_SUCH_FILE:
            raise failure
    for name, attrs in entries:
        if attrs.is_dir:
            remove_tree(session, f"{path}/{name}")
    session.request(p.RMDIR, p.string(path))
