"""``http:``, ``https:`` and ``rest:`` URLs: parsed into a :class:`Location`, shown with the
password hidden.

The forms are the PyPI borgstore 0.7's::

    http(s)://[user:password@]host[:port][/sub/path]
    rest:///path                          the server runs here, on its stdin and stdout
    rest://[user@]host[:port]/path        the same through ssh (BORGSTORE_RSH replaces ssh)

Credentials are percent-encoded; without them in the URL, ``BORGSTORE_REST_USERNAME`` and
``BORGSTORE_REST_PASSWORD`` give them.  A sub-path is the prefix of every request (a reverse
proxy's).  A ``rest:`` path is handed to the server as ``FILE:<path>``: after ``rest://host/``
it is relative to the remote home directory (``rest://host//abs`` and ``rest://host/~/x`` as the
PyPI client has them); ``rest:///abs/path`` is the absolute local path.
"""

import os
import re
import shlex
import urllib.parse
from dataclasses import dataclass, field

from borgstore.backends.errors import BackendURLInvalid
from borgstore.backends.toolkit import generic_redact

REDACTED = "***"
SERVER_COMMAND = "borgstore-server-rest"
USERNAME_ENV = "BORGSTORE_REST_USERNAME"
PASSWORD_ENV = "BORGSTORE_REST_PASSWORD"
RSH_ENV = "BORGSTORE_RSH"
#: ssh notices a dead peer after about 30 s * 3 of silence and exits: our read ends instead of hanging
SSH_KEEPALIVE = ("-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=3")
FORMS = "http(s)://[user:password@]host[:port][/sub/path], rest:///path or rest://[user@]host[:port]/path"

# the password may hold '/' (as the PyPI client reads it), never an unencoded '@'
_USERINFO = re.compile(r"(?P<user>[^:/@]*):(?P<password>[^@]*)@")
_HOST = r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]:/@?#\s]+)(?::(?P<port>[^/]*))?"
_HTTP_PLACE = re.compile(_HOST + r"(?P<path>/.*)?", re.DOTALL)
_REST = re.compile(r"(?:(?:(?P<user>[^@:/\[\]]+)@)?" + _HOST + r")?/(?P<path>.*)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Location:
    """Where the server is and how to reach it (nothing resolved, nothing run yet).

    ``command`` is set for ``rest:`` URLs (the server's command line, through ssh or local);
    ``host``/``port``/``tls``/``prefix`` for ``http(s):`` ones."""

    scheme: str
    host: str = ""
    port: int = 0
    tls: bool = False
    prefix: str = ""  # the sub-path, without a trailing "/"; "" for none
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    command: tuple = ()


def _invalid(url: str, why: str) -> BackendURLInvalid:
    return BackendURLInvalid(f"invalid {url.partition(':')[0]} URL {redact(url)!r}: {why}; the forms are {FORMS}")


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"the port {text!r} is not a number between 1 and 65535")
    return int(text)


def _split_http(rest: str):
    """(user, password, host, port, path) of what follows ``http(s)://``; raise ValueError."""
    user = password = None
    match = _USERINFO.match(rest)
    if match:
        user, password = match["user"], match["password"]
        rest = rest[match.end() :]
        if not user or not password:
            raise ValueError("an empty user name or password before '@'")
    elif "@" in rest.partition("/")[0]:
        raise ValueError("credentials must be user:password@ (percent-encoded), or none")
    place = _HTTP_PLACE.fullmatch(rest)
    if not place:
        raise ValueError("no host name, or an unexpected character in it")
    path = place["path"] or ""
    if "?" in path or "#" in path or _CONTROL.search(path):
        raise ValueError("the sub-path has a query, a fragment, a blank or a control character")
    return user, password, place["host"], _port(place["port"]), path.rstrip("/")


def _parse_http(url: str, scheme: str, rest: str) -> Location:
    try:
        user, password, host, port, path = _split_http(rest)
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    username: str | None
    secret: str | None
    if user is not None:
        username, secret = urllib.parse.unquote(user), urllib.parse.unquote(password)
    else:
        # both or neither, as the PyPI client has it
        username, secret = os.environ.get(USERNAME_ENV) or None, os.environ.get(PASSWORD_ENV) or None
        if not (username and secret):
            username = secret = None
    tls = scheme == "https"
    return Location(
        scheme,
        host=host.strip("[]"),
        port=port or (443 if tls else 80),
        tls=tls,
        prefix=path,
        username=username,
        password=secret,
    )


def ssh_command(user: str | None, host: str, port: int | None) -> list:
    """The command line that runs a command on *host*: ``BORGSTORE_RSH`` split as a shell would
    (used as given: its options are the user's), else ``ssh`` with keepalive options."""
    rsh = os.environ.get(RSH_ENV)
    command = shlex.split(rsh) if rsh else ["ssh", *SSH_KEEPALIVE]
    if port is not None:
        command += ["-p", str(port)]
    return command + [f"{user}@{host}" if user else host]


def _parse_rest(url: str, rest: str) -> Location:
    match = _REST.fullmatch(rest)
    if not match:
        raise _invalid(url, "no '/' before the path, or an unexpected character in the host part")
    path, host, user = match["path"], match["host"], match["user"]
    if not path or "?" in path or "#" in path or _CONTROL.search(path.replace(" ", "")):
        raise _invalid(url, "the path is empty, or has a query, a fragment or a control character")
    try:
        port = _port(match["port"])
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    if host is None:
        # rest:///abs/path is the absolute path (rest:///~/x: below the home directory)
        path = path if path.startswith(("/", "~")) else "/" + path
        return Location("rest", command=(SERVER_COMMAND, "--stdio", "--backend", f"FILE:{path}"))
    host = host.strip("[]")
    if host.startswith("-") or (user or "").startswith("-"):
        raise _invalid(url, "a host or user name starting with '-' would be an ssh option")
    # ssh hands the remote command to a shell: quote, so that the path arrives as one word
    remote = [SERVER_COMMAND, "--stdio", "--backend", shlex.quote(f"FILE:{path}")]
    return Location("rest", host=host, port=port or 0, username=user, command=(*ssh_command(user, host, port), *remote))


def parse(url: str) -> Location:
    """Parse an ``http:``, ``https:`` or ``rest:`` URL; raise BackendURLInvalid saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https", "rest"):
        raise _invalid(url, "it must start with http://, https:// or rest://")
    if scheme == "rest":
        return _parse_rest(url, rest)
    return _parse_http(url, scheme, rest)


def redact(url: str) -> str:
    """*url* with the password replaced by ``***``.  In a URL that does not parse, everything
    between the first ':' after ``//`` and the last '@' is hidden: an unencoded '@' or '/' in
    a password must not leak.  Secrets in a query (which no URL of ours has) are hidden by the
    core's generic rule."""
    return generic_redact(_hide_password(url))


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme == "rest":
        return url
    match = _USERINFO.match(rest)
    if match:
        try:
            _split_http(rest)
        except ValueError:
            pass
        else:
            return f"{scheme}://{match['user']}:{REDACTED}@{rest[match.end() :]}"
    head, at, after = rest.rpartition("@")
    if not at:
        return url
    user, colon, _secret = head.partition(":")
    return f"{scheme}://{user}{colon}{REDACTED if colon else ''}@{after}"
