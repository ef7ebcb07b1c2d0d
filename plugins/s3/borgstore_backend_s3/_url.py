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


def _split_credentials(rest: str):
    """(credentials or None, the rest after them).  Credentials end at the first '@', and are
    present only if the rest does not start right away with the endpoint or the bucket path."""
    if rest.startswith("/") or _SCHEME_START.match(rest):
        return None, rest
    credentials, at, after = rest.partition("@")
    if not at:
        return None, rest
    return credentials, after


def _invalid(url: str, why: str) -> BackendURLInvalid:
    return BackendURLInvalid(f"invalid {url.partition(':')[0]} URL {redact(url)!r}: {why}; the form is {FORM}")


def parse(url: str) -> Location:
    """Parse an ``s3:`` or ``b2:`` URL; raise BackendURLInvalid saying what is wrong."""
    provider, colon, rest = url.partition(":")
    if provider not in ("s3", "b2") or not colon:
        raise _invalid(url, "it must start with s3: or b2:")
    credentials, rest = _split_credentials(rest)
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
            profile = urllib.parse.unquote(key)
    endpoint = None
    match = _ENDPOINT.match(rest)
    if match:
        schema = match["schema"].lower()
        if schema not in ("http", "https"):
            raise _invalid(url, f"the endpoint's scheme must be http or https, not {schema!r}")
        endpoint = f"{schema}://{match['host']}" + (f":{match['port']}" if match["port"] else "")
        rest = rest[match.end() :]
    elif _SCHEME_START.match(rest):
        raise _invalid(url, "an endpoint must be schema://hostname[:port] followed by /bucket/path")
    if not rest.startswith("/"):
        raise _invalid(url, "no /bucket/path")
    bucket, slash, path = rest[1:].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise _invalid(url, f"{bucket!r} is not a bucket name")
    path = urllib.parse.unquote(path).strip("/")
    if not path:
        raise _invalid(url, "no path after the bucket (the store needs a key prefix of its own)")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or any(ord(c) < 32 or c in "\\\x7f" for c in path):
        raise _invalid(url, f"the path {path!r} has an empty, '.' or '..' component or a control character")
    return Location(provider, bucket, path, profile, key_id, secret, endpoint)


def redact(url: str) -> str:
    """*url* with the secret access key replaced by ``***`` (the key id and a profile name stay:
    they say which credential was used, and grant nothing)."""
    provider, colon, rest = url.partition(":")
    credentials, after = _split_credentials(rest)
    if credentials is None or ":" not in credentials:
        return url
    key = credentials.partition(":")[0]
    return f"{provider}{colon}{key}:{REDACTED}@{after}"
