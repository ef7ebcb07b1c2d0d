"""``s3:`` and ``b2:`` URLs: parsed into a :class:`Location`, and shown with the secret hidden.

The form is the PyPI borgstore 0.7's, which BorgBackup 2 passes through::

    (s3|b2):[profile|(access_key_id:access_key_secret)@][schema://hostname[:port]]/bucket/path

The key id and the secret are percent-encoded (a ``/`` or ``@`` in a secret must be), the path
may be; no endpoint means AWS.
"""

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

from borgstore.backends.errors import BackendURLInvalid

REDACTED = "***"
_ENDPOINT = re.compile(r"(?P<schema>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^:/@]+)(?::(?P<port>[0-9]+))?(?=/)")
_SCHEME_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# bucket names: 3-63 lower-case letters, digits, dots and dashes (B2 and old AWS buckets allow
# upper case and underscores too, so those are accepted; anything URL-special is not)
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
FORM = "(s3|b2):[profile|(access_key_id:access_key_secret)@][schema://hostname[:port]]/bucket/path"


@dataclass(frozen=True)
class Location:
    """Where a store lives and how the URL says to reach it (no I/O, nothing resolved yet)."""

    provider: str  # "s3" or "b2"
    bucket: str
    path: str  # the store's key prefix, without leading or trailing "/"
    profile: Optional[str] = None
    access_key_id: Optional[str] = None
    secret_access_key: Optional[str] = field(default=None, repr=False)
    endpoint: Optional[str] = None  # "scheme://host[:port]", None: AWS (or the environment's)

    @property
    def prefix(self) -> str:
        """The key prefix of every object of the store: ``path/``."""
        return self.path + "/"


def _invalid(url: str, why: str) -> BackendURLInvalid:
    return BackendURLInvalid(f"invalid {url.partition(':')[0]} URL {redact(url)!r}: {why}; the form is {FORM}")


def _place(rest: str):
    """(endpoint or None, bucket, path) of ``[schema://host[:port]]/bucket/path``; raise ValueError
    saying what is wrong."""
    endpoint = None
    match = _ENDPOINT.match(rest)
    if match:
        schema = match["schema"].lower()
        if schema not in ("http", "https"):
            raise ValueError(f"the endpoint's scheme must be http or https, not {schema!r}")
        if match["port"] and not 0 < int(match["port"]) < 65536:
            raise ValueError(f"the port {match['port']} is not between 1 and 65535")
        endpoint = f"{schema}://{match['host']}" + (f":{match['port']}" if match["port"] else "")
        rest = rest[match.end() :]
    elif _SCHEME_START.match(rest):
        raise ValueError("an endpoint must be schema://hostname[:port] followed by /bucket/path")
    if not rest.startswith("/"):
        raise ValueError("no /bucket/path")
    bucket, _slash, path = rest[1:].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"{bucket!r} is not a bucket name")
    path = urllib.parse.unquote(path).rstrip("/")
    if not path:
        raise ValueError("no path after the bucket (the store needs a key prefix of its own)")
    if any(part in ("", ".", "..") for part in path.split("/")) or any(ord(c) < 32 or c in "\\\x7f" for c in path):
        raise ValueError(f"the path {path!r} has an empty, '.' or '..' component or a control character")
    return endpoint, bucket, path


def _split(rest: str):
    """(credentials or None, endpoint, bucket, path).  Credentials end at the first '@', and are
    taken only where what follows them is a valid place: ``s3:/bucket/a@b`` has none, and a
    secret may start with ``//`` (``s3:KEY://ab@/bucket/path``).  Raises ValueError."""
    credentials, at, after = rest.partition("@")
    if not at or rest.startswith("/"):
        return (None, *_place(rest))
    try:
        return (credentials, *_place(after))
    except ValueError as with_credentials:
        try:
            return (None, *_place(rest))
        except ValueError:
            raise with_credentials from None


def parse(url: str) -> Location:
    """Parse an ``s3:`` or ``b2:`` URL; raise BackendURLInvalid saying what is wrong."""
    provider, colon, rest = url.partition(":")
    if provider not in ("s3", "b2") or not colon:
        raise _invalid(url, "it must start with s3: or b2:")
    try:
        credentials, endpoint, bucket, path = _split(rest)
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    profile = key_id = secret = None
    if credentials is not None:
        key, colon, value = credentials.partition(":")
        if not key:
            raise _invalid(url, "an empty profile or access key id before '@'")
        if colon:
            if not value:
                raise _invalid(url, "an empty secret access key")
            key_id, secret = urllib.parse.unquote(key), urllib.parse.unquote(value)
        else:
            profile = key  # not percent-decoded, as the PyPI release reads it
    return Location(provider, bucket, path, profile, key_id, secret, endpoint)


def redact(url: str) -> str:
    """*url* with the secret access key replaced by ``***`` (the key id and a profile name stay:
    they say which credential was used, and grant nothing).  In a URL that does not parse,
    everything before the last '@' is hidden: a secret with an unencoded '@' must not leak."""
    provider, colon, rest = url.partition(":")
    try:
        credentials = _split(rest)[0]
    except ValueError:
        head, at, after = rest.rpartition("@")
        if not at or ":" not in head:
            return url
        return f"{provider}{colon}{head.partition(':')[0]}:{REDACTED}@{after}"
    if credentials is None or ":" not in credentials:
        return url
    key = credentials.partition(":")[0]
    return f"{provider}{colon}{key}:{REDACTED}@{rest[len(credentials) + 1:]}"
