"""s3: and b2: URLs: the PyPI 0.7 form (docs/compatibility.md, URLs) parsed exactly, bad ones
refused with a message naming the fault and never the secret; the factory does no I/O; backend
options are checked by name and by value."""

import re
import socket
import urllib.parse

import pytest
from borgstore_backend_s3 import S3Backend, s3_backend_from_url
from borgstore_backend_s3._url import parse

from borgstore import Store, get_backend
from borgstore.backends.errors import BackendURLInvalid

# an AWS-style secret with every character the form says must be (or may need to be) encoded
SECRET = "wJa/lrX@Ut:nF%EMI+K7/bPx"
ENCODED = urllib.parse.quote(SECRET, safe="")
CONFIG = {"data/": {"levels": [0]}}
MiB = 1024 * 1024


def secret_free(text: str) -> bool:
    """No form of SECRET, nor a long piece of it, is in *text*."""
    pieces = [SECRET, ENCODED, "wJa/lrX", "Ut:nF", "EMI+K7", "lrX%40Ut", "Ut%3AnF"]
    return not any(piece in text for piece in pieces)


# --- the valid forms ---

VALID = [
    # url, provider, bucket, path, profile, key id, secret, endpoint
    ("s3:/bucket/path", "s3", "bucket", "path", None, None, None, None),
    ("b2:/bucket/path", "b2", "bucket", "path", None, None, None, None),
    ("s3:myprofile@/bucket/path", "s3", "bucket", "path", "myprofile", None, None, None),
    ("b2:myprofile@/bucket/path", "b2", "bucket", "path", "myprofile", None, None, None),
    ("s3:AKID:plain@/bucket/path", "s3", "bucket", "path", None, "AKID", "plain", None),
    (f"s3:AKID:{ENCODED}@/bucket/path", "s3", "bucket", "path", None, "AKID", SECRET, None),
    (f"s3:AK%2FID:{ENCODED}@/bucket/path", "s3", "bucket", "path", None, "AK/ID", SECRET, None),
    ("s3:http://minio.local/bucket/path", "s3", "bucket", "path", None, None, None, "http://minio.local"),
    ("s3:https://minio.local:9000/bucket/path", "s3", "bucket", "path", None, None, None, "https://minio.local:9000"),
    ("s3:p@http://10.0.0.1:9000/bucket/path", "s3", "bucket", "path", "p", None, None, "http://10.0.0.1:9000"),
    (
        f"s3:AKID:{ENCODED}@https://s3.eu.example.com:8443/bucket/path",
        "s3",
        "bucket",
        "path",
        None,
        "AKID",
        SECRET,
        "https://s3.eu.example.com:8443",
    ),
    (
        f"b2:KEYID:{ENCODED}@https://s3.us-west-004.backblazeb2.com/my-bucket/borg/repo",
        "b2",
        "my-bucket",
        "borg/repo",
        None,
        "KEYID",
        SECRET,
        "https://s3.us-west-004.backblazeb2.com",
    ),
    ("s3:HTTPS://Host.Example/bucket/path", "s3", "bucket", "path", None, None, None, "https://Host.Example"),
    # bucket and path variants
    ("s3:/my.bucket-1/path", "s3", "my.bucket-1", "path", None, None, None, None),
    ("s3:/bucket/a/b/c", "s3", "bucket", "a/b/c", None, None, None, None),
    ("s3:/bucket/path/", "s3", "bucket", "path", None, None, None, None),
    ("s3:/bucket/a/b/", "s3", "bucket", "a/b", None, None, None, None),
    ("s3:/bucket/my%20repo", "s3", "bucket", "my repo", None, None, None, None),
    ("s3:/bucket/a%2Fb", "s3", "bucket", "a/b", None, None, None, None),
    ("s3:/bucket/r%C3%A9po%2Bx", "s3", "bucket", "r\u00e9po+x", None, None, None, None),
    ("s3:/bucket/1..2", "s3", "bucket", "1..2", None, None, None, None),
]


@pytest.mark.parametrize("url, provider, bucket, path, profile, key_id, secret, endpoint", VALID)
def test_valid_forms_parse_into_their_parts(url, provider, bucket, path, profile, key_id, secret, endpoint):
    """Each PyPI 0.7 form parses into provider, bucket, decoded path, profile or keys, and endpoint."""
    location = parse(url)
    assert (location.provider, location.bucket, location.path) == (provider, bucket, path)
    assert (location.profile, location.access_key_id, location.secret_access_key) == (profile, key_id, secret)
    assert location.endpoint == endpoint
    assert location.prefix == path + "/"


@pytest.mark.parametrize("url", [row[0] for row in VALID])
def test_every_valid_form_builds_a_backend_through_the_core(url):
    """The core's get_backend() turns every valid s3:/b2: URL into an S3Backend at the parsed location."""
    backend = get_backend(url)
    assert isinstance(backend, S3Backend)
    assert backend.location == parse(url)


def test_secret_with_unencoded_slash_and_plus_is_taken_as_written():
    """A secret with an unencoded '/' or '+' is taken as written, as the PyPI release reads it."""
    # AWS secrets are base64: '/' and '+' are common, and the PyPI 0.7 regex takes them unencoded
    location = parse("s3:AKID:ab/cd+ef/gh@http://h:9000/bucket/path")
    assert (location.access_key_id, location.secret_access_key) == ("AKID", "ab/cd+ef/gh")
    assert (location.endpoint, location.bucket, location.path) == ("http://h:9000", "bucket", "path")


def test_secret_starting_with_two_slashes_parses_as_pypi_does():
    """A secret starting with '//' is read as a secret, not as an endpoint, as the PyPI release reads it."""
    url = "s3:AKID://ab+cd@http://h:9000/bucket/path"
    location = parse(url)
    assert (location.access_key_id, location.secret_access_key) == ("AKID", "//ab+cd")
    assert location.endpoint == "http://h:9000"


def test_b2_and_s3_differ_in_conditional_create_only():
    """b2: builds the backend s3: does, but without store_new (conditional create) by default."""
    s3 = s3_backend_from_url(f"s3:AKID:{ENCODED}@http://h:9000/bucket/path")
    b2 = s3_backend_from_url(f"b2:AKID:{ENCODED}@http://h:9000/bucket/path")
    assert s3.capabilities.store_new and not b2.capabilities.store_new
    assert b2.location.provider == "b2" and b2.location.endpoint == s3.location.endpoint


# --- invalid URLs: BackendURLInvalid, what is wrong, never the secret ---

C = f"AKID:{ENCODED}@"  # credentials in front of most bad URLs, so a leak would show
INVALID = [
    # url, words the message must contain
    (f"s3:{C}http://h:9000/bucket", "no path"),
    (f"s3:{C}http://h:9000/bucket/", "no path"),
    ("s3:/bucket", "no path"),
    (f"s3:{C}http://h:9000", "endpoint must be"),
    (f"s3:{C}", "no /bucket/path"),
    ("b2:", "no /bucket/path"),
    (f"s3:{C}http://h:9000//path", "'' is not a bucket name"),
    (f"s3:{C}/ab/path", "'ab' is not a bucket name"),
    (f"s3:{C}/-bucket/path", "'-bucket' is not a bucket name"),
    (f"s3:{C}/bucket-/path", "'bucket-' is not a bucket name"),
    (f"s3:{C}/buc$ket/path", "not a bucket name"),
    (f"s3:{C}/buc%20ket/path", "not a bucket name"),
    (f"s3:{C}ftp://h/bucket/path", "scheme must be http or https, not 'ftp'"),
    (f"b2:{C}file://h/bucket/path", "scheme must be http or https, not 'file'"),
    (f"s3:{C}http://h:port/bucket/path", "endpoint must be"),
    (f"s3:{C}http:///bucket/path", "endpoint must be"),
    (f"s3::{ENCODED}@http://h/bucket/path", "empty profile or access key id"),
    ("s3:AKID:@http://h/bucket/path", "empty secret access key"),
    ("s3:@/bucket/path", "empty profile or access key id"),
    (f"s3:{C}/bucket/a/../b", "'..' component"),
    (f"s3:{C}/bucket/..", "'..' component"),
    (f"s3:{C}/bucket/a/%2E%2E/b", "'..' component"),
    (f"s3:{C}/bucket/./a", "'.'"),
    (f"s3:{C}/bucket/a//b", "empty"),
    (f"s3:{C}/bucket/a%2F%2Fb", "empty"),
    (f"s3:{C}/bucket/a%00b", "control character"),
    (f"s3:{C}/bucket/a%0Ab", "control character"),
    (f"s3:{C}/bucket/a\tb", "control character"),
    (f"s3:{C}/bucket/a%7Fb", "control character"),
    (f"s3:{C}/bucket/a%5Cb", "control character"),
    (f"gs:{C}/bucket/path", "must start with s3: or b2:"),
]


@pytest.mark.parametrize("url, words", INVALID)
def test_invalid_url_names_the_fault_and_hides_the_secret(url, words):
    """A malformed URL is BackendURLInvalid from the factory, naming what is wrong and never the secret."""
    with pytest.raises(BackendURLInvalid) as raised:
        s3_backend_from_url(url)
    message = str(raised.value)
    assert words in message
    assert secret_free(message), message
    assert secret_free(repr(raised.value))


@pytest.mark.parametrize("url, words", [row for row in INVALID if not row[0].startswith("gs:")])
def test_invalid_url_refused_by_store_too(url, words):
    """Store() refuses the same malformed URLs with the same BackendURLInvalid message, secret hidden."""
    with pytest.raises(BackendURLInvalid) as raised:
        Store(url, config=CONFIG)
    assert words in str(raised.value) and secret_free(str(raised.value))


def test_leading_empty_path_component_is_refused():
    """A path that starts with an empty component (bucket//path) is refused, not silently stripped."""
    with pytest.raises(BackendURLInvalid, match="empty"):
        parse("s3:/bucket//path")


@pytest.mark.parametrize("port", ["65536", "99999"])
def test_port_out_of_range_is_refused(port):
    """An endpoint port above 65535 is BackendURLInvalid naming the port."""
    with pytest.raises(BackendURLInvalid, match="port"):
        parse(f"s3:http://h:{port}/bucket/path")


def test_unencoded_at_in_secret_is_refused_without_showing_any_of_it():
    """A secret with an unencoded '@' is BackendURLInvalid, and neither half of it is shown."""
    with pytest.raises(BackendURLInvalid) as raised:
        parse("s3:AKID:FirstHalfOfSecret@SecondHalfOfSecret@http://h:9000/bucket/path")
    assert "SecondHalfOfSecret" not in str(raised.value)
    assert "FirstHalfOfSecret" not in str(raised.value)


def test_b2_without_endpoint_builds_and_fails_at_open_with_an_example():
    """A b2: URL without an endpoint builds; opening it is BackendURLInvalid with an example endpoint."""
    backend = s3_backend_from_url(f"b2:KEYID:{ENCODED}@/bucket/path")
    with pytest.raises(BackendURLInvalid) as raised:
        backend.open()
    message = str(raised.value)
    assert "b2: URL needs the bucket's S3 endpoint" in message
    assert "backblazeb2.com" in message  # an example to copy
    assert secret_free(message)
    with pytest.raises(BackendURLInvalid):
        Store(f"b2:KEYID:{ENCODED}@/bucket/path", config=CONFIG).open()


# --- the factory does no I/O ---


def test_factory_and_store_do_not_connect():
    """Building the backend, get_backend() and Store() make no connection to the endpoint."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        url = f"s3:AKID:{ENCODED}@http://127.0.0.1:{port}/bucket/path"
        s3_backend_from_url(url)
        get_backend(url)
        Store(url, config=CONFIG)
        # a connect would have completed in the kernel's backlog: nothing is waiting there
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_factory_reads_no_credentials_and_needs_no_reachable_endpoint(monkeypatch, tmp_path):
    """Building the backend reads no ~/.aws file and needs no reachable or resolvable endpoint."""
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "unreadable"))
    (tmp_path / "unreadable").write_text("no section header: a parse error if it were read\n")
    port = _closed_port()
    backend = s3_backend_from_url(f"s3:no-such-profile@http://127.0.0.1:{port}/bucket/path")
    assert backend.location.profile == "no-such-profile"
    assert s3_backend_from_url(f"s3:http://unresolvable.invalid:{port}/bucket/path").location.endpoint


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- backend options ---

URL = f"s3:AKID:{ENCODED}@http://127.0.0.1:9/bucket/path"


def test_known_options_reach_the_backend():
    """The region, conditional_create, multipart_threshold and part_size options take effect in the backend."""
    backend = get_backend(
        URL, region="eu-central-1", conditional_create=False, multipart_threshold=8 * MiB, part_size=6 * MiB, timeout=5
    )
    assert (backend.multipart_threshold, backend.part_size) == (8 * MiB, 6 * MiB)
    assert not backend.capabilities.store_new
    assert backend._connect().signer.region == "eu-central-1"
    b2 = get_backend(URL.replace("s3:", "b2:", 1), conditional_create=True)
    assert b2.capabilities.store_new


@pytest.mark.parametrize("options", [{"bogus": 1}, {"region": "x", "Region": "y"}, {"endpoint": "http://h"}])
def test_unknown_options_raise_value_error_naming_them(options):
    """An unknown option (names are case-sensitive) is a ValueError naming it and listing the valid ones."""
    unknown = sorted(set(options) - {"region"})
    with pytest.raises(ValueError) as raised:
        get_backend(URL, **options)
    assert all(name in str(raised.value) for name in unknown)
    assert "part_size" in str(raised.value)  # the valid ones are listed
    with pytest.raises(ValueError) as raised:
        Store(URL, config=CONFIG, backend_options=options)
    assert all(name in str(raised.value) for name in unknown)


BAD_VALUES = [
    ("part_size", 5 * MiB - 1),
    ("part_size", 0),
    ("part_size", "8MiB"),
    ("multipart_threshold", 1024),
    ("timeout", 0),
    ("timeout", -1),
    ("timeout", True),
    ("timeout", "60"),
    ("conditional_create", "yes"),
    ("conditional_create", 1),
    ("region", ""),
    ("region", 5),
]


@pytest.mark.parametrize("name, value", BAD_VALUES)
def test_bad_option_values_raise_value_error_naming_the_option(name, value):
    """A bad option value (too small, wrong type, a bool for a number) is a ValueError naming option and value."""
    with pytest.raises(ValueError, match=re.escape(f"invalid {name} {value!r}")):
        get_backend(URL, **{name: value})
    with pytest.raises(ValueError, match=f"invalid {name}"):
        Store(URL, config=CONFIG, backend_options={name: value})


def test_smallest_part_size_is_accepted():
    """5 MiB, S3's smallest part, is accepted as part_size and multipart_threshold."""
    backend = get_backend(URL, part_size=5 * MiB, multipart_threshold=5 * MiB, timeout=0.1)
    assert backend.part_size == 5 * MiB
