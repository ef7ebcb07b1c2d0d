"""The SFTP version 3 protocol (draft-ietf-secsh-filexfer-02) over one SSH channel.

paramiko's SFTPClient is not used: it throws away the extensions the server announces (so there
is no way to know whether ``fsync@openssh.com`` or ``limits@openssh.com`` exist), it cannot keep
requests for several handles in flight at once, and it splits reads and writes into 32 KiB
requests.  This module only frames requests and replies; what the operations mean for a store is
in :mod:`borgstore_backend_sftp._backend`.

A session is used by one thread at a time (the backend keeps a pool of them).  Requests are sent
with :meth:`Session.send` and their replies collected with :meth:`Session.wait`, so several
requests can be in flight before the first reply is read: that is how the backend saves round
trips.
"""

import struct

# packet types
INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT = 3, 4, 5, 6, 7, 8
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
EXTENDED = 200
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 101, 102, 103, 104, 105, 201

# status codes
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE = 0, 1, 2, 3, 4, 5
NO_CONNECTION, CONNECTION_LOST, OP_UNSUPPORTED = 6, 7, 8

# open flags
FLAG_READ, FLAG_WRITE, FLAG_CREATE, FLAG_TRUNCATE, FLAG_EXCLUSIVE = 0x01, 0x02, 0x08, 0x10, 0x20

# attribute flags
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME, ATTR_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000

S_IFMT, S_IFDIR = 0o170000, 0o040000

_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")
_header = struct.Struct(">IBI")  # length, type, request id
_NO_ATTRS = _u32.pack(0)

# OpenSSH's limits when the server does not announce limits@openssh.com (its sftp-server accepts
# packets of up to 256 KiB)
DEFAULT_MAX_READ = 255 * 1024
DEFAULT_MAX_WRITE = 255 * 1024
# a server announcing this is taken to number its handles as OpenSSH's sftp-server does (see
# Session.guess_handle); any other server never gets a request on a guessed handle
HANDLE_GUESSING_EXTENSION = "fsync@openssh.com"
# requests sent before the next wait go out together, in one write, up to this many bytes
BATCH_BYTES = 64 * 1024


class ConnectionLost(Exception):
    """The channel closed, timed out or delivered garbage: the session is unusable."""


class Timeout(ConnectionLost):
    """The server did not answer (or take our data) within the timeout: a frozen server."""


class StatusError(Exception):
    """The server answered a request with an error status."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (sftp status {code})")
        self.code = code
        self.message = message


def string(value) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return _u32.pack(len(value)) + value


class Attributes:
    __slots__ = ("atime", "mtime", "permissions", "size")

    def __init__(self, size=None, permissions=None, atime=0, mtime=0):
        self.size = size
        self.permissions = permissions
        self.atime = atime
        self.mtime = mtime

    @property
    def is_dir(self) -> bool:
        return self.permissions is not None and self.permissions & S_IFMT == S_IFDIR


class Reader:
    """Parses the body of one reply."""

    __slots__ = ("data", "pos")

    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def u32(self) -> int:
        value = _u32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def u64(self) -> int:
        value = _u64.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return value

    def bytes(self) -> bytes:
        n = self.u32()
        value = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return value

    def text(self) -> str:
        return self.bytes().decode("utf-8", "surrogateescape")

    def attrs(self) -> Attributes:
        flags = self.u32()
        attrs = Attributes()
        if flags & ATTR_SIZE:
            attrs.size = self.u64()
        if flags & ATTR_UIDGID:
            self.pos += 8
        if flags & ATTR_PERMISSIONS:
            attrs.permissions = self.u32()
        if flags & ATTR_ACMODTIME:
            attrs.atime = self.u32()
            attrs.mtime = self.u32()
        if flags & ATTR_EXTENDED:
            for _ in range(self.u32()):
                self.bytes()
                self.bytes()
        return attrs


class Session:
    """One SFTP session on an SSH channel (see the module docstring)."""

    def __init__(self, channel, timeout: float, watchdog=None):
        self.channel = channel
        self.channel.settimeout(timeout)
        self.timeout = timeout
        #: ends the connection when a send blocks longer than the timeout (see _pool.Watchdog)
        self.watchdog = watchdog
        self.next_id = 1
        self.replies: dict[int, tuple[int, memoryview]] = {}  # replies that arrived while waiting for another one
        self.discard: set[int] = set()  # requests whose replies nobody will wait for
        self.buffer = bytearray()
        self.broken = False
        #: times this session waited for the server after sending (docs/sftp.md counts them)
        self.round_trips = 0
        self._sent_since_read = False
        self._batch: list[bytes] = []  # requests sent that have not left yet (see send)
        self._batch_bytes = 0
        self.extensions = {}
        # handle bookkeeping for guess_handle(): raw handles open, and handles closed before the
        # reply of their OPEN arrived (a guessed handle's CLOSE can go in the OPEN's batch)
        self._next_handle: bytes | None = None
        self._open_handles: set[bytes] = set()
        self._closed_before_open: set[bytes] = set()
        self._send_raw(_u32.pack(5) + bytes([INIT]) + _u32.pack(3))
        kind, body = self._read_packet()
        if kind != VERSION:
            raise ConnectionLost(f"the server did not start an sftp session (got packet type {kind})")
        reader = Reader(body)
        self.version = reader.u32()
        while reader.pos < len(body):
            name = reader.bytes().decode("ascii", "replace")
            self.extensions[name] = reader.bytes()
        self.max_read = DEFAULT_MAX_READ
        self.max_write = DEFAULT_MAX_WRITE
        if HANDLE_GUESSING_EXTENSION in self.extensions:
            self._next_handle = _u32.pack(0)  # a new sftp-server process hands out handle 0 first
        if "limits@openssh.com" in self.extensions:
            try:
                reader = Reader(self.request(EXTENDED, string("limits@openssh.com"), expect=EXTENDED_REPLY))
            except StatusError:
                return  # announced but refused: the defaults are safe for OpenSSH
            max_packet, max_read, max_write = reader.u64(), reader.u64(), reader.u64()
            # 0 means "no limit given"; a write request needs some room for its framing
            self.max_read = min(max_read or max_packet - 1024, 1 << 22)
            self.max_write = min(max_write or max_packet - 1024, 1 << 22)

    # --- transport ---
    def _send_raw(self, data):
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog.begin(self)
        try:
            # a memoryview: paramiko's sendall re-slices what is left after each 32 KiB packet,
            # which copies a bytes object every time but not a view
            self.channel.sendall(memoryview(data))
        except TimeoutError as exc:  # no window from the server within the channel's timeout
            raise self._lost(f"the server took no data for {self.timeout} s", exc) from exc
        except (OSError, EOFError) as exc:
            raise self._lost(f"sending to the server failed: {exc}", exc) from exc
        except Exception as exc:  # paramiko.SSHException when the transport is gone
            raise self._lost(f"sending to the server failed: {type(exc).__name__}: {exc}", exc) from exc
        finally:
            if watchdog is not None:
                watchdog.end(self)

    def _lost(self, message: str, cause: BaseException) -> ConnectionLost:
        """Mark the session broken; the error for *cause*: Timeout for a timeout, and for any
        failure after the watchdog ended the connection of a frozen server."""
        self.broken = True
        if isinstance(cause, TimeoutError):
            return Timeout(message)
        if self.watchdog is not None and self.watchdog.expired:
            return Timeout(f"the server did not answer within {self.timeout} s (the connection was ended)")
        return ConnectionLost(message)

    def _fill(self, need: int):
        buffer = self.buffer
        while len(buffer) < need:
            try:
                chunk = self.channel.recv(max(need - len(buffer), 1 << 18))
            except TimeoutError as exc:
                raise self._lost(f"the server did not answer within {self.timeout} s", exc) from exc
            except (OSError, EOFError) as exc:
                raise self._lost(f"receiving from the server failed: {exc}", exc) from exc
            if not chunk:
                raise self._lost("the server closed the connection", EOFError())
            buffer += chunk

    def _read_packet(self):
        self._fill(4)
        length = _u32.unpack_from(self.buffer, 0)[0]
        if length < 1 or length > (1 << 24) + 1024:
            self.broken = True
            raise ConnectionLost(f"garbage from the server (packet length {length})")
        self._fill(4 + length)
        kind = self.buffer[4]
        with memoryview(self.buffer) as view:  # one copy (a bytearray slice would make two)
            body = bytes(view[5 : 4 + length])
        del self.buffer[: 4 + length]
        return kind, body

    # --- requests ---
    def send(self, kind: int, *parts) -> int:
        """Send a request and return its id; collect the reply with wait().

        The request leaves with the next wait() (or flush()), together with the others sent
        before it: one write to the channel for a whole batch, so one SSH packet to frame and
        encrypt instead of one per request (paramiko does that in this process).  A request of
        :data:`BATCH_BYTES` or more (a write of a large value) leaves at once, after the batch."""
        if self.broken:
            raise ConnectionLost("the session is broken")
        request_id = self.next_id
        self.next_id = (request_id + 1) & 0xFFFFFFFF
        length = 5 + sum(len(p) for p in parts)
        packet = b"".join((_header.pack(length, kind, request_id), *parts))
        if kind == CLOSE:
            self._handle_closed(bytes(parts[0][4:]))
        if len(packet) >= BATCH_BYTES:
            self.flush()
            self._send_raw(packet)
        else:
            self._batch.append(packet)
            self._batch_bytes += len(packet)
            if self._batch_bytes >= BATCH_BYTES:
                self.flush()
        self._sent_since_read = True
        return request_id

    def flush(self) -> None:
        """Send the requests waiting to leave (wait() does, before it waits)."""
        if self._batch:
            batch = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
            self._batch = []
            self._batch_bytes = 0
            self._send_raw(batch)

    def send_write(self, handle: bytes, offset: int, data) -> int:
        """Send a WRITE request; *data* may be a memoryview (it is copied into one packet)."""
        return self.send(WRITE, string(handle), _u64.pack(offset), _u32.pack(len(data)), data)

    def wait(self, request_id: int):
        """Return (type, body) of the reply to *request_id*; the body starts after the id."""
        reply = self.replies.pop(request_id, None)
        if reply is not None:
            return reply
        if self._sent_since_read:
            self.flush()
            self.round_trips += 1
            self._sent_since_read = False
        while True:
            kind, body = self._read_packet()
            if kind == HANDLE:
                self._handle_opened(body)
            got = _u32.unpack_from(body, 0)[0]
            if got == request_id:
                return kind, memoryview(body)[4:]
            if got in self.discard:
                self.discard.discard(got)
            else:
                self.replies[got] = (kind, memoryview(body)[4:])

    # --- handles ---
    def guess_handle(self) -> bytes | None:
        """The handle the server will give this session's next OPEN, where it is known; None
        where it is not.  Requests on it can then go in the same batch as the OPEN, which saves
        the round trip of waiting for the handle.

        OpenSSH's sftp-server numbers its handles (four bytes, from 0) and reuses the last one
        freed first.  So with no handle of this session open, the next OPEN gets the handle the
        last CLOSE freed (0 in a new session).  A guess is only made in that state, so a wrong
        one names no open file: its requests fail with an invalid handle and change nothing
        (the caller then goes on with the real handle; see guessed()).  Not guessed: for a
        server that does not announce HANDLE_GUESSING_EXTENSION, after a wrong guess, and while
        any handle of this session is open or its OPEN's reply is outstanding."""
        if self._next_handle is None or self._open_handles or self._closed_before_open:
            return None
        return self._next_handle

    def guessed(self, guess: bytes, handle: bytes | None) -> bool:
        """Report what the OPEN sent with *guess* gave (*handle*; None: the OPEN failed, which
        frees nothing); True if the guess was right.  A wrong guess ends guessing on this
        session: the server does not number handles as we thought."""
        self._closed_before_open.discard(guess)
        if handle is None or handle == guess:
            return handle is not None
        self._next_handle = None
        return False

    def _handle_opened(self, body) -> None:
        handle = bytes(body[8 : 8 + _u32.unpack_from(body, 4)[0]])
        if handle in self._closed_before_open:  # its CLOSE went with the OPEN
            self._closed_before_open.discard(handle)
            self._freed(handle)
        else:
            self._open_handles.add(handle)

    def _handle_closed(self, handle: bytes) -> None:
        if handle in self._open_handles:
            self._open_handles.discard(handle)
            self._freed(handle)
        else:
            self._closed_before_open.add(handle)

    def _freed(self, handle: bytes) -> None:
        if self._next_handle is not None:
            self._next_handle = handle

    def forget(self, request_id: int):
        """Nobody will wait for this reply (a CLOSE of a read handle, say)."""
        if self.replies.pop(request_id, None) is None:
            self.discard.add(request_id)

    @staticmethod
    def check(kind, body, expect=None):
        """Raise StatusError for an error status; return the body of a reply of type *expect*."""
        if kind == STATUS:
            reader = Reader(body)
            code = reader.u32()
            if code == OK and expect is None:
                return body
            raise StatusError(code, reader.text() if reader.pos < len(body) else "")
        if expect is not None and kind != expect:
            raise ConnectionLost(f"unexpected reply type {kind} (wanted {expect})")
        return body

    def result(self, request_id: int, expect=None):
        kind, body = self.wait(request_id)
        return self.check(kind, body, expect)

    def request(self, kind: int, *parts, expect=None):
        return self.result(self.send(kind, *parts), expect)

    def close(self):
        self.broken = True
        try:
            self.channel.close()
        except Exception:  # closing a dead channel must not hide the reason it died
            pass


def attrs_request(permissions=None) -> bytes:
    if permissions is None:
        return _NO_ATTRS
    return _u32.pack(ATTR_PERMISSIONS) + _u32.pack(permissions)


def u64(value: int) -> bytes:
    return _u64.pack(value)


def u32(value: int) -> bytes:
    return _u32.pack(value)
