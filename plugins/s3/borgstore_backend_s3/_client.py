"""S3 requests on the core's HTTP client: addressing, signing, and errors mapped onto borgstore's.

One object per store; thread safe (the HTTP client pools one connection per concurrent request).
It never retries a request that may have reached the server: that is the ``retry``
middleware's decision, made with the ``maybe_applied`` flag set here.  One exception: a request
sent on a kept-alive connection that the server had closed while it was idle never reached it,
and goes again at once on a new connection (what every HTTP client does with a stale pool).
"""

import hashlib
import re
import ssl
import xml.etree.ElementTree as ET
from typing import Optional

from borgstore.backends.errors import (
    BackendDoesNotExist,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    PermissionDenied,
)
from borgstore.backends.http import ConnectionLost, HttpClient, Response
from borgstore.backends.toolkit import error_for_http_status, lost_reply

from ._sigv4 import EMPTY_SHA256, UNSIGNED, Signer, canonical_query, quote_path

_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_MESSAGE_LIMIT = 300


def _text(root, name: str) -> str:
    for element in root:
        if element.tag.rpartition("}")[2] == name:
            return element.text or ""
    return ""


def parse_xml(data: bytes, what: str):
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise BackendError(f"{what}: the server's answer is not XML ({exc}): {data[:100]!r}") from None


def error_code(data: bytes) -> tuple:
    """(Code, Message) of an S3 error document, ("", "") if there is none."""
    if not data.lstrip().startswith(b"<"):
        return "", ""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return "", ""
    if root.tag.rpartition("}")[2] != "Error":
        return "", ""
    return _text(root, "Code"), _text(root, "Message")


class S3Client:
    """Signed requests to one bucket.

    :param endpoint: ``http(s)://host[:port]`` (path-style requests, as MinIO, Ceph, Garage and
        B2 want), or None for AWS (virtual-hosted requests where the bucket name allows it).
    """

    def __init__(self, endpoint: Optional[str], bucket: str, signer: Signer, *, timeout: float, pool_size: int = 8):
        self.bucket = bucket
        self.signer = signer
        self._endpoint = endpoint
        self._timeout = timeout
        self._pool_size = pool_size
        self.requests = 0  # sent, for the benchmark's requests-per-operation table
        self._connect()

    def _connect(self) -> None:
        if self._endpoint is None:
            region = self.signer.region
            if _DNS_BUCKET.fullmatch(self.bucket):
                host, self._base = f"{self.bucket}.s3.{region}.amazonaws.com", ""
            else:
                host, self._base = f"s3.{region}.amazonaws.com", f"/{quote_path(self.bucket)}"
            scheme, port = "https", 443
        else:
            scheme, _, hostport = self._endpoint.partition("://")
            host, _, port_text = hostport.partition(":")
            port = int(port_text) if port_text else (443 if scheme == "https" else 80)
            self._base = f"/{quote_path(self.bucket)}"
        self.tls = scheme == "https"
        self.http = HttpClient(
            host,
            port,
            tls=ssl.create_default_context() if self.tls else None,
            read_timeout=self._timeout,
            connect_timeout=min(self._timeout, 10.0),
            pool_size=self._pool_size,
        )

    def __repr__(self):
        return f"<S3Client {self.http!r} bucket {self.bucket!r}>"

    def set_region(self, region: str) -> None:
        """Sign for *region* from now on (and, on AWS, talk to its endpoint)."""
        self.signer.set_region(region)
        if self._endpoint is None:
            self.http.close()
            self._connect()

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        key: Optional[str],
        *,
        query=None,
        headers: Optional[dict] = None,
        body=b"",
        mutation: bool,
        what: str,
    ) -> Response:
        """Send one signed request for *key* (a full object key; None: the bucket) and return
        the response, whatever its status.  A lost connection raises BackendConnectionError
        (or BackendTimeout) whose ``maybe_applied`` is *mutation*; *what* says what was being
        done, for messages."""
        path = f"{self._base}/{quote_path(key)}" if key is not None else (self._base or "/")
        query_text = canonical_query(query) if query else ""
        target = f"{path}?{query_text}" if query_text else path
        headers = dict(headers) if headers else {}
        if not body:
            payload_hash = EMPTY_SHA256
        elif self.tls:
            payload_hash = UNSIGNED
        else:
            payload_hash = hashlib.sha256(body).hexdigest()
        for attempt in (1, 2):
            signed = self.signer.sign(method, path, query_text, self.http.host_header, dict(headers), payload_hash)
            self.requests += 1
            try:
                return self.http.request(method, target, headers=signed, body=body)
            except ConnectionLost as exc:
                if attempt == 1 and exc.reused and not exc.answered:
                    continue  # an idle connection the server had closed: the request never arrived
                if exc.timed_out:
                    raise BackendTimeout(f"{what}: {exc}", maybe_applied=mutation) from None
                raise lost_reply(what, mutation=mutation, cause=exc) from None
        raise AssertionError("unreachable")

    def error(self, response: Response, what: str) -> BackendError:
        """The borgstore error for a failed S3 *response* to the request doing *what*."""
        code, message = error_code(response.data)
        detail = f"{code}: {message}"[:_MESSAGE_LIMIT] if code else response.reason
        text = f"{what}: {detail}"
        status = response.status
        if code == "NoSuchBucket":
            return BackendDoesNotExist(f"{what}: the bucket {self.bucket!r} does not exist")
        region = response.headers.get("x-amz-bucket-region")
        if status in (301, 307) or code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
            where = f" (the bucket is in {region}: give the region option)" if region else ""
            return BackendError(f"{text}{where} [HTTP {status}]")
        if code in ("RequestTimeout", "RequestTimeTooSkewed") and status == 400:
            cls = BackendTimeout if code == "RequestTimeout" else BackendError
            return cls(f"{text} [HTTP {status}]")
        if code in ("ConditionalRequestConflict", "OperationAborted"):
            # another request on the same key is in progress: it will not be the case later
            return BackendUnavailable(f"{text} [HTTP {status}]")
        if code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestLimitExceeded", "TooManyRequests"):
            return BackendUnavailable(f"{text} [HTTP {status}]")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
            return PermissionDenied(f"{text} [HTTP {status}]")
        return error_for_http_status(status, text)
