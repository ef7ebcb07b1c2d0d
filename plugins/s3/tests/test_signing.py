"""SigV4: our Signer and botocore's S3SigV4Auth (the reference every AWS SDK for Python uses)
give the same Authorization header for the same request, credentials, region and time.

Two levels: the Signer alone, with the time frozen in both, for hand-built requests; and every
request the backend really sends (through a recording proxy in front of moto), re-signed by
botocore from what went over the wire: that is what a real server checks and moto does not.
Paths and queries are given to botocore decoded and encoded by botocore itself, so an encoding
of ours that differs from the SDK's shows up as a different signature.
"""

import datetime
import hashlib
import itertools
import types
import urllib.parse
import uuid

import botocore.auth
import pytest
from borgstore_backend_s3 import _sigv4, s3_backend_from_url
from borgstore_backend_s3._sigv4 import EMPTY_SHA256, UNSIGNED, Signer, canonical_query, quote_path
from borgstore_backend_s3.testserver import FaultProxy
from botocore.auth import S3SigV4Auth  # boto3 is a test dependency of the plugin: never skipped
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from .conftest import BUCKET

KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEBY//////////wEaDNoToken+with/slashes=="
T = 1790000000  # 2026-09-21T14:13:20Z
HOST = "127.0.0.1:9000"
# every character a backend name may hold but '/': printable ASCII without backslash
PRINTABLE = "".join(chr(c) for c in range(32, 127) if chr(c) not in "\\/")
_count = itertools.count()


@pytest.fixture
def frozen(monkeypatch):
    """Freeze the clock of both signers at *T* (or what ``frozen(seconds)`` sets)."""
    now = [T]
    fake_time = types.SimpleNamespace(time=lambda: now[0], gmtime=_sigv4.time.gmtime, strftime=_sigv4.time.strftime)
    monkeypatch.setattr(_sigv4, "time", fake_time)
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: datetime.datetime.fromtimestamp(now[0], datetime.timezone.utc)
    )

    def move_to(seconds):
        now[0] = seconds

    return move_to


def reference(method, url, path, params, headers, body=b"", token=None, region="eu-west-1", context=None, key=None):
    """botocore's headers for the request: *path* decoded (botocore encodes it as it would an S3
    key), *params* a dict of decoded query parameters."""
    request = AWSRequest(
        method=method, url=url + percent_encode(path, safe="/~"), params=params, headers=dict(headers), data=body
    )
    request.context.update(context or {})
    S3SigV4Auth(Credentials(key or KEY_ID, SECRET, token), "s3", region).add_auth(request)
    return request.headers


def ours(method, path, params, headers, payload, token=None, region="eu-west-1", host=HOST, signer=None):
    signer = signer or Signer(KEY_ID, SECRET, token, region)
    query = canonical_query(params) if params else ""
    return signer.sign(method, quote_path(path), query, host, dict(headers), payload)


def assert_same(mine, theirs):
    assert mine["Authorization"] == theirs["Authorization"]
    assert mine["x-amz-date"] == theirs["X-Amz-Date"]
    assert mine["x-amz-content-sha256"] == theirs["X-Amz-Content-SHA256"]
    assert mine.get("x-amz-security-token") == theirs.get("X-Amz-Security-Token")


CASES = [
    # method, path, query, headers, body
    ("GET", "/bucket", {"list-type": "2", "prefix": "store/data/", "delimiter": "/", "max-keys": "1000"}, {}, b""),
    ("GET", "/bucket", {"list-type": "2", "prefix": "st re/", "continuation-token": "1/a+b=c d~*!'()"}, {}, b""),
    ("GET", "/bucket", {"uploads": "", "prefix": "store/"}, {}, b""),
    ("GET", "/bucket/store/data/0123abcd", None, {"range": "bytes=10-19"}, b""),
    ("HEAD", "/bucket/store/", None, {}, b""),
    ("DELETE", "/bucket/store/data/0123abcd.del", None, {}, b""),
    ("PUT", "/bucket/store/data/0123abcd", None, {"content-md5": "XUFAKrxLKna5cZ2REBfFkg=="}, b"hello"),
    ("PUT", "/bucket/store/config/x", None, {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "if-none-match": "*"}, b""),
    ("PUT", "/bucket/store/a.del", None, {"x-amz-copy-source": "/bucket/store/a%20b%2Bc"}, b""),
    ("PUT", "/bucket/store/big", {"partNumber": "3", "uploadId": "2~x/y+z=="}, {"content-md5": "AAA="}, b"\0" * 100),
    ("POST", "/bucket/store/big", {"uploads": ""}, {}, b""),
    (
        "POST",
        "/bucket",
        {"delete": ""},
        {"content-md5": "JDrWYhHtMF65X8b9v478Dw=="},
        b"<Delete><Quiet>true</Quiet></Delete>",
    ),
]


@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize("method, path, query, headers, body", CASES)
def test_signer_matches_botocore_over_http(frozen, method, path, query, headers, body, token):
    """Each kind of request the backend makes signs over HTTP (payload hashed) as botocore does, token or not."""
    # over plain HTTP the payload is signed: the body's SHA-256 (botocore computes its own)
    payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    mine = ours(method, path, query, headers, payload, token=token)
    theirs = reference(method, f"http://{HOST}", path, query, headers, body, token=token)
    assert_same(mine, theirs)


@pytest.mark.parametrize(
    "name",
    [
        PRINTABLE,
        "a+b=c!d~e*f(g)h'i j",
        "%2F%25 already-looking-encoded",
        "?query#fragment&x=y",
        "0..del",
        "caf\u00e9 \u6587\u5b57",  # names may be any Unicode too; UTF-8 encoded
    ],
    ids=["all-printable", "sub-delims", "percent", "query-chars", "dots", "unicode"],
)
def test_keys_with_characters_needing_encoding(frozen, name):
    """Names with any printable or Unicode character, in the path or x-amz-copy-source, sign as botocore does."""
    path = f"/bucket/store/data/{name}"
    body = b"value"
    mine = ours("PUT", path, None, {"content-md5": "x=="}, hashlib.sha256(body).hexdigest())
    assert_same(mine, reference("PUT", f"http://{HOST}", path, None, {"content-md5": "x=="}, body))
    copy = {"x-amz-copy-source": quote_path(path)}
    mine = ours("PUT", f"{path}.del", None, copy, EMPTY_SHA256, token=TOKEN)
    assert_same(mine, reference("PUT", f"http://{HOST}", f"{path}.del", None, copy, token=TOKEN))


def test_unsigned_payload_over_tls_matches_botocore(frozen):
    """An UNSIGNED-PAYLOAD PUT over HTTPS signs exactly as botocore signs a streamed upload there."""
    # botocore sends UNSIGNED-PAYLOAD over HTTPS for a streamed body that carries Content-MD5
    headers = {"content-md5": "XUFAKrxLKna5cZ2REBfFkg==", "if-none-match": "*"}
    host = "bucket.s3.eu-west-1.amazonaws.com"
    mine = ours("PUT", "/store/data/0123", None, headers, UNSIGNED, host=host, token=TOKEN)
    theirs = reference(
        "PUT",
        f"https://{host}",
        "/store/data/0123",
        None,
        headers,
        b"hello",
        token=TOKEN,
        context={"has_streaming_input": True},
    )
    assert theirs["X-Amz-Content-SHA256"] == UNSIGNED
    assert_same(mine, theirs)


def test_signing_key_follows_the_day_and_the_region(frozen):
    """A reused Signer derives a new signing key when the UTC day or the region changes, as botocore would."""
    signer = Signer(KEY_ID, SECRET, None, "eu-west-1")
    path, headers = "/bucket/store/x", {"range": "bytes=0-0"}
    for seconds, region in [
        (T, "eu-west-1"),
        (T + 86400, "eu-west-1"),
        (T + 86401, "us-west-2"),
        (T + 3 * 86400, "us-west-2"),
    ]:
        frozen(seconds)
        if region != signer.region:
            signer.set_region(region)
        mine = ours("GET", path, None, headers, EMPTY_SHA256, region=region, signer=signer)
        theirs = reference("GET", f"http://{HOST}", path, None, headers, region=region)
        assert_same(mine, theirs)
        assert (
            f"/{datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc):%Y%m%d}/{region}/"
            in mine["Authorization"]
        )


def test_aws_documentation_example(frozen):
    """The GET Object example of AWS's SigV4 documentation for S3 ("Signature Calculations for
    the Authorization Header: Transferring Payload in a Single Chunk"), with its published
    signature: botocore is the reference, but not the authority."""
    frozen(datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc).timestamp())
    signer = Signer("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, "us-east-1")
    signed = signer.sign("GET", "/test.txt", "", "examplebucket.s3.amazonaws.com", {"range": "bytes=0-9"}, EMPTY_SHA256)
    assert signed["x-amz-date"] == "20130524T000000Z"
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


# --- what the backend really sends ---


def resign_with_botocore(request, port: int, token, key_id):
    """The Authorization header botocore computes for a captured request."""
    stamp = request.headers["x-amz-date"]
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    path, _, query = request.target.partition("?")
    params = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        params[urllib.parse.unquote(name)] = urllib.parse.unquote(value)
    signed = signed_header_names(request)
    headers = {name: request.headers[name] for name in signed if name not in _BOTOCORE_ADDS}
    region = request.headers["authorization"].split("/")[2]
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: when
    try:
        theirs = reference(
            request.method,
            f"http://127.0.0.1:{port}",
            urllib.parse.unquote(path),
            params or None,
            headers,
            request.body,
            token=token,
            region=region,
            key=key_id,
        )
    finally:
        botocore.auth.get_current_datetime = original
    return theirs


_BOTOCORE_ADDS = ("host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token")


def signed_header_names(request) -> list:
    return request.headers["authorization"].partition("SignedHeaders=")[2].partition(",")[0].split(";")


@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
def test_every_request_the_backend_sends_verifies_with_botocore(moto, monkeypatch, token):
    """Every request the backend sends signs all its x-amz-* and Content-MD5 headers and verifies with botocore."""
    proxy = FaultProxy(moto.port)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        if token:
            monkeypatch.setenv("AWS_SESSION_TOKEN", token)
        url = f"s3:{proxy.endpoint}/{BUCKET}/sig{next(_count)}-{uuid.uuid4().hex[:6]} a+b"
        exercise(s3_backend_from_url(url, multipart_threshold=5 * 2**20, part_size=5 * 2**20))
        assert len(proxy.requests) > 20
        for request in proxy.requests:
            signed = signed_header_names(request)
            # AWS wants every x-amz-* header (and Content-MD5) signed, or refuses the request
            sent = {name for name in request.headers if name.startswith("x-amz-") or name == "content-md5"}
            assert sent <= set(signed), (request, sent - set(signed))
            assert request.headers["host"] == f"127.0.0.1:{proxy.port}"
            theirs = resign_with_botocore(request, proxy.port, token, KEY_ID)
            assert request.headers["authorization"] == theirs["Authorization"], request
            assert request.headers["x-amz-content-sha256"] == theirs["X-Amz-Content-SHA256"], request
    finally:
        proxy.close()


def exercise(backend):
    """One of each request the backend makes, with names that need encoding."""
    names = [PRINTABLE.replace(" ", "_")[:40], "a b+c=d!e~f*g(h)'i", "dir/sub/x;y,z:@$&", "caf\u00e9"]
    backend.create()
    backend.open()
    for i, name in enumerate(names):
        backend.store(name, b"v%d" % i)
    backend.store_new("new", b"n")
    assert backend.load(names[1], offset=1, size=1) == b"1"
    assert backend.info(names[2]).size == 2
    assert sorted(i.name for i in backend.list("")) == sorted({"dir", "new", names[0], names[1], names[3]})
    assert len(list(backend.list_tree(""))) == len(names) + 1
    backend.move(names[1], names[1] + ".del")
    backend.delete(names[1] + ".del")
    backend.store("big", bytes(5 * 2**20 + 1))  # two parts: uploads=, partNumber=&uploadId=, uploadId=
    assert backend.info("big").size == 5 * 2**20 + 1
    list(backend.list_temp(""))
    backend.close()
    backend.destroy()
