"""Where the REST server takes its connections from, and how it stops.

* TCP on a host and port (optionally TLS: the handshake runs in the connection's own thread,
  under the head timeout, so a client that never finishes it holds up nobody else);
* sockets passed by systemd (socket activation: ``LISTEN_FDS`` descriptors from fd 3, for this
  process as ``LISTEN_PID`` says; any family; a listening socket is accepted from, a connected
  one, as with ``Accept=yes``, is served as one connection);
* stdin/stdout as one connection (``--stdio``: what ssh or a spawning client gives).

A thread serves each connection; beyond *max_connections* a connection is answered 503 and
closed.  SIGTERM and SIGINT (unless ignored, as a spawning client may ask) stop the server:
no more connections are taken, the idle ones are closed, the requests being served finish.
"""

import logging
import os
import selectors
import signal
import socket
import ssl
import threading
from typing import Any, Optional

from ._server_conn import UNLIMITED, Connection, Connections, Limits
from ._server_handler import Handler
from ._server_http import SocketTransport, StdioTransport, response_head

log = logging.getLogger("borgstore.server.rest")
SD_LISTEN_FDS_START = 3
BACKLOG = 128


class Stopper:
    """A stop request from a signal handler or a thread, that wakes the accept loop."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.wake_fd, self._wake_write = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_write, False)
        self._previous: dict[int, Any] = {}

    def request(self, *_signal_args: object) -> None:
        """Ask the server to stop (usable as a signal handler)."""
        self.requested.set()
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # the pipe is full: a wake-up is already pending

    def install(self) -> None:
        """Stop on SIGTERM and SIGINT (a SIGINT the parent ignores stays ignored); only the
        main thread may set signal handlers, so a server run in another thread leaves them."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            self._previous[signum] = signal.signal(signum, self.request)

    def close(self) -> None:
        """Put the signal handlers back and close the pipe."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        for fd in (self.wake_fd, self._wake_write):
            os.close(fd)


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host* (a name or an address) and *port*."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def activated_sockets() -> list[socket.socket]:
    """The sockets systemd passed this process (sd_listen_fds(3)); ValueError if there are none."""
    count, pid = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    if not count or not count.isdigit() or int(count) < 1:
        raise ValueError("--socket-activation: no socket was passed (LISTEN_FDS is not set)")
    if pid is not None and pid != str(os.getpid()):
        raise ValueError(f"--socket-activation: the sockets are for process {pid}, not this one")
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        try:
            sockets.append(socket.socket(fileno=fd))
        except OSError as exc:
            raise ValueError(f"--socket-activation: fd {fd} is not a socket ({exc.strerror})") from None
    return sockets


def _is_listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def _peer_name(sock: socket.socket, address: Any) -> str:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) or sock.family.name.lower()


class SocketServer:
    """Serves connections from *listeners* until the *stopper* is asked to stop."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        *,
        max_connections: int,
        tls: Optional[ssl.SSLContext],
        stopper: Stopper,
    ):
        self.handler = handler
        self.limits = limits
        self.max_connections = max_connections
        self.tls = tls
        self.stopper = stopper
        self.connections = Connections()

    def serve(self, sockets: list[socket.socket]) -> None:
        """Accept from the listening *sockets*, serve the connected ones, until stopped."""
        selector = selectors.DefaultSelector()
        selector.register(self.stopper.wake_fd, selectors.EVENT_READ)
        try:
            for sock in sockets:
                if _is_listening(sock):
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ)
                else:
                    self._start(sock, _peer_name(sock, sock.getpeername()))
            while not self.stopper.requested.is_set():
                for key, _events in selector.select():
                    if key.fileobj is not self.stopper.wake_fd:
                        self._accept(key.fileobj)  # type: ignore[arg-type]
        finally:
            selector.close()
            for sock in sockets:
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # out of descriptors, say: the next connection may do better
            log.warning("accepting a connection failed: %s", exc.strerror)
            self.stopper.requested.wait(0.05)
            return
        sock.setblocking(True)
        if len(self.connections) >= self.max_connections:
            self._refuse(sock)
            return
        self._start(sock, _peer_name(sock, address))

    def _start(self, sock: socket.socket, peer: str) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(
            SocketTransport(sock, peer, self.limits.idle_timeout), self.handler, self.connections, self.limits
        )
        self.connections.add(connection)
        threading.Thread(target=self._run, args=(connection,), name=f"rest {peer}", daemon=True).start()

    def _run(self, connection: Connection) -> None:
        if self.tls is not None:
            plain = connection.transport
            assert isinstance(plain, SocketTransport)
            try:
                plain.sock.settimeout(self.limits.head_timeout)
                wrapped = self.tls.wrap_socket(plain.sock, server_side=True)
            except (OSError, ValueError) as exc:
                log.info("%s: TLS handshake failed: %s", plain.peer, exc)
                self.connections.remove(connection)
                plain.close()
                return
            connection.transport = SocketTransport(wrapped, plain.peer, self.limits.idle_timeout)
        connection.run()

    def _refuse(self, sock: socket.socket) -> None:
        """Answer a connection beyond the limit 503 and close it, without holding up accept."""
        answer = self.handler.overloaded()
        body = bytes(answer.body or b"")
        try:
            sock.setblocking(False)
            sock.send(response_head(503, len(body), answer.headers, close=True) + body)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)  # drop a request that already arrived: closing on it would reset
        except OSError:
            pass
        sock.close()
        log.warning("refused a connection: %d connections are open", self.max_connections)

    def stop(self, timeout: Optional[float]) -> None:
        """Close the idle connections and wait for the requests being served."""
        self.connections.stop()
        if not self.connections.wait_for_requests(timeout):
            log.warning("stopping with requests still being served after %s s", timeout)


def serve_stdio(handler: Handler, stopper: Stopper, timeout: Optional[float]) -> None:
    """Serve one connection on stdin/stdout until it ends or the stopper is asked to stop.

    The descriptors are moved aside and 0 and 1 pointed at /dev/null and stderr, so that
    nothing printed by accident (a library, a warning) can corrupt the protocol stream."""
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    connections = Connections()
    connection = Connection(StdioTransport(in_fd, out_fd), handler, connections, UNLIMITED)
    connections.add(connection)

    def run() -> None:
        """Serve the connection; its end (end of file, an error) stops the server."""
        try:
            connection.run()
        finally:
            stopper.request()

    # the connection has a thread of its own, so that a signal can stop the server while the
    # connection waits in a read that nothing can interrupt
    threading.Thread(target=run, name="rest stdio", daemon=True).start()
    while not stopper.requested.wait(1.0):
        pass
    connections.stop()
    if not connections.wait_for_requests(timeout):
        log.warning("stopping with a request still being served after %s s", timeout)
