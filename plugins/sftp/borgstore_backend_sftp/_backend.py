"""The sftp backend: a store in a directory on an SSH server.

Round trips are what makes sftp slow, so every operation sends as many requests as it can before
waiting (docs/sftp.md lists the count per operation).  Connections heal: an operation that is safe
to repeat is retried on a new connection after a network failure, within a bounded number of tries
and time.  Host key and authentication failures are never retried.
"""

import dataclasses
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from urllib.parse import unquote

import paramiko

from borgstore.backends._base import BackendBase, Capabilities, ItemInfo, is_hidden_from_list
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)

from . import _connect
from . import _protocol as p

DURABILITY_LEVELS = ("none", "close", "always")

# requests in flight per transfer: enough to keep a fast link busy, bounded so that a huge value
# does not queue megabytes of replies
_MAX_IN_FLIGHT = 64
# sftp sessions per SSH connection: below OpenSSH's default MaxSessions of 10
_MAX_SESSIONS = 8
# small requests (remove, open for fsync) sent before their replies are read
_MAX_BATCH = 256

_URL = re.compile(
    r"^sftp://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/@\[\]]+)(?::(?P<port>\d*))?/(?P<path>.*)$",
    re.IGNORECASE,
)


def parse_url(url: str):
    """Return (user, host, port, path) of an sftp URL; path is absolute if it starts with '/'."""
    m = _URL.match(url)
    if not m:
        raise BackendURLInvalid(
            f"invalid sftp URL {url!r}: use sftp://[user@]host[:port]/relative/path "
            "or sftp://[user@]host[:port]//absolute/path"
        )
    user = unquote(m["user"]) if m["user"] else None
    host = unquote(m["host"].strip("[]"))
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 <= port <= 65535:
        raise BackendURLInvalid(f"invalid sftp URL {url!r}: port {port} is out of range")
    path = unquote(m["path"])
    if path not in ("/",):
        path = path.rstrip("/")
    if not path:
        raise BackendURLInvalid(f"invalid sftp URL {url!r}: the store path is missing")
    if "\0" in path:
        raise BackendURLInvalid(f"invalid sftp URL {url!r}: the path contains a NUL character")
    return user, host, port or None, path


class _Connection:
    """One authenticated SSH transport and a pool of SFTP sessions on it.

    At most _MAX_SESSIONS sessions are open at once (OpenSSH allows 10 per connection by
    default); a thread that finds them all busy waits for one."""

    def __init__(self, transport: paramiko.Transport, timeout: float):
        self.transport = transport
        self.timeout = timeout
        self.idle = []
        self.count = 0  # sessions open or being opened
        self.limit = _MAX_SESSIONS
        self.ready = threading.Condition(threading.Lock())
        self.dead = False

    def acquire(self) -> p.Session:
        while True:
            with self.ready:
                while True:
                    if self.dead:
                        raise p.ConnectionLost("the connection was closed")
                    if self.idle:
                        return self.idle.pop()
                    if self.count < self.limit:
                        self.count += 1
                        break
                    if not self.ready.wait(self.timeout):
                        raise p.ConnectionLost(f"no sftp session became free within {self.timeout} s")
            try:
                channel = self.transport.open_session(
                    window_size=8 << 20, max_packet_size=1 << 15, timeout=self.timeout
                )
                channel.invoke_subsystem("sftp")
                return p.Session(channel, self.timeout)
            except BaseException as exc:
                with self.ready:
                    self.count -= 1
                    # paramiko keeps one pending open failure per transport, so of several opens the
                    # server refuses at once, some see ChannelException and others only "Unable to
                    # open channel." or "Channel closed.": any SSHException on a live transport is a refusal
                    refused = isinstance(exc, paramiko.SSHException) and self.transport.is_active()
                    if refused and self.count > 0:
                        # the server allows fewer sessions (MaxSessions): share the ones we have
                        self.limit = self.count
                        continue
                    self.ready.notify()
                if isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
                    raise p.ConnectionLost(f"cannot open an sftp session: {exc}") from exc
                raise

    def release(self, session: p.Session):
        if not (session.broken or session.replies):
            with self.ready:
                if not self.dead:
                    self.idle.append(session)
                    self.ready.notify()
                    return
        session.close()
        with self.ready:
            self.count -= 1
            self.ready.notify()

    def close(self):
        with self.ready:
            self.dead = True
            idle, self.idle = self.idle, []
            self.ready.notify_all()
        for session in idle:
            session.close()
        self.transport.close()


class _Attempt:
    """What one try of an operation leaves behind if its connection breaks."""

    __slots__ = ("temp_names",)

    def __init__(self):
        self.temp_names = []


class SftpBackend(BackendBase):
    """A store in a directory on an sftp server; see the package README for URLs and options."""

    capabilities = Capabilities(
        needs_mkdir=True, atomic_store=True, thread_safe=True
    )

    def __init__(
        self,
        url: str,
        *,
        ssh_config: str | None = None,
        use_agent: bool = True,
        durability: str = "none",
        connect_timeout: float = 30.0,
        timeout: float = 120.0,
        keepalive: float = 30.0,
        retries: int = 5,
        retry_time: float = 60.0,
    ):
        self.url = url
        self.user, self.host, self.port, self.path = parse_url(url)
        if durability not in DURABILITY_LEVELS:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_LEVELS)}, not {durability!r}")
        for name, value in (("connect_timeout", connect_timeout), ("timeout", timeout), ("retry_time", retry_time)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not isinstance(keepalive, (int, float)) or keepalive < 0:
            raise ValueError(f"keepalive must be a number of seconds >= 0, not {keepalive!r}")
        if not isinstance(retries, int) or retries < 1:
            raise ValueError(f"retries must be an integer >= 1 (the number of tries), not {retries!r}")
        if ssh_config is not None and not os.path.isfile(os.path.expanduser(ssh_config)):
            raise ValueError(f"ssh_config {ssh_config!r} is not a file")
        self.ssh_config = ssh_config
        self.use_agent = use_agent
        self.durability = durability
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.keepalive = keepalive
        self.retries = retries
        self.retry_time = retry_time
        if durability != "none":
            self.capabilities = dataclasses.replace(self.capabilities)
        self.opened = False
        self._connection: _Connection | None = None
        self._connect_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._unflushed = set()  # names stored since the last flush (durability "close")
        self._orphans = set()  # temp names a broken connection left behind, removed after reconnecting
        self._fsync_supported = None

    def __repr__(self):
        return f"<SftpBackend {self.url}>"

    # --- connection handling ---
    def _connect(self) -> _Connection:
        with self._connect_lock:
            connection = self._connection
            if connection is not None and not connection.dead and connection.transport.is_active():
                return connection
            if connection is not None:
                connection.close()
            target = _connect.resolve(self.host, self.port, self.user, self.ssh_config)
            keepalive = self.keepalive if self.keepalive else target.keepalive
            transport = _connect.connect(
                target, use_agent=self.use_agent, connect_timeout=self.connect_timeout, keepalive=keepalive
            )
            self._connection = _Connection(transport, self.timeout)
            return self._connection

    def _drop(self, connection: _Connection):
        with self._connect_lock:
            if self._connection is connection:
                self._connection = None
        connection.close()

    def _run(self, operation, *, what: str):
        """Run operation(session, attempt) with a pooled session, healing the connection.

        Every operation given here must be safe to repeat after its connection broke at any
        point (docs/sftp.md says how each one is); temp files of a broken try are listed in
        *attempt* and removed after the next connect."""
        deadline = time.monotonic() + self.retry_time
        delay = 0.5
        last_error = None
        for attempt_number in range(self.retries):
            attempt = _Attempt()
            connection = None
            try:
                connection = self._connect()
                session = connection.acquire()
            except (p.ConnectionLost, BackendConnectionError) as exc:
                if connection is not None:
                    self._drop(connection)
                last_error = exc
            else:
                try:
                    if self._orphans:
                        self._remove_orphans(session)
                    result = operation(session, attempt)
                except p.ConnectionLost as exc:
                    session.close()
                    connection.release(session)
                    self._drop(connection)
                    with self._state_lock:
                        self._orphans.update(attempt.temp_names)
                    last_error = exc
                except BaseException as exc:
                    # Ctrl-C or an error mid-operation may leave replies in flight: never reuse it
                    if session.replies or session.discard or not isinstance(exc, Exception):
                        session.close()
                        with self._state_lock:
                            self._orphans.update(attempt.temp_names)
                    connection.release(session)
                    if isinstance(exc, p.StatusError):
                        raise BackendError(f"{what} on {self.host} failed: {exc}") from exc
                    raise
                else:
                    connection.release(session)
                    return result
            if attempt_number + 1 >= self.retries or time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise BackendConnectionError(
            f"{what}: cannot reach the sftp server {self.host} ({attempt_number + 1} tries): {last_error}"
        ) from last_error

    def _remove_orphans(self, session: p.Session):
        with self._state_lock:
            orphans, self._orphans = self._orphans, set()
        try:
            ids = [session.send(p.REMOVE, p.string(path)) for path in orphans]
            for request_id in ids:
                try:
                    session.result(request_id)
                except p.StatusError:
                    pass  # already gone, or the write never created it
        except BaseException:
            with self._state_lock:
                self._orphans |= orphans
            raise

    # --- paths and errors ---
    def _path(self, name: str) -> str:
        return f"{self.path}/{name}" if name else self.path

    def _check_open(self):
        if not self.opened:
            raise BackendMustBeOpen(f"{self.url} is not open")

    def _error(self, exc: p.StatusError, what: str, name: str):
        if exc.code == p.NO_SUCH_FILE:
            return ObjectNotFound(name)
        if exc.code == p.PERMISSION_DENIED:
            return PermissionDenied(f"{what} {name!r}: the sftp server denied access: {exc.message}")
        return BackendError(f"{what} {name!r} on {self.host} failed: {exc}")

    def _stat(self, session: p.Session, path: str) -> p.Attributes | None:
        try:
            return p.Reader(session.request(p.STAT, p.string(path), expect=p.ATTRS)).attrs()
        except p.StatusError as exc:
            if exc.code == p.NO_SUCH_FILE:
                return None
            raise

    def _mkdirs(self, session: p.Session, path: str):
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
                attrs = self._stat(session, path)
                if attrs is not None and attrs.is_dir:
                    break
                raise
        for path in reversed(missing):
            try:
                session.request(p.MKDIR, p.string(path), p.attrs_request())
            except p.StatusError:
                attrs = self._stat(session, path)
                if attrs is None or not attrs.is_dir:
                    raise

    # --- lifecycle ---
    def create(self):
        if self.opened:
            raise BackendMustNotBeOpen(f"{self.url} is open")

        def create(session, attempt):
            attrs = self._stat(session, self.path)
            if attrs is not None:
                if not attrs.is_dir or self._listdir(session, self.path):
                    raise BackendAlreadyExists(f"{self.url} already exists and is not empty")
                return
            self._mkdirs(session, self.path)

        try:
            self._run(create, what="create")
        except BaseException:
            self._close_connection()
            raise
        # the connection stays for the open() that usually follows; close() or GC ends it

    def destroy(self):
        if self.opened:
            raise BackendMustNotBeOpen(f"{self.url} is open")

        started = []

        def destroy(session, attempt):
            attrs = self._stat(session, self.path)
            if attrs is None or not attrs.is_dir:
                if started:
                    return  # an earlier try removed it all before its connection broke
                raise BackendDoesNotExist(f"{self.url} does not exist")
            started.append(True)
            self._remove_tree(session, self.path)

        try:
            self._run(destroy, what="destroy")
        finally:
            self._close_connection()

    def _remove_tree(self, session: p.Session, path: str):
        entries = self._listdir(session, path)
        files = [f"{path}/{name}" for name, attrs in entries if not attrs.is_dir]
        for batch in range(0, len(files), _MAX_BATCH):
            ids = [session.send(p.REMOVE, p.string(f)) for f in files[batch : batch + _MAX_BATCH]]
            failure = self._collect(session, ids)
            if failure is not None and failure.code != p.NO_SUCH_FILE:
                raise failure
        for name, attrs in entries:
            if attrs.is_dir:
                self._remove_tree(session, f"{path}/{name}")
        session.request(p.RMDIR, p.string(path))

    def open(self):
        if self.opened:
            raise BackendMustNotBeOpen(f"{self.url} is already open")

        def check(session, attempt):
            attrs = self._stat(session, self.path)
            if attrs is None or not attrs.is_dir:
                raise BackendDoesNotExist(f"{self.url} does not exist (or is not a directory)")
            if self.durability != "none" and self._fsync_supported is None:
                self._fsync_supported = "fsync@openssh.com" in session.extensions

        try:
            self._run(check, what="open")
        except BaseException:
            self._close_connection()
            raise
        if self.durability != "none" and not self._fsync_supported:
            self._close_connection()
            raise BackendError(
                f"durability={self.durability!r} needs the fsync@openssh.com extension, which {self.host}'s "
                "sftp server does not offer; use durability='none' there"
            )
        self.opened = True

    def close(self):
        try:
            if self.opened and self._unflushed:
                self.flush()
        finally:
            self.opened = False
            self._close_connection()

    def _close_connection(self):
        with self._connect_lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __del__(self):
        connection = getattr(self, "_connection", None)
        if connection is not None:
            try:
                connection.close()
            except Exception:  # at interpreter exit modules may already be gone
                pass

    def flush(self):
        self._check_open()
        if self.durability != "close":
            return
        with self._state_lock:
            names, self._unflushed = self._unflushed, set()

        def fsync_all(session, attempt):
            # in batches (each open handle is a file descriptor on the server)
            ordered = sorted(names)
            for batch in range(0, len(ordered), _MAX_BATCH):
                fsync_batch(session, ordered[batch : batch + _MAX_BATCH])

        def fsync_batch(session, batch):
            # open, fsync, close for every item of the batch, all in flight at once
            handles = []
            for name in batch:
                handles.append((name, session.send(p.OPEN, p.string(self._path(name)), p.u32(p.FLAG_READ), p.attrs_request())))
            syncs = []
            for name, request_id in handles:
                try:
                    handle = p.Reader(session.result(request_id, expect=p.HANDLE)).bytes()
                except p.StatusError as exc:
                    if exc.code == p.NO_SUCH_FILE:
                        continue  # deleted or moved since: nothing left to make durable
                    raise
                syncs.append(session.send(p.EXTENDED, p.string("fsync@openssh.com"), p.string(handle)))
                syncs.append(session.send(p.CLOSE, p.string(handle)))
            errors = []
            for request_id in syncs:
                try:
                    session.result(request_id)
                except p.StatusError as exc:
                    errors.append(exc)
            if errors:
                raise BackendError(f"flush: fsync failed on {self.host}: {errors[0]}")

        try:
            self._run(fsync_all, what="flush")
        except BaseException:
            with self._state_lock:
                self._unflushed |= names
            raise

    # --- directories ---
    def mkdir(self, name):
        self._check_open()
        self._run(lambda session, attempt: self._mkdirs(session, self._path(name)), what="mkdir")

    def rmdir(self, name):
        self._check_open()

        def rmdir(session, attempt):
            try:
                session.request(p.RMDIR, p.string(self._path(name)))
            except p.StatusError as exc:
                if exc.code == p.NO_SUCH_FILE:
                    raise ObjectNotFound(f"directory {name!r} does not exist") from None
                attrs = self._stat(session, self._path(name))
                if attrs is None:
                    raise ObjectNotFound(f"directory {name!r} does not exist") from None
                if not attrs.is_dir:
                    raise BackendError(f"rmdir {name!r}: not a directory") from None
                raise BackendError(f"rmdir {name!r}: the directory is not empty ({exc.message})") from None

        self._run(rmdir, what="rmdir")

    # --- items ---
    def info(self, name):
        self._check_open()

        def info(session, attempt):
            try:
                attrs = p.Reader(session.request(p.STAT, p.string(self._path(name)), expect=p.ATTRS)).attrs()
            except p.StatusError as exc:
                if exc.code in (p.NO_SUCH_FILE, p.FAILURE):
                    # FAILURE: a parent is a file, not a directory (ENOTDIR)
                    return ItemInfo(name=name, exists=False, size=0, directory=False)
                raise self._error(exc, "info", name) from None
            if attrs.is_dir:
                return ItemInfo(name=name, exists=True, size=0, directory=True, atime=attrs.atime, mtime=attrs.mtime)
            return ItemInfo(
                name=name, exists=True, size=attrs.size or 0, directory=False, atime=attrs.atime, mtime=attrs.mtime
            )

        return self._run(info, what="info")

    def load(self, name, *, size=None, offset=0):
        self._check_open()
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0 or None, not {size}")
        if size == 0:
            # still an error for a missing item
            if not self.info(name).exists:
                raise ObjectNotFound(name)
            return b""
        return self._run(lambda session, attempt: self._load(session, name, size, offset), what="load")

    def _load(self, session: p.Session, name: str, size, offset: int) -> bytes:
        path = self._path(name)
        try:
            handle = p.Reader(
                session.request(p.OPEN, p.string(path), p.u32(p.FLAG_READ), p.attrs_request(), expect=p.HANDLE)
            ).bytes()
        except p.StatusError as exc:
            if exc.code in (p.NO_SUCH_FILE, p.FAILURE):
                attrs = None if exc.code == p.NO_SUCH_FILE else self._stat(session, path)
                if attrs is None or attrs.is_dir:
                    raise ObjectNotFound(name) from None
            raise self._error(exc, "load", name) from None
        h = p.string(handle)
        try:
            return self._load_open(session, h, name, size, offset)
        except p.StatusError as exc:
            # reading a directory opens fine on some servers and fails at the first read
            attrs = self._stat(session, path)
            if attrs is None or attrs.is_dir:
                raise ObjectNotFound(name) from None
            raise self._error(exc, "load", name) from None
        finally:
            if not session.broken:
                session.forget(session.send(p.CLOSE, h))

    def _load_open(self, session: p.Session, h: bytes, name: str, size, offset: int) -> bytes:
        if offset < 0 or size is None:
            # the end is unknown: ask for it together with the first chunk (no extra round trip)
            stat_id = session.send(p.FSTAT, h)
            first = None
            if offset >= 0:
                first = (offset, session.max_read, session.send(p.READ, h, p.u64(offset), p.u32(session.max_read)))
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
            return self._read_range(session, h, offset, end, first)
        return self._read_range(session, h, offset, offset + size, None)

    def _read_range(self, session: p.Session, h: bytes, start: int, end: int, first) -> bytes:
        """Read [start, end) with up to _MAX_IN_FLIGHT requests in flight; a short file gives less."""
        if end <= start:
            if first is not None:
                session.forget(first[2])
            return b""
        pieces = []  # (offset, data) of every reply; joined once at the end (one copy)
        pending = []  # (offset, length, request id) in send order
        if first is not None:
            pending.append(first)
        next_offset = start + (first[1] if first else 0)
        eof_at = end
        step = session.max_read
        while True:
            while next_offset < eof_at and len(pending) < _MAX_IN_FLIGHT:
                length = min(step, eof_at - next_offset)
                pending.append((next_offset, length, session.send(p.READ, h, p.u64(next_offset), p.u32(length))))
                next_offset += length
            if not pending:
                break
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
        pieces.sort(key=lambda piece: piece[0])
        stop = min(eof_at, end)
        parts = []
        expected = start
        for off, data in pieces:
            if off >= stop:
                break
            if off != expected:
                raise BackendError(f"reading from {self.host}: the server skipped bytes at offset {expected}")
            data = data[: stop - off]
            parts.append(data)
            expected = off + len(data)
        return b"".join(parts)

    def gather(self, sources) -> bytes:
        """The ranges of *sources* concatenated, in 2 round trips for any number of them: all
        files opened in one batch, then every read in flight at once (bounded)."""
        self._check_open()
        sources = [(name, offset, size) for name, offset, size in sources if size != 0]
        if any(offset < 0 or size is None or size < 0 for _, offset, size in sources):
            return super().gather(sources)  # a range from the end needs each size first
        if not sources:
            return b""
        return self._run(lambda session, attempt: self._gather(session, sources), what="gather")

    def _gather(self, session: p.Session, sources) -> bytes:
        names = list(dict.fromkeys(name for name, _, _ in sources))
        handles = {}
        try:
            for batch in range(0, len(names), _MAX_BATCH):
                opens = [
                    (name, session.send(p.OPEN, p.string(self._path(name)), p.u32(p.FLAG_READ), p.attrs_request()))
                    for name in names[batch : batch + _MAX_BATCH]
                ]
                missing = None
                for name, request_id in opens:
                    try:
                        handles[name] = p.string(p.Reader(session.result(request_id, expect=p.HANDLE)).bytes())
                    except p.StatusError as exc:
                        if exc.code not in (p.NO_SUCH_FILE, p.FAILURE):
                            raise
                        missing = missing or name
                if missing is not None:
                    raise ObjectNotFound(missing)
            return self._read_ranges(session, [(handles[name], offset, size, name) for name, offset, size in sources])
        finally:
            if not session.broken:
                for h in handles.values():
                    session.forget(session.send(p.CLOSE, h))

    def _read_ranges(self, session: p.Session, ranges) -> bytes:
        """Read every (handle, offset, size, name) range in full, pipelined; a short one raises
        ReadRangeError."""
        out = bytearray(sum(size for _, _, size, _ in ranges))
        chunks = []  # (handle, file offset, length, position in out, name)
        position = 0
        for h, offset, size, name in ranges:
            for start in range(0, size, session.max_read):
                chunks.append((h, offset + start, min(session.max_read, size - start), position + start, name))
            position += size
        pending = []
        next_chunk = 0
        try:
            while next_chunk < len(chunks) or pending:
                while next_chunk < len(chunks) and len(pending) < _MAX_IN_FLIGHT:
                    h, off, length, pos, name = chunks[next_chunk]
                    pending.append((chunks[next_chunk], session.send(p.READ, h, p.u64(off), p.u32(length))))
                    next_chunk += 1
                (h, off, length, pos, name), request_id = pending.pop(0)
                kind, body = session.wait(request_id)
                if kind == p.STATUS:
                    try:
                        session.check(kind, body)
                    except p.StatusError as exc:
                        if exc.code != p.EOF:
                            raise
                    raise ReadRangeError(f"{name}: the item ends before offset {off} ({length} more bytes wanted)")
                if kind != p.DATA:
                    raise p.ConnectionLost(f"unexpected reply type {kind} to a read")
                reader = p.Reader(body)
                n = min(reader.u32(), length)
                if n == 0:
                    raise ReadRangeError(f"{name}: the server sent no data at offset {off}")
                out[pos : pos + n] = body[reader.pos : reader.pos + n]
                if n < length:
                    # a short read need not be the end of the file: ask for the rest
                    rest = (h, off + n, length - n, pos + n, name)
                    pending.insert(0, (rest, session.send(p.READ, h, p.u64(rest[1]), p.u32(rest[2]))))
        finally:
            for _, request_id in pending:
                session.forget(request_id)
        return bytes(out)

    def store(self, name, value):
        self._check_open()
        data = memoryview(value).cast("B") if not isinstance(value, bytes) else memoryview(value)
        self._run(lambda session, attempt: self._store(session, attempt, name, data), what="store")
        if self.durability == "close":
            with self._state_lock:
                self._unflushed.add(name)

    def _store(self, session: p.Session, attempt: _Attempt, name: str, data: memoryview):
        # Safe to repeat as a whole: a new temp name each time, and the rename puts the same value
        # in place however often it is done.
        path = self._path(name)
        temp = f"{path}.{secrets.token_hex(4)}.tmp"
        open_flags = p.u32(p.FLAG_WRITE | p.FLAG_CREATE | p.FLAG_EXCLUSIVE)
        attempt.temp_names.append(temp)
        try:
            handle = p.Reader(
                session.request(p.OPEN, p.string(temp), open_flags, p.attrs_request(), expect=p.HANDLE)
            ).bytes()
        except p.StatusError as exc:
            if exc.code != p.NO_SUCH_FILE:
                attempt.temp_names.remove(temp)
                raise self._error(exc, "store", name) from None
            self._mkdirs(session, path.rsplit("/", 1)[0])
            handle = p.Reader(
                session.request(p.OPEN, p.string(temp), open_flags, p.attrs_request(), expect=p.HANDLE)
            ).bytes()
        h = p.string(handle)
        # all writes in flight at once, then the close: one round trip for the data
        ids = []
        step = session.max_write
        total = len(data)
        offset = 0
        failure = None
        while True:
            ids.append(session.send_write(handle, offset, data[offset : offset + step]))
            offset += step
            if offset >= total:
                break
            if len(ids) >= _MAX_IN_FLIGHT:
                failure = failure or self._collect(session, ids[: _MAX_IN_FLIGHT // 2])
                del ids[: _MAX_IN_FLIGHT // 2]
        if self.durability == "always":
            ids.append(session.send(p.EXTENDED, p.string("fsync@openssh.com"), h))
        ids.append(session.send(p.CLOSE, h))
        failure = failure or self._collect(session, ids)
        if failure is not None:
            self._remove_quietly(session, temp)
            attempt.temp_names.remove(temp)
            raise self._error(failure, "store", name)
        try:
            self._rename(session, temp, path, attempt)
        except p.StatusError as exc:
            self._remove_quietly(session, temp)
            attempt.temp_names.remove(temp)
            raise self._error(exc, "store", name) from None
        attempt.temp_names.remove(temp)

    @staticmethod
    def _collect(session: p.Session, ids) -> p.StatusError | None:
        """Wait for all *ids*; return the first error status (after draining them all)."""
        failure = None
        for request_id in ids:
            try:
                session.result(request_id)
            except p.StatusError as exc:
                failure = failure or exc
        return failure

    @staticmethod
    def _remove_quietly(session: p.Session, path: str):
        try:
            session.request(p.REMOVE, p.string(path))
        except p.StatusError:
            pass

    def _rename(self, session: p.Session, source: str, target: str, attempt: _Attempt | None = None):
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
        aside = f"{target}.{secrets.token_hex(4)}.tmp"
        if attempt is not None:
            attempt.temp_names.append(aside)  # removed after a reconnect if the connection dies now
        session.request(p.RENAME, p.string(target), p.string(aside))
        try:
            session.request(p.RENAME, p.string(source), p.string(target))
        except p.StatusError:
            session.request(p.RENAME, p.string(aside), p.string(target))
            raise
        self._remove_quietly(session, aside)

    def delete(self, name):
        self._check_open()

        def delete(session, attempt):
            maybe_done = attempt_state["sent"]
            attempt_state["sent"] = True
            try:
                session.request(p.REMOVE, p.string(self._path(name)))
            except p.StatusError as exc:
                if exc.code == p.NO_SUCH_FILE and maybe_done:
                    return  # an earlier try removed it before its connection broke
                if exc.code in (p.NO_SUCH_FILE, p.FAILURE):
                    attrs = None if exc.code == p.NO_SUCH_FILE else self._stat(session, self._path(name))
                    if attrs is None or attrs.is_dir:
                        raise ObjectNotFound(name) from None
                raise self._error(exc, "delete", name) from None

        attempt_state = {"sent": False}
        self._run(delete, what="delete")

    def move(self, curr_name, new_name):
        self._check_open()
        source, target = self._path(curr_name), self._path(new_name)

        def move(session, attempt):
            maybe_done = attempt_state["sent"]
            attempt_state["sent"] = True
            try:
                self._rename(session, source, target, attempt)
                return
            except p.StatusError as exc:
                if exc.code not in (p.NO_SUCH_FILE, p.FAILURE):
                    raise self._error(exc, "move", curr_name) from None
            source_attrs = self._stat(session, source)
            if source_attrs is None:
                if maybe_done and self._stat(session, target) is not None:
                    return  # an earlier try moved it before its connection broke
                raise ObjectNotFound(curr_name)
            if source_attrs.is_dir:
                raise BackendError(f"move {curr_name!r}: it is a directory")
            parent = target.rsplit("/", 1)[0]
            self._mkdirs(session, parent)
            try:
                self._rename(session, source, target, attempt)
            except p.StatusError as exc:
                raise self._error(exc, "move", curr_name) from None

        attempt_state = {"sent": False}
        self._run(move, what="move")
        if self.durability == "close":
            with self._state_lock:
                if curr_name in self._unflushed:
                    # the data still needs its fsync, now under the new name
                    self._unflushed.discard(curr_name)
                    self._unflushed.add(new_name)

    def _listdir(self, session: p.Session, path: str) -> list:
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

    def list(self, name) -> Iterator[ItemInfo]:
        self._check_open()

        def listing(session, attempt):
            try:
                return self._listdir(session, self._path(name))
            except p.StatusError as exc:
                if exc.code in (p.NO_SUCH_FILE, p.FAILURE):
                    raise ObjectNotFound(f"directory {name!r} does not exist") from None
                raise self._error(exc, "list", name) from None

        # all entries are needed before the first can be yielded in name order
        entries = self._run(listing, what="list")
        entries.sort(key=lambda entry: entry[0])
        return self._yield_items(entries)

    @staticmethod
    def _yield_items(entries):
        for filename, attrs in entries:
            if is_hidden_from_list(filename):
                continue
            if attrs.is_dir:
                yield ItemInfo(name=filename, exists=True, size=0, directory=True, atime=attrs.atime, mtime=attrs.mtime)
            else:
                yield ItemInfo(
                    name=filename, exists=True, size=attrs.size or 0, directory=False, atime=attrs.atime, mtime=attrs.mtime
                )
