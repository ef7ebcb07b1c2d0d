"""AWS Signature Version 4 for S3 requests, written for the hot path.

Per request it costs one SHA-256 of the canonical request and two HMACs (the signing key is kept
per day): a few microseconds.  The payload hash is ``UNSIGNED-PAYLOAD`` over TLS (the body's
integrity is the Content-MD5 the server checks) and the body's SHA-256 over plain HTTP.
"""

import hashlib
import hmac
import time
import urllib.parse
from typing import Optional

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
_SAFE = "-_.~"


def quote(text: str, safe: str = _SAFE) -> str:
    """Percent-encode as SigV4 wants: everything but letters, digits and ``-_.~`` (and *safe*)."""
    return urllib.parse.quote(text, safe=safe)


def quote_path(path: str) -> str:
    """A request path, slashes kept; S3 paths are encoded once, and signed as sent."""
    return urllib.parse.quote(path, safe="/-_.~")


def canonical_query(query) -> str:
    """``a=1&b=2`` from ``{name: value}`` (or pairs), sorted and encoded as SigV4 wants; the
    same string is sent, so what is signed is what the server sees."""
    items = query.items() if isinstance(query, dict) else query
    return "&".join(f"{quote(name)}={quote(str(value))}" for name, value in sorted(items))


class Signer:
    """Signs requests for one access key in one region."""

    def __init__(self, access_key_id: str, secret_access_key: str, session_token, region: str, service: str = "s3"):
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self.session_token = session_token
        self.region = region
        self._service = service
        # the signing key and its scope, made for self._day (None: make them at the next request)
        self._day: Optional[str] = None
        self._key = b""
        self._scope = ""
        # the x-amz-date of self._second (None: make it at the next request)
        self._second: Optional[int] = None
        self._stamp = ""

    def __repr__(self):
        return f"<Signer {self.access_key_id} {self.region}>"  # never the secret

    def set_region(self, region: str) -> None:
        self.region = region
        self._day = None

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = hmac.digest(f"AWS4{self._secret}".encode(), day.encode(), "sha256")
            for part in (self.region, self._service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._key, self._day = key, day
            self._scope = f"{day}/{self.region}/{self._service}/aws4_request"
        return self._key

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._second = second
        return self._stamp

    def sign(self, method: str, path: str, query: str, host: str, headers: dict, payload_hash: str) -> dict:
        """Add the date, payload hash, token and Authorization headers to *headers* (names in
        lower case) for a request to *path* (encoded as sent) with *query* (canonical_query's
        string); return *headers*."""
        stamp = self._now()
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = payload_hash
        if self.session_token:
            headers["x-amz-security-token"] = self.session_token
        key = self._signing_key(stamp[:8])
        signed = sorted([*headers, "host"])
        values = {**headers, "host": host}
        names = ";".join(signed)
        canonical = "\n".join(
            (
                method,
                path,
                query,
                "".join(f"{name}:{str(values[name]).strip()}\n" for name in signed),
                names,
                payload_hash,
            )
        )
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{self._scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key_id}/{self._scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return headers
