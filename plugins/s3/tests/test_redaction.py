"""The secret access key of an s3: or b2: URL is never shown: not by borgstore.redact_url(), not in
a repr, not in the message, traceback or log of an error, not in `python -m borgstore check`'s
output.  What is shown stays: the key id (it says which key was used and grants nothing), the
endpoint, the bucket and the path."""

import logging
import socket
import subprocess
import sys
import traceback
import urllib.parse
import uuid

import pytest
from borgstore_backend_s3 import s3_backend_from_url
from borgstore_backend_s3._credentials import resolve
from borgstore_backend_s3._url import parse

from borgstore import Store, redact_url
from borgstore.backends.errors import BackendConnectionError, BackendDoesNotExist, BackendURLInvalid

from .conftest import BUCKET

KEY_ID = "AKIAREDACTIONTEST"
SECRET = "Red/act@me:now%ok+Zz9"
ENCODED = urllib.parse.quote(SECRET, safe="")
CONFIG = {"data/": {"levels": [0]}}


def shows_no_secret(text: str) -> bool:
    """Neither the secret, nor its encoded form, nor a recognisable piece of either is in *text*."""
    pieces = [SECRET, ENCODED, "Red/act", "act@me", "me:now", "now%ok", "ok+Zz9", "Red%2Fact", "act%40me", "me%3Anow"]
    return not any(piece in text for piece in pieces)


def everything_about(exc: BaseException) -> str:
    """An exception as anyone may see it: str, repr and the whole traceback with its causes."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- redact_url ---

URLS = [
    # url with the secret, what must still be shown
    (f"s3:{KEY_ID}:{ENCODED}@/bucket/path", ["s3:", KEY_ID, "/bucket/path"]),
    (f"s3:{KEY_ID}:{ENCODED}@http://127.0.0.1:9000/bucket/a/b", [KEY_ID, "http://127.0.0.1:9000", "/bucket/a/b"]),
    (
        f"s3:{KEY_ID}:{ENCODED}@https://minio.example/my.bucket/p%20q/",
        [KEY_ID, "https://minio.example", "/my.bucket/p%20q/"],
    ),
    (
        f"b2:{KEY_ID}:{ENCODED}@https://s3.us-west-004.backblazeb2.com/b2-bucket/repo",
        ["b2:", KEY_ID, "https://s3.us-west-004.backblazeb2.com", "/b2-bucket/repo"],
    ),
    # the PyPI 0.7 form takes a secret with '/' and ':' unencoded
    ("s3:AKID:Red/act:me+now@http://h:9000/bucket/path", ["AKID", "http://h:9000", "/bucket/path"]),
    # an invalid URL is redacted too: error messages show it
    (f"s3:{KEY_ID}:{ENCODED}@ftp://h/bucket/path", [KEY_ID, "ftp://h/bucket/path"]),
    (f"s3:{KEY_ID}:{ENCODED}@http://h/x/", [KEY_ID, "http://h/x/"]),
]


@pytest.mark.parametrize("url, kept", URLS)
def test_redact_url_hides_the_secret_and_keeps_the_rest(url, kept):
    """redact_url() shows *** for the secret, keeps key id, endpoint, bucket and path, and is idempotent."""
    shown = redact_url(url)
    assert shows_no_secret(shown) and "Red/act:me+now" not in shown
    assert ":***@" in shown
    for part in kept:
        assert part in shown
    assert redact_url(shown) == shown


@pytest.mark.parametrize(
    "url",
    [
        "s3:/bucket/path",
        "s3:profile@/bucket/path",
        "b2:p@https://s3.eu-central-003.backblazeb2.com/b/path",
        "s3:http://h:1/bucket/a:b@c",
    ],
)
def test_redact_url_leaves_urls_without_a_secret_alone(url):
    """redact_url() returns a URL without a secret unchanged (a profile, or ':' and '@' in the path)."""
    assert redact_url(url) == url


@pytest.mark.parametrize(
    "url, secret",
    [
        ("s3:AKID://Red+act@http://h:9000/bucket/path", "//Red+act"),  # an AWS secret may start with '//'
        ("s3:AKID:Red@actTail@http://h:9000/bucket/path", "actTail"),  # an unencoded '@' (invalid)
    ],
)
def test_redact_url_hides_secrets_the_form_did_not_foresee(url, secret):
    """redact_url() also hides a secret that starts with '//' and one holding an unencoded '@'."""
    assert secret not in redact_url(url)


def test_parsed_and_resolved_objects_do_not_show_the_secret():
    """Location, Settings and Credentials hold the decoded secret, but their repr and str show only the key id."""
    url = f"s3:{KEY_ID}:{ENCODED}@http://127.0.0.1:9/bucket/path"
    settings = resolve(parse(url))
    assert settings.credentials.secret_access_key == SECRET  # it is there, just not shown
    for text in (repr(parse(url)), repr(settings), repr(settings.credentials), str(settings)):
        assert shows_no_secret(text) and KEY_ID in text


# --- repr ---


def test_repr_of_backend_store_and_client(moto):
    """repr/str of the backend, Store, client and signer show key id, endpoint and path, never the secret."""
    url = f"s3:{KEY_ID}:{ENCODED}@{moto.endpoint}/{BUCKET}/redact-{uuid.uuid4().hex[:8]}"
    backend = s3_backend_from_url(url)
    store = Store(url, config=CONFIG)
    for text in (repr(backend), str(backend), repr(store), str(store)):
        assert shows_no_secret(text)
        assert KEY_ID in text and f"/{BUCKET}/redact-" in text and moto.endpoint in text
    store.create()
    with store:
        store.store("data/x", b"1")
        assert shows_no_secret(repr(store))
    client = backend._connect()
    for text in (repr(client), repr(client.signer), repr(backend)):
        assert shows_no_secret(text)
    assert KEY_ID in repr(client.signer)


# --- errors ---


def test_unreachable_endpoint_errors_and_logs_show_no_secret(caplog):
    """Connection errors (str, repr, traceback) and retry logs name the key id and host but never the secret."""
    url = f"s3:{KEY_ID}:{ENCODED}@http://127.0.0.1:{closed_port()}/{BUCKET}/path"
    backend = s3_backend_from_url(url)
    for operation in (backend.open, backend.create, backend.destroy):
        with pytest.raises(BackendConnectionError) as raised:
            operation()
        text = everything_about(raised.value)
        assert shows_no_secret(text), text
        assert KEY_ID in str(raised.value) and "127.0.0.1" in str(raised.value)
    # through the retry middleware, which logs each try
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendConnectionError) as raised:
        Store(url, config=CONFIG).open()
    assert shows_no_secret(everything_about(raised.value))
    assert caplog.records, "the retry middleware logged nothing"
    assert shows_no_secret(caplog.text), caplog.text


def test_missing_store_and_missing_bucket_errors_show_no_secret(moto):
    """BackendDoesNotExist for a missing store or bucket shows no secret in its message, repr or traceback."""
    missing = f"s3:{KEY_ID}:{ENCODED}@{moto.endpoint}/{BUCKET}/never-created-{uuid.uuid4().hex[:8]}"
    no_bucket = f"s3:{KEY_ID}:{ENCODED}@{moto.endpoint}/no-such-bucket-{uuid.uuid4().hex[:8]}/path"
    for url in (missing, no_bucket):
        for operation in (
            s3_backend_from_url(url).open,
            s3_backend_from_url(url).destroy,
            Store(url, config=CONFIG).open,
        ):
            with pytest.raises(BackendDoesNotExist) as raised:
                operation()
            text = everything_about(raised.value)
            assert shows_no_secret(text), text
            assert KEY_ID in str(raised.value) or "no-such-bucket" in str(raised.value)


def test_invalid_url_errors_show_no_secret():
    """Store() refusing an invalid URL shows no secret in the error, its repr or its traceback."""
    for url in (f"s3:{KEY_ID}:{ENCODED}@ftp://h/bucket/path", f"s3:{KEY_ID}:{ENCODED}@http://h/bucket/a/../b"):
        with pytest.raises(BackendURLInvalid) as raised:
            Store(url, config=CONFIG)
        assert shows_no_secret(everything_about(raised.value))


# --- python -m borgstore check ---


def check(url: str, *rules: str) -> subprocess.CompletedProcess:
    only = [arg for rule in rules for arg in ("--only", rule)]
    return subprocess.run(
        [sys.executable, "-m", "borgstore", "check", url, *only],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_command_output_shows_no_secret(moto):
    """`python -m borgstore check` shows the URL as KEYID:***@endpoint/bucket/path and never the secret."""
    url = f"s3:{KEY_ID}:{ENCODED}@{moto.endpoint}/{BUCKET}/check-{uuid.uuid4().hex[:8]}"
    result = check(url, "open-missing")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout
    assert f"{KEY_ID}:***@{moto.endpoint}/{BUCKET}/check-" in result.stdout
    assert shows_no_secret(result.stdout + result.stderr)


def test_check_command_failing_against_a_closed_port_shows_no_secret():
    """A check that cannot connect reports FAIL with the cause, exits 1, and shows no secret."""
    url = f"s3:{KEY_ID}:{ENCODED}@http://127.0.0.1:{closed_port()}/{BUCKET}/path"
    result = check(url, "open-missing")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "cannot connect" in result.stdout
    assert shows_no_secret(result.stdout + result.stderr)


def test_check_command_with_an_invalid_url_shows_no_secret():
    """A check given an invalid URL exits non-zero naming the fault, and shows no secret."""
    result = check(f"s3:{KEY_ID}:{ENCODED}@http://h:9000/b/path", "open-missing")
    assert result.returncode != 0
    assert "'b' is not a bucket name" in result.stdout + result.stderr
    assert shows_no_secret(result.stdout + result.stderr)
