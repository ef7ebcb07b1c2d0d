"""Writing: an atomic store, and the fsyncs that the ``durability`` option asks for.

A store writes a new temp file (created exclusively, named by the toolkit) with every write
request in flight at once, then renames it over the target: a reader sees the old value or the
new one, never a part.  Durability "always" fsyncs each temp file before its rename; "close"
remembers what was stored and fsyncs it all in batches at flush() or close().

store_new writes its temp file the same way and renames it with the plain SFTP v3 RENAME, which
refuses an existing target (OpenSSH makes it a hard link, which the kernel refuses atomically if
the name exists): of writers racing on one new name exactly one succeeds.
"""

import threading

from borgstore.backends.errors import BackendError, ObjectAlreadyExists
from borgstore.backends.toolkit import temp_name

from . import _protocol as p
from ._requests import MAX_BATCH, MAX_IN_FLIGHT, Root, change, collect, remove_quietly, rename, stat
from ._runner import Attempt, Runner

DURABILITY_LEVELS = ("none", "close", "always")

_FSYNC = "fsync@openssh.com"
_CREATE_FLAGS = p.FLAG_WRITE | p.FLAG_CREATE | p.FLAG_EXCLUSIVE


def store(session: p.Session, attempt: Attempt, root: Root, name: str, data: memoryview, *, fsync: bool):
    """Store *data* under *name* through a temp file; *fsync*: make it durable before the rename.

    Safe to repeat as a whole: a new temp name each time, and the rename puts the same value in
    place however often it is done."""
    path = root.path_of(name)
    temp = _write_temp(session, attempt, root, "store", name, data, fsync=fsync)
    try:
        rename(session, temp, path, attempt)
    except p.StatusError as exc:
        remove_quietly(session, temp)
        attempt.temp_names.remove(temp)
        raise root.failure(exc, "store", name) from None
    attempt.temp_names.remove(temp)


def store_new(session: p.Session, attempt: Attempt, root: Root, name: str, data: memoryview, *, fsync: bool):
    """Store *data* under *name* only if nothing is there: a temp file renamed with the plain
    RENAME, which refuses an existing target; then ObjectAlreadyExists and the temp is removed."""
    path = root.path_of(name)
    temp = _write_temp(session, attempt, root, "store_new", name, data, fsync=fsync)
    try:
        for _ in range(2):  # a target deleted between the refusal and our look: once more
            try:
                change(session, attempt, p.RENAME, p.string(temp), p.string(path))
                attempt.temp_names.remove(temp)
                return
            except p.StatusError as exc:
                failure = exc
            # OpenSSH answers FAILURE for an existing target and for much else: look at it
            attrs = stat(session, path)
            if attrs is not None and not attrs.is_dir:
                raise ObjectAlreadyExists(f"store_new {name!r}: an item of that name exists") from None
            if attrs is not None or failure.code != p.FAILURE:
                break
        raise root.failure(failure, "store_new", name) from None
    except BaseException:
        if not session.broken:
            remove_quietly(session, temp)
            attempt.temp_names.remove(temp)
        raise


def _write_temp(session: p.Session, attempt: Attempt, root: Root, what: str, name: str, data, *, fsync: bool) -> str:
    """Write *data* to a new temp file next to item *name* (recorded in *attempt*); return its
    path.  A failure removes it and raises the error for *what* on *name*."""
    temp = temp_name(root.path_of(name))
    attempt.temp_names.append(temp)
    try:
        handle, written = _create(session, root, temp, data, fsync=fsync)
    except p.StatusError as exc:
        attempt.temp_names.remove(temp)
        raise root.failure(exc, what, name) from None
    failure = collect(session, written) if written is not None else _write(session, handle, data, fsync=fsync)
    if failure is not None:
        remove_quietly(session, temp)
        attempt.temp_names.remove(temp)
        raise root.failure(failure, what, name)
    return temp


def _create(session: p.Session, root: Root, temp: str, data, *, fsync: bool) -> tuple[bytes, list[int] | None]:
    """Create *temp* exclusively, and its missing parent directories; return its handle, and
    the ids of the write, fsync and close of *data* if they went in the OPEN's batch (None: the
    caller writes).

    The MKDIRs of the parents not known to exist go in the same batch as the OPEN, so the first
    store into a new directory waits no longer than any other (the server handles requests in
    order).  An MKDIR's own status does not matter: "failure" usually means the directory
    exists, and if it really could not be made the OPEN says why.  An OPEN that finds no
    directory (one removed since we learnt of it, or between our MKDIR and the OPEN) is tried
    again with the MKDIR of every level, at most twice; the store's own directory is never made
    (see Root.dirs_to).  A value that fits one WRITE goes in the batch too, on the handle the
    session guesses the OPEN will get (Session.guess_handle): the rename still waits for all of
    them, so a store costs two round trips instead of three."""
    parent = temp.rsplit("/", 1)[0]
    dirs = root.dirs_to(parent)
    tries = 1
    while True:
        guess = session.guess_handle() if len(data) <= session.max_write else None
        ids = [session.send(p.MKDIR, p.string(path), p.attrs_request()) for path in dirs]
        open_id = session.send(p.OPEN, p.string(temp), p.u32(_CREATE_FLAGS), p.attrs_request())
        written = None if guess is None else _write_small(session, guess, data, fsync=fsync)
        collect(session, ids)
        try:
            handle = p.Reader(session.result(open_id, expect=p.HANDLE)).bytes()
            break
        except p.StatusError as exc:
            if guess is not None:
                session.guessed(guess, None)
                collect(session, written)  # failed: no file has that handle
            if exc.code != p.NO_SUCH_FILE or tries == 3:
                raise
        tries += 1
        dirs = root.dirs_to(parent, all_levels=True)
    root.learn_dir(parent)
    if guess is not None and not session.guessed(guess, handle):
        if collect(session, written) is None:  # they named no open file, so they must fail
            session.broken = True
            raise p.ConnectionLost(f"the server accepted writes on a handle it had not given ({guess.hex()})")
        written = None
    return handle, written


def _write_small(session: p.Session, handle: bytes, data, *, fsync: bool) -> list[int]:
    """Send the one WRITE of *data*, the fsync if asked and the CLOSE; their ids."""
    return [session.send_write(handle, 0, data), *_sync_and_close(session, handle, fsync=fsync)]


def _sync_and_close(session: p.Session, handle: bytes, *, fsync: bool) -> list[int]:
    """Send the fsync of *handle* if asked, then its CLOSE; their ids."""
    h = p.string(handle)
    ids = [session.send(p.EXTENDED, p.string(_FSYNC), h)] if fsync else []
    ids.append(session.send(p.CLOSE, h))
    return ids


def _write(session: p.Session, handle: bytes, data: memoryview, *, fsync: bool) -> p.StatusError | None:
    """Write *data* to the open *handle*, fsync it if asked, close it; return the first failure."""
    # all writes in flight at once, then the close: one round trip for the data
    ids = []
    step = session.max_write
    offset = 0
    failure = None
    while True:
        ids.append(session.send_write(handle, offset, data[offset : offset + step]))
        offset += step
        if offset >= len(data):
            break
        if len(ids) >= MAX_IN_FLIGHT:
            failure = failure or collect(session, ids[: MAX_IN_FLIGHT // 2])
            del ids[: MAX_IN_FLIGHT // 2]
    ids += _sync_and_close(session, handle, fsync=fsync)
    return failure or collect(session, ids)


class Durability:
    """The ``durability`` level, and the items stored since the last flush (level "close")."""

    def __init__(self, level: str):
        if level not in DURABILITY_LEVELS:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_LEVELS)}, not {level!r}")
        self.level = level
        self.unflushed: set[str] = set()
        self._lock = threading.Lock()

    @property
    def fsync_each(self) -> bool:
        return self.level == "always"

    @property
    def needs_fsync(self) -> bool:
        """True if the server must offer fsync@openssh.com."""
        return self.level != "none"

    def stored(self, name: str):
        if self.level == "close":
            with self._lock:
                self.unflushed.add(name)

    def moved(self, curr_name: str, new_name: str):
        if self.level == "close":
            with self._lock:
                if curr_name in self.unflushed:
                    # the data still needs its fsync, now under the new name
                    self.unflushed.discard(curr_name)
                    self.unflushed.add(new_name)

    def flush(self, runner: Runner, root: Root):
        """fsync every item stored since the last flush (level "close"); on failure they stay due."""
        if self.level != "close":
            return
        with self._lock:
            names, self.unflushed = self.unflushed, set()

        def fsync_all(session, attempt):
            # in batches (each open handle is a file descriptor on the server)
            ordered = sorted(names)
            for batch in range(0, len(ordered), MAX_BATCH):
                _fsync_batch(session, root, ordered[batch : batch + MAX_BATCH])

        try:
            runner.run(fsync_all, what="flush")
        except BaseException:
            with self._lock:
                self.unflushed |= names
            raise


def _fsync_batch(session: p.Session, root: Root, names):
    """Open, fsync and close every item of *names*, all in flight at once."""
    opens = [
        (name, session.send(p.OPEN, p.string(root.path_of(name)), p.u32(p.FLAG_READ), p.attrs_request()))
        for name in names
    ]
    syncs = []
    failure = None
    for name, request_id in opens:
        try:
            handle = p.Reader(session.result(request_id, expect=p.HANDLE)).bytes()
        except p.StatusError as exc:
            if exc.code != p.NO_SUCH_FILE:  # gone: deleted or moved since, nothing left to sync
                failure = failure or root.failure(exc, "flush", name)
            continue
        syncs += _sync_and_close(session, handle, fsync=True)
    status = collect(session, syncs)
    if failure is not None:
        raise failure
    if status is not None:
        raise BackendError(f"flush: fsync failed on {root.host}: {status}")
