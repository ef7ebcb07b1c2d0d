"""The backend's SSH connection and the pool of sftp sessions on it.

One authenticated SSH connection is made on first use and replaced when it dies.  Each running
operation borrows its own sftp session (an SSH channel) from the pool, which is what makes one
backend usable from several threads without a global lock.

Every wait on the server ends after the ``timeout``: replies and send windows through the
channel's own timeout, and the two waits paramiko cannot time out (a send stuck on a full socket,
the subsystem request of a new session) through the connection's watchdog, which ends the whole
connection: its server process stopped answering.
"""

import collections
import functools
import threading
import time

import paramiko

from . import _connect
from . import _protocol as p

# sftp sessions per SSH connection: below OpenSSH's default MaxSessions of 10
MAX_SESSIONS = 8
# after a session opened ahead failed, no other is opened ahead for this long (seconds)
OPEN_AHEAD_PAUSE = 1.0


class Watchdog:
    """Ends a connection when one of the waits it watches has lasted longer than *timeout*.

    One thread per connection, waking a few times per timeout; a wait costs two dict updates."""

    def __init__(self, timeout: float, expire):
        self.timeout = timeout
        #: True once the watchdog ended the connection: the failures that follow are timeouts
        self.expired = False
        self._expire = expire
        self._started: dict[object, float] = {}  # a waiting session (or other key) -> when its wait began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="borgstore-sftp-watchdog", daemon=True)
        self._thread.start()

    def begin(self, key):
        self._started[key] = time.monotonic()

    def end(self, key):
        self._started.pop(key, None)

    def _watch(self):
        interval = min(max(self.timeout / 4, 0.05), 1.0)
        while not self._stop.wait(interval):
            now = time.monotonic()
            if any(now - started > self.timeout for started in tuple(self._started.values())):
                self.expired = True
                self._expire()
                return

    def stop(self):
        self._stop.set()


class SessionSlots:
    """The sessions of one connection, whatever carries them: idle ones are reused, at most
    ``limit`` are open at once, and a thread that finds them all busy waits for one.

    A thread that finds every session busy while there is room for another does not open it
    itself: it starts the opening in the background and takes whichever comes first, a session
    given back or the new one.  Opening an ssh process takes a handshake and a login (tens of
    milliseconds), a busy session is usually free again within one round trip; waiting for the
    opening would stall that thread for nothing, and the new session still serves the next one.
    Only the first session of a connection is opened by the thread that needs it, so that its
    failure reaches a caller.

    Waiting threads are served in the order they came: a session given back goes to the first
    of them, and a thread that arrives while others wait queues behind them.  Otherwise the
    thread that gave a session back takes it again for its next operation before a waiting one
    wakes up, and the waiting ones starve until sessions being opened arrive (hundreds of
    milliseconds for ssh processes on a busy machine)."""

    def __init__(self) -> None:
        self.idle: list[p.Session] = []
        self.count = 0  # sessions open or being opened
        self.limit = MAX_SESSIONS
        #: guards the bookkeeping; each waiting thread waits on a condition of its own on it
        self.ready = threading.Lock()
        self.dead = False
        self._open_ahead_after = 0.0  # monotonic time
        self._opening_ahead = 0  # sessions being opened in the background
        self._waiting: collections.deque[threading.Condition] = collections.deque()  # in order of arrival

    def _reserve(self) -> p.Session | None:
        """Wait for an idle session and return it; or, where no session is open or being opened,
        count one for the caller to open and return None."""
        with self.ready:
            if self.idle and not self._waiting and not self.dead:
                return self.idle.pop()
            turn = threading.Condition(self.ready)
            self._waiting.append(turn)
            try:
                while True:
                    if self.dead:
                        raise p.ConnectionLost("the connection was closed")
                    if self.idle and self._waiting[0] is turn:
                        return self.idle.pop()
                    if self.count == 0:
                        self.count = 1
                        return None
                    if self._should_open_ahead():
                        self.count += 1
                        self._opening_ahead += 1
                        threading.Thread(target=self._open_ahead, name="borgstore-sftp-open", daemon=True).start()
                    # no time limit: each session in use is bounded by the timeout of its waits,
                    # an opening by its own, and a connection that dies wakes everyone
                    turn.wait()
            finally:
                self._waiting.remove(turn)
                self._wake_first()  # an idle session left, or the next thread's turn to open one

    def _wake_first(self) -> None:
        """Tell the longest waiting thread that a session may be there (``ready`` held)."""
        if self._waiting:
            self._waiting[0].notify()

    def _wake_all(self) -> None:
        """Wake every waiting thread: the connection died, or a session could not be opened
        (``ready`` held)."""
        for turn in self._waiting:
            turn.notify()

    def _should_open_ahead(self) -> bool:
        """Room for one more session, fewer openings under way than threads waiting (this one
        included), and no failed opening a moment ago (called with ``ready`` held)."""
        return (
            self.count < self.limit
            and self._opening_ahead < len(self._waiting)
            and time.monotonic() >= self._open_ahead_after
        )

    def _open_ahead(self) -> None:
        """Open a session for the waiting threads (a failure is only accounted for: the threads
        keep waiting for the busy sessions, and once none is left one of them opens the next
        session itself and sees why it fails)."""
        try:
            session = self._open()
        except BaseException as exc:
            with self.ready:
                self._opening_ahead -= 1
                # a server that refuses new sessions is not asked again at once by every waiter
                self._open_ahead_after = time.monotonic() + OPEN_AHEAD_PAUSE
            self._open_failed(exc)
            return
        with self.ready:
            self._opening_ahead -= 1
            if not self.dead:
                self.idle.append(session)
                self._wake_first()
                return
        session.close()

    def acquire(self) -> p.Session:
        """A session for the calling thread's operation; give it back with release()."""
        while True:
            session = self._reserve()
            if session is not None:
                return session
            try:
                return self._open()
            except BaseException as exc:
                if not self._open_failed(exc):
                    continue  # the server allows fewer sessions: wait for one of ours
                error = self._open_error(exc)
                if error is exc:
                    raise
                raise error from exc

    def _open(self) -> p.Session:
        """A new session (counted already)."""
        raise NotImplementedError

    def _open_error(self, exc: BaseException) -> BaseException:
        """What a caller whose session could not be opened gets for *exc*."""
        return exc

    def _open_failed(self, exc: BaseException) -> bool:
        """Account for a session that could not be opened; False: the server allows no more
        sessions, share the ones we have."""
        with self.ready:
            self.count -= 1
            self._wake_all()
        return True

    def release(self, session: p.Session) -> None:
        """Take *session* back: kept for reuse, or closed if it broke or still awaits replies."""
        if not (session.broken or session.replies):
            with self.ready:
                if not self.dead:
                    self.idle.append(session)
                    self._wake_first()
                    return
        session.close()
        with self.ready:
            self._discarded(session)
            self.count -= 1
            self._wake_first()

    def _discarded(self, session: p.Session) -> None:
        """*session* was closed for good (called with ``ready`` held)."""


class Connection(SessionSlots):
    """One authenticated SSH transport and a pool of SFTP sessions on it.

    At most MAX_SESSIONS sessions are open at once (OpenSSH allows 10 per connection by
    default); a thread that finds them all busy waits for one."""

    def __init__(self, transport: paramiko.Transport, timeout: float):
        super().__init__()
        self.transport = transport
        self.timeout = timeout
        # paramiko waits this long (30 s by default) for a key re-exchange before a send
        transport.clear_to_send_timeout = timeout
        self.watchdog = Watchdog(timeout, self.close)

    def alive(self) -> bool:
        return not self.dead and self.transport.is_active()

    def _open_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
            return p.ConnectionLost(f"cannot open an sftp session: {exc}")
        return exc

    def _open(self) -> p.Session:
        started = time.monotonic()
        key = object()
        self.watchdog.begin(key)  # paramiko waits for the answer to the subsystem request for ever
        try:
            channel = self.transport.open_session(window_size=8 << 20, max_packet_size=1 << 15, timeout=self.timeout)
            channel.invoke_subsystem("sftp")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if self.watchdog.expired or time.monotonic() - started >= self.timeout:
                raise p.Timeout(f"the server did not open an sftp session within {self.timeout} s") from exc
            raise
        finally:
            self.watchdog.end(key)
        return p.Session(channel, self.timeout, self.watchdog)

    def _open_failed(self, exc: BaseException) -> bool:
        with self.ready:
            self.count -= 1
            # paramiko keeps one pending open failure per transport, so of several opens the
            # server refuses at once, some see ChannelException and others only "Unable to
            # open channel." or "Channel closed.": any SSHException on a live transport is a refusal
            # (a timeout is p.Timeout, no SSHException)
            refused = isinstance(exc, paramiko.SSHException) and self.transport.is_active()
            if refused and self.count > 0:
                # the server allows fewer sessions (MaxSessions)
                self.limit = self.count
                return False
            self._wake_all()
            return True

    def close(self):
        with self.ready:
            self.dead = True
            idle, self.idle = self.idle, []
            self._wake_all()
        self.watchdog.stop()
        # the transport first: closing a channel sends a message, which a frozen server's full
        # socket would block; a closed transport has closed its channels already
        self.transport.close()
        for session in idle:
            session.close()


class Pool:
    """The backend's connection: made on first use, replaced when it died, closed by close()
    or when the pool is garbage-collected (a backend dropped without close() leaks nothing)."""

    def __init__(self, host, port, user, *, ssh_config, use_agent, connect_timeout, timeout, keepalive, transport):
        self.transport = transport  # "paramiko" or "openssh" (_openssh: sessions through ssh processes)
        self.host = host
        self.port = port
        self.user = user
        self.ssh_config = ssh_config
        self.use_agent = use_agent
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.keepalive = keepalive
        self.connection: Connection | None = None
        self._lock = threading.Lock()

    def connect(self) -> Connection:
        """The live connection, connecting (again) if there is none."""
        with self._lock:
            connection = self.connection
            if connection is not None and connection.alive():
                return connection
            if connection is not None:
                connection.close()
            if self.transport == "openssh":
                self.connection = self._connect_openssh()
                return self.connection
            target = _connect.resolve(self.host, self.port, self.user, self.ssh_config)
            keepalive = self.keepalive if self.keepalive else target.keepalive
            transport = _connect.connect(
                target, use_agent=self.use_agent, connect_timeout=self.connect_timeout, keepalive=keepalive
            )
            self.connection = Connection(transport, self.timeout)
            return self.connection

    def _connect_openssh(self):
        from . import _openssh

        where = f"{self.host} port {self.port}" if self.port else self.host
        return _openssh.OpensshConnection(self._ssh_command, where, self.connect_timeout, self.timeout)

    @functools.cached_property
    def _ssh_command(self) -> list:
        """The openssh transport's command line, built by the first connect: finding the cipher
        order asks ssh twice (ssh -G), so a reconnect reuses it."""
        from . import _openssh

        ssh = _openssh.find_ssh()
        destination = (ssh, self.host, self.port, self.user)
        ciphers = _openssh.preferred_ciphers(*destination, ssh_config=self.ssh_config, timeout=self.connect_timeout)
        return _openssh.ssh_command(
            *destination,
            ssh_config=self.ssh_config,
            use_agent=self.use_agent,
            connect_timeout=self.connect_timeout,
            keepalive=self.keepalive,
            ciphers=ciphers,
        )

    def drop(self, connection: Connection):
        """Close *connection* (it broke); the next connect() makes a new one."""
        with self._lock:
            if self.connection is connection:
                self.connection = None
        connection.close()

    def close(self):
        with self._lock:
            connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    def __del__(self):
        connection = getattr(self, "connection", None)
        if connection is not None:
            try:
                connection.close()
            except Exception:  # at interpreter exit modules may already be gone
                pass
