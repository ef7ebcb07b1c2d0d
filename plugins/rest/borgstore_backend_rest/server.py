"""``borgstore-server-rest``: serves any borgstore backend over HTTP, speaking the REST protocol of
the PyPI borgstore 0.7 (``_wire``) with our extensions.

The storage is opened once and kept open; permissions and a quota are enforced here, on the
server, by the core's middleware, where a client that cannot be trusted cannot get around them.
Connections come over TCP (optionally TLS), from systemd socket activation, or as one connection
on stdin/stdout (what ``rest:`` clients spawn, directly or through ssh).

``serve()`` keeps the PyPI server's positional signature (BorgBackup calls it); ``main()`` is the
command line, with the PyPI server's flags and ours.
"""

import argparse
import copy
import json
import logging
import os
import ssl
import sys
from typing import Any, Optional, Union
from urllib.parse import unquote, urlsplit

from borgstore import build_chain, get_backend, redact_url
from borgstore.backends.errors import BackendError

from . import _wire
from ._server_backend import SharedBackend
from ._server_conn import Limits
from ._server_handler import AccessLog, Credentials, Handler, Scrubber
from ._server_listen import SocketServer, Stopper, activated_sockets, serve_stdio, tcp_listener

log = logging.getLogger("borgstore.server.rest")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = _wire.DEFAULT_PORT
DEFAULT_MAX_BODY = 256 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_HEAD_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MIN_BODY_RATE = 1024.0
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
PASSWORD_ENV = "BORGSTORE_REST_PASSWORD"

#: The permission shortcuts of ``--permissions``, as BorgBackup names them (the PyPI server's):
#: name -> {name prefix: letters}, or None for no permission checks at all.
PERMISSION_SHORTCUTS: dict[str, Optional[dict[str, str]]] = {
    "borgbackup-all": None,
    # no deleting, no overwriting, except where borg must (cache, config/manifest, locks)
    "borgbackup-no-delete": {
        "": "lr",
        "archives": "lrw",
        "cache": "lrwWD",
        "config": "lrW",
        "data": "lrw",
        "keys": "lr",
        "locks": "lrwD",
    },
    # writing new archives and chunks, without reading them back
    "borgbackup-write-only": {
        "": "l",
        "archives": "lw",
        "cache": "lrwWD",
        "config": "lrW",
        "data": "lw",
        "keys": "lr",
        "locks": "lrwD",
    },
    # reading, plus the locks that readers take
    "borgbackup-read-only": {"": "lr", "locks": "lrwD"},
}


class ConfigError(ValueError):
    """The server's configuration is invalid (the command line exits with status 2)."""


def resolve_permissions(text: Optional[str]) -> Optional[dict[str, str]]:
    """The permissions dict for ``--permissions``: a shortcut name of :data:`PERMISSION_SHORTCUTS`
    or a JSON object ``{"prefix": "letters"}``; None (no checks) for None or ``borgbackup-all``."""
    if text is None:
        return None
    if text in PERMISSION_SHORTCUTS:
        return copy.deepcopy(PERMISSION_SHORTCUTS[text])
    try:
        permissions = json.loads(text)
    except json.JSONDecodeError:
        permissions = text
    if not isinstance(permissions, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in permissions.items()
    ):
        shortcuts = ", ".join(PERMISSION_SHORTCUTS)
        raise ConfigError(
            f"invalid permissions {text[:80]!r}: use a shortcut ({shortcuts}) or a JSON object "
            '{"name prefix": "letters"}'
        )
    return permissions


def backend_url_of(url: str) -> str:
    """The URL to open: ``FILE:path`` (what PyPI's ``rest:`` client passes; relative to the
    working directory, ``~`` expanded) becomes a ``file://`` URL; any other URL stays."""
    if not url.startswith("FILE:"):
        return url
    path = os.path.abspath(os.path.expanduser(url[len("FILE:") :]))
    from pathlib import Path

    return Path(path).as_uri()


def _chain_factory(url: str, permissions: Optional[dict[str, str]], quota: Optional[int]) -> Any:
    """A function making the (unopened) chain for *url*; checked once now, so that a bad URL
    or bad permissions stop the server before it listens."""

    def make_chain() -> Any:
        """A new, unopened chain (a fresh one after each close, so no middleware state lingers)."""
        backend = get_backend(url, permissions=permissions, quota=quota)
        if backend is None:
            raise ConfigError(f"no installed backend serves the URL {redact_url(url)}")
        # a bare backend gets the adapter, which serializes a backend that is not thread safe
        return backend if hasattr(backend, "layers") else build_chain(backend)

    try:
        make_chain()
    except ConfigError:
        raise
    except (BackendError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot use the backend {redact_url(url)}: {exc}") from None
    return make_chain


def _secrets_of(url: str, password: Optional[str]) -> list[str]:
    """What an error text sent to a client must not show: the URL, the storage's path, the password."""
    secrets = [url, redact_url(url)]
    path = urlsplit(url).path
    if len(path) > 1:
        for form in (path, unquote(path)):
            secrets += [form, form.rstrip("/"), os.path.realpath(form)]
    if password:
        secrets.append(password)
    return secrets


def _tls_context(cert: Optional[str], key: Optional[str]) -> Optional[ssl.SSLContext]:
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("--tls-key needs --tls-cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert!r} / key {key!r}: {exc}") from None
    return context


def _check_settings(
    port: int, username: Optional[str], password: Optional[str], quota: Optional[int], numbers: dict[str, Any]
) -> None:
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"invalid port {port!r}: 0 to 65535")
    if bool(username) != bool(password):
        raise ConfigError("authentication needs both a username and a password")
    if username and ":" in username:
        raise ConfigError("a username must not contain ':' (HTTP basic authentication)")
    if quota is not None and (type(quota) is not int or quota < 0):
        raise ConfigError(f"invalid quota {quota!r}: a number of bytes >= 0")
    for name, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"invalid {name.replace('_', '-')} {value!r}: a number > 0")


def serve(
    host: str,
    port: int,
    backend_url: str,
    username: Optional[str] = None,
    password: Optional[str] = None,
    permissions: Union[dict[str, str], str, None] = None,
    quota: Optional[int] = None,
    socket_activation: bool = False,
    stdio: bool = False,
    *,
    tls_cert: Optional[str] = None,
    tls_key: Optional[str] = None,
    max_body: int = DEFAULT_MAX_BODY,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    head_timeout: Optional[float] = DEFAULT_HEAD_TIMEOUT,
    idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT,
    min_body_rate: float = DEFAULT_MIN_BODY_RATE,
    shutdown_timeout: Optional[float] = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Serve the store at *backend_url* until SIGTERM or SIGINT (or, with *stdio*, the end of
    stdin); then finish the requests in flight, close the store and return.

    On *host*:*port*, on the socket systemd passed (*socket_activation*), or on stdin/stdout
    (*stdio*).  *username* and *password* require HTTP basic authentication; *permissions* (a
    dict, or a shortcut name or JSON text as for ``--permissions``) and *quota* (bytes) are
    enforced by the middleware.  The keyword-only arguments are the limits of ``main()``'s
    flags of the same names.  An invalid configuration raises ConfigError (a ValueError).

    Only the main thread may set signal handlers: called from another thread, serve() leaves
    them alone and serves until the process ends (with *stdio*, until stdin ends).
    """
    if isinstance(permissions, str):
        permissions = resolve_permissions(permissions)
    numbers = {"max_body": max_body, "max_connections": max_connections, "head_timeout": head_timeout}
    numbers |= {"idle_timeout": idle_timeout, "min_body_rate": min_body_rate, "shutdown_timeout": shutdown_timeout}
    _check_settings(port, username, password, quota, numbers)
    if stdio and socket_activation:
        raise ConfigError("--stdio and --socket-activation exclude each other")
    if stdio and (tls_cert or tls_key):
        raise ConfigError("--stdio does not speak TLS (the pipe's far end, such as ssh, protects it)")
    tls = _tls_context(tls_cert, tls_key)
    url = backend_url_of(backend_url)
    handler = _handler(url, username, password, permissions, quota, max_body, stdio=stdio)
    stopper = Stopper()
    try:
        stopper.install()
        if stdio:
            log.info("serving %s on stdin/stdout", redact_url(url))
            serve_stdio(handler, stopper, shutdown_timeout)
        else:
            limits = Limits(head_timeout, idle_timeout, head_timeout, min_body_rate)
            server = SocketServer(handler, limits, max_connections=max_connections, tls=tls, stopper=stopper)
            sockets = _activated_sockets() if socket_activation else [tcp_listener(host, port)]
            where = "the sockets systemd passed" if socket_activation else f"{host}:{port}"
            log.info("serving %s on %s%s", redact_url(url), where, " (TLS)" if tls else "")
            try:
                server.serve(sockets)
            finally:
                server.stop(shutdown_timeout)
        log.info("stopping")
    finally:
        stopper.close()
        _close(handler, shutdown_timeout)


def _handler(
    url: str,
    username: Optional[str],
    password: Optional[str],
    permissions: Optional[dict[str, str]],
    quota: Optional[int],
    max_body: int,
    *,
    stdio: bool,
) -> Handler:
    """The request handler for the store at *url* (whose chain is checked now); on *stdio* only
    failed requests are logged (see AccessLog)."""
    backend = SharedBackend(_chain_factory(url, permissions, quota))
    credentials = Credentials(username, password) if username and password else None
    access_log = AccessLog(2 if _log_to_stderr_unless_configured() else None, least_status=400 if stdio else 0)
    scrub = Scrubber(_secrets_of(url, password))
    return Handler(backend, credentials=credentials, max_body=max_body, scrub=scrub, access_log=access_log)


def _close(handler: Handler, timeout: Optional[float]) -> None:
    try:
        handler.backend.close(timeout)
    except Exception as exc:  # noqa: BLE001 (stopping goes on: the error is logged)
        log.error("closing the store failed: %s", handler.scrub(str(exc)))


def _activated_sockets() -> list:
    try:
        return activated_sockets()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _log_to_stderr_unless_configured() -> bool:
    """An application calling serve() may have set up logging; if nothing is, log to stderr
    (True: the access log may then write to stderr itself)."""
    if logging.getLogger().handlers or log.handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return True


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        """The number *text*, which must be > 0."""
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="borgstore-server-rest",
        description="Serve a borgstore backend over HTTP (the REST protocol of borgstore).",
        epilog=f"The password may also come from the environment variable {PASSWORD_ENV}.",
    )
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    add("--backend", required=True, metavar="URL", help="the store to serve, e.g. file:///srv/store")
    add("--username", help="require HTTP basic authentication with this username")
    add(
        "--password",
        help="the password (WARNING: a password on the command line is visible to every local user; "
        f"prefer --password-file or {PASSWORD_ENV})",
    )
    add("--password-file", metavar="PATH", help="read the password from the first line of this file")
    add("--permissions", help="a JSON object {prefix: letters} or a shortcut: " + ", ".join(PERMISSION_SHORTCUTS))
    add("--quota", type=int, metavar="BYTES", help="the most bytes the store may hold")
    add("--socket-activation", action="store_true", help="serve the socket(s) systemd passed (LISTEN_FDS)")
    add("--stdio", action="store_true", help="serve one connection on stdin/stdout")
    add("--tls-cert", metavar="PATH", help="serve HTTPS with this certificate (chain), PEM")
    add("--tls-key", metavar="PATH", help="the certificate's private key, PEM (default: in --tls-cert)")
    add("--max-body", type=_positive(int), default=DEFAULT_MAX_BODY, metavar="BYTES", help="largest request body")
    add("--max-connections", type=_positive(int), default=DEFAULT_MAX_CONNECTIONS, metavar="N")
    add("--head-timeout", type=_positive(float), default=DEFAULT_HEAD_TIMEOUT, metavar="SECONDS",
        help="time for a request head to arrive; also a body's grace period (default: %(default)s)")  # fmt: skip
    add("--idle-timeout", type=_positive(float), default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
        help="close a kept-alive connection idle this long (default: %(default)s)")  # fmt: skip
    add("--min-body-rate", type=_positive(float), default=DEFAULT_MIN_BODY_RATE, metavar="BYTES_PER_SECOND",
        help="cut off a body arriving slower than this after the grace period (default: %(default)s)")  # fmt: skip
    add("--shutdown-timeout", type=_positive(float), default=DEFAULT_SHUTDOWN_TIMEOUT, metavar="SECONDS",
        help="on SIGTERM, wait this long for requests in flight (default: %(default)s)")  # fmt: skip
    return parser


def _password(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Optional[str]:
    if args.password is not None and args.password_file is not None:
        parser.error("give --password or --password-file, not both")
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read --password-file {args.password_file!r}: {exc}")
        if not password:
            parser.error(f"--password-file {args.password_file!r} holds no password")
        return password
    if args.password is not None:
        return args.password
    # the environment only counts for a server that asks for a login
    return os.environ.get(PASSWORD_ENV) if args.username else None


def main(argv: Optional[list[str]] = None) -> None:
    """The command line ``borgstore-server-rest``: exits 0 when stopped, 2 for a bad configuration."""
    parser = _parser()
    args = parser.parse_args(argv)
    password = _password(args, parser)
    try:
        permissions = resolve_permissions(args.permissions)
        serve(
            args.host,
            args.port,
            args.backend,
            args.username,
            password,
            permissions,
            args.quota,
            args.socket_activation,
            args.stdio,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            max_body=args.max_body,
            max_connections=args.max_connections,
            head_timeout=args.head_timeout,
            idle_timeout=args.idle_timeout,
            min_body_rate=args.min_body_rate,
            shutdown_timeout=args.shutdown_timeout,
        )
    except ConfigError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"borgstore-server-rest: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


__all__ = ["PERMISSION_SHORTCUTS", "ConfigError", "main", "resolve_permissions", "serve"]

if __name__ == "__main__":
    main()
