"""The two read engines: load (one item, one range) and gather (many ranges of many items).

Both keep up to MAX_IN_FLIGHT read requests in flight, so that a value costs one round trip
after its open, whatever its size (docs/sftp.md counts them).
"""

from borgstore.backends._base import read_range_error
from borgstore.backends.errors import BackendError, ObjectNotFound

from . import _protocol as p
from ._requests import MAX_BATCH, MAX_IN_FLIGHT, Root


def load(session: p.Session, root: Root, name: str, size, offset: int) -> bytes:
    """*size* bytes (None: to the end) of item *name* from *offset* (negative: from the end).

    Where the session can guess the handle the OPEN will get (Session.guess_handle), the first
    requests on it go in the OPEN's batch: a small item costs one round trip instead of two."""
    path = root.path_of(name)
    guess = session.guess_handle()
    open_id = session.send(p.OPEN, p.string(path), p.u32(p.FLAG_READ), p.attrs_request())
    early = None if guess is None else _first_requests(session, p.string(guess), size, offset)
    try:
        handle = p.Reader(session.result(open_id, expect=p.HANDLE)).bytes()
    except p.StatusError as exc:
        if guess is not None:
            session.guessed(guess, None)
            _drain(session, early)
        raise root.item_error(session, exc, "load", name) from None
    if guess is not None and not session.guessed(guess, handle):
        _drain(session, early)  # requests on a handle no file has: they failed
        early = None
    h = p.string(handle)
    try:
        return _load_open(session, root, h, name, size, offset, early)
    except p.StatusError as exc:
        # reading a directory opens fine on some servers and fails at the first read
        raise root.item_error(session, exc, "load", name) from None
    finally:
        if not session.broken:
            session.forget(session.send(p.CLOSE, h))


def _first_requests(session: p.Session, h: bytes, size, offset: int) -> tuple:
    """Send what a load asks of an open item first: (FSTAT id or None, the first read or None),
    a read as (offset, length, request id).  The size is asked for where the end is unknown."""
    if offset >= 0 and size is not None:
        if size <= 0:
            return None, None
        length = min(size, session.max_read)
        return None, (offset, length, session.send(p.READ, h, p.u64(offset), p.u32(length)))
    stat_id = session.send(p.FSTAT, h)
    if offset < 0:
        return stat_id, None
    return stat_id, (offset, session.max_read, session.send(p.READ, h, p.u64(offset), p.u32(session.max_read)))


def _drain(session: p.Session, requests) -> None:
    """Wait for the replies of *requests* and drop them.  They were sent with the OPEN, so
    they come right after its reply (no round trip), and a session left with replies in flight
    after an error would not be reused."""
    for request_id in (requests[0], requests[1] and requests[1][2]):
        if request_id is not None:
            session.wait(request_id)


def _load_open(session: p.Session, root: Root, h: bytes, name: str, size, offset: int, early) -> bytes:
    stat_id, first = early if early is not None else _first_requests(session, h, size, offset)
    if stat_id is None:  # a range from a known offset
        return _read_range(session, root, h, offset, offset + size, first)
    attrs = p.Reader(session.result(stat_id, expect=p.ATTRS)).attrs()
    if attrs.is_dir:
        if first is not None:
            session.forget(first[2])
        raise ObjectNotFound(name)
    file_size = attrs.size
    if file_size is None:
        raise BackendError(f"load {name!r}: the server did not report the size")
    if offset < 0:
        offset = max(file_size + offset, 0)
    end = file_size if size is None else min(file_size, offset + size)
    return _read_range(session, root, h, offset, end, first)


def _read_range(session: p.Session, root: Root, h: bytes, start: int, end: int, first) -> bytes:
    """Read [start, end) with up to MAX_IN_FLIGHT requests in flight; a short file gives less.

    *first*: (offset, length, request id) of a read of *start* already sent, or None."""
    if end <= start:
        if first is not None:
            session.forget(first[2])
        return b""
    pieces, eof_at = _fetch(session, h, start, end, first)
    pieces.sort(key=lambda piece: piece[0])
    stop = min(eof_at, end)
    parts = []
    expected = start
    for off, data in pieces:
        if off >= stop:
            break
        if off != expected:
            raise BackendError(f"reading from {root.host}: the server skipped bytes at offset {expected}")
        data = data[: stop - off]
        parts.append(data)
        expected = off + len(data)
    return b"".join(parts)


def _fetch(session: p.Session, h: bytes, start: int, end: int, first):
    """Return ([(offset, data)] of every reply, in any order, and where the file ended)."""
    pieces: list[tuple[int, bytes]] = []  # joined once at the end (one copy)
    pending = [first] if first is not None else []  # (offset, length, request id) in send order
    next_offset = start + (first[1] if first else 0)
    eof_at = end
    while True:
        while next_offset < eof_at and len(pending) < MAX_IN_FLIGHT:
            length = min(session.max_read, eof_at - next_offset)
            pending.append((next_offset, length, session.send(p.READ, h, p.u64(next_offset), p.u32(length))))
            next_offset += length
        if not pending:
            return pieces, eof_at
        off, length, request_id = pending.pop(0)
        kind, body = session.wait(request_id)
        if kind == p.STATUS:
            try:
                session.check(kind, body)
            except p.StatusError as exc:
                if exc.code != p.EOF:
                    for _, _, other in pending:
                        session.forget(other)
                    raise
            eof_at = min(eof_at, off)
            continue
        if kind != p.DATA:
            raise p.ConnectionLost(f"unexpected reply type {kind} to a read")
        reader = p.Reader(body)
        n = min(reader.u32(), end - off)
        if n == 0:  # no data and no EOF status: take it as the end rather than ask forever
            eof_at = min(eof_at, off)
            continue
        pieces.append((off, body[reader.pos : reader.pos + n]))
        if n < length and off + n < eof_at:
            # a short read that is not the end of the file: ask for the rest
            rest = (off + n, length - n)
            pending.insert(0, (*rest, session.send(p.READ, h, p.u64(rest[0]), p.u32(rest[1]))))


class _ReadFailed(Exception):
    """A read of item *name* failed with *status* (not the end of the file)."""

    def __init__(self, name: str, status: p.StatusError):
        super().__init__(name, status)
        self.name = name
        self.status = status


def gather(session: p.Session, root: Root, sources) -> bytes:
    """The ranges (name, offset >= 0, size > 0) of *sources* concatenated, in 2 round trips for
    any number of them: all items opened in one batch, then every read in flight at once."""
    handles: dict[str, bytes] = {}
    try:
        _open_all(session, root, list(dict.fromkeys(name for name, _, _ in sources)), handles)
        ranges = [(handles[name], offset, size, name) for name, offset, size in sources]
        try:
            return _read_ranges(session, ranges)
        except _ReadFailed as failed:
            raise root.item_error(session, failed.status, "gather", failed.name) from None
    finally:
        if not session.broken:
            for h in handles.values():
                session.forget(session.send(p.CLOSE, h))


def _open_all(session: p.Session, root: Root, names, handles: dict):
    """Open every item of *names* for reading, MAX_BATCH requests at a time, into *handles*;
    the first that fails raises its error once all replies are in."""
    for batch in range(0, len(names), MAX_BATCH):
        opens = [
            (name, session.send(p.OPEN, p.string(root.path_of(name)), p.u32(p.FLAG_READ), p.attrs_request()))
            for name in names[batch : batch + MAX_BATCH]
        ]
        failed = None
        for name, request_id in opens:
            try:
                handles[name] = p.string(p.Reader(session.result(request_id, expect=p.HANDLE)).bytes())
            except p.StatusError as exc:
                failed = failed or (name, exc)
        if failed is not None:
            raise root.item_error(session, failed[1], "gather", failed[0])


def _read_ranges(session: p.Session, ranges) -> bytes:
    """Read every (handle, offset, size, name) range in full, pipelined; a short one raises
    ReadRangeError."""
    out = bytearray(sum(size for _, _, size, _ in ranges))
    chunks = []  # (handle, file offset, length, position in out, (name, range offset, range size))
    position = 0
    for h, offset, size, name in ranges:
        for start in range(0, size, session.max_read):
            length = min(session.max_read, size - start)
            chunks.append((h, offset + start, length, position + start, (name, offset, size)))
        position += size
    pending: list[tuple[tuple, int]] = []
    next_chunk = 0
    try:
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < MAX_IN_FLIGHT:
                h, off, length, pos, source = chunks[next_chunk]
                pending.append((chunks[next_chunk], session.send(p.READ, h, p.u64(off), p.u32(length))))
                next_chunk += 1
            (h, off, length, pos, source), request_id = pending.pop(0)
            count, data = _received(session, request_id, source, off, length)
            out[pos : pos + count] = data
            if count < length:
                # a short read need not be the end of the file: ask for the rest
                rest = (h, off + count, length - count, pos + count, source)
                pending.insert(0, (rest, session.send(p.READ, h, p.u64(rest[1]), p.u32(rest[2]))))
    finally:
        for _, request_id in pending:
            session.forget(request_id)
    return bytes(out)


def _received(session: p.Session, request_id: int, source, off: int, length: int):
    """(count, data) of the reply to a read of *length* bytes at *off* of range *source*;
    the end of the item before the range's end raises ReadRangeError."""
    name, range_offset, range_size = source
    kind, body = session.wait(request_id)
    if kind == p.STATUS:
        try:
            session.check(kind, body)
        except p.StatusError as exc:
            if exc.code != p.EOF:
                raise _ReadFailed(name, exc) from None
        raise read_range_error(name, range_offset, range_size, off - range_offset)
    if kind != p.DATA:
        raise p.ConnectionLost(f"unexpected reply type {kind} to a read")
    reader = p.Reader(body)
    n = min(reader.u32(), length)
    if n == 0:  # no data and no EOF status: the end, as far as we can tell
        raise read_range_error(name, range_offset, range_size, off - range_offset)
    return n, body[reader.pos : reader.pos + n]
