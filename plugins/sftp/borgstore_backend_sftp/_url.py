"""sftp URLs: what they name, and how to show one without the password it may carry.

This module must stay light (no paramiko): the core calls :func:`redact_url` for every sftp URL
it shows, also when nothing is ever connected.
"""

import re
from urllib.parse import unquote

from borgstore.backends.errors import BackendURLInvalid

REDACTED = "***"

# user info is everything up to the last "@" before the path, so that a password holding a raw
# "@" is still taken apart correctly (ssh splits user@host at the last "@" too)
_URL = re.compile(
    r"^sftp://(?:(?P<userinfo>[^/]*)@)?(?P<host>\[[^\]/]+\]|[^:/@\[\]]+)(?::(?P<port>\d*))?/(?P<path>.*)$",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """*url* with the password of ``sftp://user:password@host/...`` replaced by ``***``.

    The backend never uses a password (only public keys), but a URL may carry one anyway: every
    message, log line and repr shows the URL through this function.  A URL too malformed to tell
    where the password ends is redacted up to its last ``@``, rather than shown."""
    if not isinstance(url, str):
        return repr(type(url).__name__)
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        if ":" not in userinfo:
            return url
        return f"{head}://{userinfo.split(':', 1)[0]}:{REDACTED}@{hostport}{slash}{path}"
    # no "@" before the first "/": a "user:pa/ss@host" password with a slash in it would end
    # the authority early; a real port is digits and a bracketed host is an IPv6 address
    user, colon, after = authority.partition(":")
    if colon and not authority.startswith("[") and not after.isdigit() and "@" in rest:
        return f"{head}://{user}:{REDACTED}@{rest.rpartition('@')[2]}"
    return url


def parse_url(url: str):
    """Return (user, host, port, path) of an sftp URL; path is absolute if it starts with '/'.

    A password in the URL (``user:password@``) is dropped: only public key authentication is
    used, and the password must not travel any further."""
    m = _URL.match(url)
    shown = redact_url(url)
    if not m:
        raise BackendURLInvalid(
            f"invalid sftp URL {shown!r}: use sftp://[user@]host[:port]/relative/path "
            "or sftp://[user@]host[:port]//absolute/path"
        )
    user = unquote(m["userinfo"].split(":", 1)[0]) if m["userinfo"] else None
    host = unquote(m["host"].strip("[]"))
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 <= port <= 65535:
        raise BackendURLInvalid(f"invalid sftp URL {shown!r}: port {port} is out of range")
    path = unquote(m["path"])
    if path not in ("/",):
        path = path.rstrip("/")
    if not path:
        raise BackendURLInvalid(f"invalid sftp URL {shown!r}: the store path is missing")
    if "\0" in path:
        raise BackendURLInvalid(f"invalid sftp URL {shown!r}: the path contains a NUL character")
    return user or None, host, port or None, path
