"""Credentials, region and endpoint from where AWS users keep them, end to end against moto.

moto checks no signature, so a recording proxy (testserver.FaultProxy without a hook) sits in
front of it and every test asserts on what went over the wire: the Credential=KEYID/date/REGION/
s3/aws4_request of each request's Authorization header and its x-amz-security-token.  The order
checked is the one _credentials.py documents: URL keys > URL profile > AWS_* variables >
AWS_PROFILE (else default); region: option > AWS_REGION > AWS_DEFAULT_REGION > profile > B2 host
> us-east-1; endpoint: URL > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL > profile endpoint_url.
"""

import itertools
import re
import socket
import uuid

import pytest
from borgstore_backend_s3 import s3_backend_from_url
from borgstore_backend_s3._credentials import resolve
from borgstore_backend_s3._url import parse
from borgstore_backend_s3.testserver import FaultProxy

from borgstore import Store
from borgstore.backends.errors import BackendError, BackendURLInvalid

from .conftest import BUCKET

_count = itertools.count()
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/s3/aws4_request, SignedHeaders=([^,]+),")
CONFIG = {"data/": {"levels": [0]}}


@pytest.fixture
def proxy(moto):
    p = FaultProxy(moto.port)
    yield p
    p.close()


@pytest.fixture
def aws_files(tmp_path, monkeypatch):
    """aws_files(credentials=..., config=...): write the two ~/.aws files (and point the
    AWS_* variables at them)."""
    credentials, config = tmp_path / "credentials", tmp_path / "config"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    def write(credentials_text: str = "", config_text: str = ""):
        credentials.write_text(credentials_text)
        config.write_text(config_text)

    return write


def closed_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def path() -> str:
    return f"cred{next(_count)}-{uuid.uuid4().hex[:8]}"


def run(url: str, proxy, **options) -> set:
    """Create the store at *url*, then open it and store and load an item; return the set of
    (key id, region, session token) the requests were signed with."""
    backend = s3_backend_from_url(url, **options)
    backend.create()
    backend.open()
    backend.store("item", b"value")
    assert backend.load("item") == b"value"
    backend.close()
    assert proxy.requests, "nothing went through the proxy"
    return signed_with(proxy)


def signed_with(proxy) -> set:
    found = set()
    for request in proxy.requests:
        key_id, region, signed = _CREDENTIAL.search(request.headers["authorization"]).groups()
        token = request.headers.get("x-amz-security-token")
        # a token that is sent but not signed would be refused by a real server
        assert ("x-amz-security-token" in signed.split(";")) == (token is not None)
        found.add((key_id, region, token))
    return found


PROFILES = """
[default]
aws_access_key_id = DEFAULTKEY
aws_secret_access_key = default-secret

[work]
aws_access_key_id = WORKKEY
aws_secret_access_key = work-secret

[temp]
aws_access_key_id = TEMPKEY
aws_secret_access_key = temp-secret
aws_session_token = temp-token
"""


# --- where the key comes from ---


def test_key_and_secret_in_the_url(proxy, aws_files, monkeypatch):
    """Keys in the URL win over profiles and AWS_* keys; the environment's session token is not sent with them."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")  # belongs to the env key: not sent with the URL's
    assert run(f"s3:URLKEY:url-secret@{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("URLKEY", "us-east-1", None)}


def test_profile_in_the_url_from_the_credentials_file(proxy, aws_files, monkeypatch):
    """A profile named in the URL wins over AWS_* keys and AWS_PROFILE; its keys come from the credentials file."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_PROFILE", "temp")
    assert run(f"s3:work@{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("WORKKEY", "us-east-1", None)}


def test_profile_in_the_url_from_the_config_file(proxy, aws_files):
    """A profile named in the URL is found as [profile name] in the config file, keys and region alike."""
    aws_files("", "[profile cfg]\naws_access_key_id = CFGKEY\naws_secret_access_key = cfg-secret\nregion = eu-west-3\n")
    assert run(f"s3:cfg@{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("CFGKEY", "eu-west-3", None)}


def test_credentials_file_wins_over_config_file_and_both_merge(proxy, aws_files):
    """A profile in both files takes its keys from the credentials file and the rest (region) from the config."""
    aws_files(
        "[both]\naws_access_key_id = CREDKEY\naws_secret_access_key = cred-secret\n",
        "[profile both]\naws_access_key_id = CFGKEY\naws_secret_access_key = cfg-secret\nregion = ap-south-1\n",
    )
    assert run(f"s3:both@{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("CREDKEY", "ap-south-1", None)}


def test_session_token_of_a_profile_is_sent(proxy, aws_files):
    """A profile's aws_session_token goes out, signed, as x-amz-security-token with the profile's keys."""
    aws_files(PROFILES)
    assert run(f"s3:temp@{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("TEMPKEY", "us-east-1", "temp-token")}


def test_environment_keys_and_session_token(proxy, aws_files, monkeypatch):
    """AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY win over AWS_PROFILE; AWS_SESSION_TOKEN is sent as written."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token/with+chars=")
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert run(f"s3:{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("ENVKEY", "us-east-1", "env-token/with+chars=")}


def test_aws_profile_names_the_profile(proxy, aws_files, monkeypatch):
    """Without keys in the URL or the AWS_* variables, AWS_PROFILE names the profile whose keys sign."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert run(f"s3:{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("WORKKEY", "us-east-1", None)}


def test_default_profile_when_nothing_else_is_given(proxy, aws_files):
    """With nothing in the URL or the environment, the [default] profile of the credentials file signs."""
    aws_files(PROFILES)
    assert run(f"s3:{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("DEFAULTKEY", "us-east-1", None)}


def test_default_profile_from_the_config_file(proxy, aws_files):
    """The default profile is also found as [default] (not [profile default]) in the config file."""
    aws_files("", "[default]\naws_access_key_id = CFGDEFAULT\naws_secret_access_key = s\n")
    assert run(f"s3:{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("CFGDEFAULT", "us-east-1", None)}


def test_precedence_of_the_four_sources(aws_files, monkeypatch):
    """Taking away the winning source each time, the next one in the documented order wins."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_PROFILE", "temp")
    steps = [
        ("s3:URLKEY:s@http://h/bucket/p", "URLKEY"),
        ("s3:work@http://h/bucket/p", "WORKKEY"),
        ("s3:http://h/bucket/p", "ENVKEY"),
    ]
    for url, expected in steps:
        assert resolve(parse(url)).credentials.access_key_id == expected
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert resolve(parse("s3:http://h/bucket/p")).credentials.access_key_id == "TEMPKEY"
    monkeypatch.delenv("AWS_PROFILE")
    assert resolve(parse("s3:http://h/bucket/p")).credentials.access_key_id == "DEFAULTKEY"


# --- region ---


def test_region_precedence(proxy, aws_files, monkeypatch):
    """Region order: the region option, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1."""
    aws_files("", "[default]\naws_access_key_id = K\naws_secret_access_key = s\nregion = profile-region-1\n")
    url = f"s3:{proxy.endpoint}/{BUCKET}/{path()}"
    monkeypatch.setenv("AWS_REGION", "env-region-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "env-default-region-1")
    assert run(url, proxy, region="option-region-1") == {("K", "option-region-1", None)}
    for name, expected in [
        ("AWS_REGION", "env-region-1"),
        ("AWS_DEFAULT_REGION", "env-default-region-1"),
        (None, "profile-region-1"),
    ]:
        proxy.requests.clear()
        url = f"s3:{proxy.endpoint}/{BUCKET}/{path()}"
        assert run(url, proxy) == {("K", expected, None)}
        if name:
            monkeypatch.delenv(name)
    aws_files("", "[default]\naws_access_key_id = K\naws_secret_access_key = s\n")
    proxy.requests.clear()
    assert run(f"s3:{proxy.endpoint}/{BUCKET}/{path()}", proxy) == {("K", "us-east-1", None)}


def test_region_from_a_b2_endpoint_and_what_overrides_it(monkeypatch):
    """A B2 endpoint s3.<region>.backblazeb2.com gives the region; the option and AWS_REGION override it."""
    url = "b2:KEYID:secret@https://s3.us-west-004.backblazeb2.com/bucket/path"
    settings = resolve(parse(url))
    assert (settings.region, settings.region_given) == ("us-west-004", True)
    assert resolve(parse(url.replace("https://", "http://").replace(".com/", ".com:80/"))).region == "us-west-004"
    assert resolve(parse(url), region="eu-central-003").region == "eu-central-003"
    monkeypatch.setenv("AWS_REGION", "eu-central-003")
    assert resolve(parse(url)).region == "eu-central-003"


def test_region_of_other_endpoints_defaults_to_us_east_1():
    """Any other endpoint (a B2 lookalike host too) gets us-east-1, marked as a default and not as given."""
    settings = resolve(parse("s3:K:s@https://minio.example:9000/bucket/path"))
    assert (settings.region, settings.region_given) == ("us-east-1", False)
    assert resolve(parse("s3:K:s@https://s3.backblazeb2.com.evil.example/bucket/path")).region == "us-east-1"


# --- endpoint ---


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_endpoint_from_the_environment(proxy, monkeypatch, variable):
    """Without an endpoint in the URL, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (trailing '/' allowed) is used."""
    monkeypatch.setenv(variable, proxy.endpoint + "/")  # the AWS tools accept a trailing slash
    url = f"s3:ENVEP:s@/{BUCKET}/{path()}"
    assert run(url, proxy) == {("ENVEP", "us-east-1", None)}
    store = Store(url, config=CONFIG)
    with store:
        store.store("data/x", b"through the endpoint")
        assert store.load("data/x") == b"through the endpoint"


def test_endpoint_precedence(proxy, aws_files, monkeypatch):
    """Endpoint order: the URL's, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then the profile's endpoint_url."""
    closed = closed_endpoint()
    aws_files("[default]\naws_access_key_id = K\naws_secret_access_key = s\n", f"[default]\nendpoint_url = {closed}\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    assert run(f"s3:/{BUCKET}/{path()}", proxy) == {("K", "us-east-1", None)}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    assert resolve(parse(f"s3:{proxy.endpoint}/{BUCKET}/p")).endpoint == proxy.endpoint  # the URL's wins
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert resolve(parse(f"s3:/{BUCKET}/p")).endpoint == proxy.endpoint
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert resolve(parse(f"s3:/{BUCKET}/p")).endpoint == closed


def test_endpoint_and_region_from_the_profile_named_in_the_url(proxy, aws_files):
    """A profile named in the URL gives endpoint_url and region from its own section, not from [default]."""
    aws_files(
        "[minio]\naws_access_key_id = MINIOKEY\naws_secret_access_key = minio-secret\n",
        f"[profile minio]\nendpoint_url = {proxy.endpoint}\nregion = minio-1\n[default]\nendpoint_url = {closed_endpoint()}\n",
    )
    assert run(f"s3:minio@/{BUCKET}/{path()}", proxy) == {("MINIOKEY", "minio-1", None)}


def test_endpoint_of_the_usual_profile_serves_keys_from_elsewhere(proxy, aws_files, monkeypatch):
    """With keys from AWS_* variables, the AWS_PROFILE profile still gives the endpoint_url and region."""
    aws_files("", f"[profile ep]\nendpoint_url = {proxy.endpoint}\nregion = ep-1\n")
    monkeypatch.setenv("AWS_PROFILE", "ep")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert run(f"s3:/{BUCKET}/{path()}", proxy) == {("ENVKEY", "ep-1", None)}


def test_b2_url_takes_its_endpoint_from_the_environment(proxy, monkeypatch):
    """A b2: URL without an endpoint takes the one in AWS_ENDPOINT_URL_S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    assert run(f"b2:B2KEY:s@/{BUCKET}/{path()}", proxy) == {("B2KEY", "us-east-1", None)}


@pytest.mark.parametrize("endpoint", ["ftp://h", "http://h/sub/path", "h:9000", "http://user:pw@h"])
def test_bad_endpoint_from_the_environment_is_refused_at_open(monkeypatch, endpoint):
    """An environment endpoint that is not http(s)://host[:port] is BackendURLInvalid at open, secret unshown."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    backend = s3_backend_from_url("s3:K:secret-value@/bucket/path")
    with pytest.raises(BackendURLInvalid, match="invalid S3 endpoint") as raised:
        backend.open()
    assert "secret-value" not in str(raised.value)


# --- what is missing: BackendError saying what to do, no secret ---


def test_missing_profile_named_in_the_url(aws_files, monkeypatch):
    """A profile named in the URL that neither ~/.aws file holds is a BackendError naming it, secrets unshown."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    backend = s3_backend_from_url("s3:nosuch@http://127.0.0.1:9/bucket/path")
    with pytest.raises(BackendError) as raised:
        backend.open()
    message = str(raised.value)
    assert "'nosuch'" in message and "~/.aws" in message
    assert "env-secret-value" not in message


def test_half_a_credential_pair_in_the_environment_is_an_error(monkeypatch):
    """One of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY alone is refused (as the AWS tools do), naming the missing one."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lonely-secret-value")
    with pytest.raises(BackendError, match="AWS_ACCESS_KEY_ID is not") as raised:
        s3_backend_from_url("s3:http://127.0.0.1:9/bucket/path").open()
    assert "lonely-secret-value" not in str(raised.value)


def test_no_credentials_at_all_says_what_to_do(monkeypatch):
    """With no credentials anywhere, opening (backend or Store) is a BackendError listing every way to give them."""
    backend = s3_backend_from_url("s3:http://127.0.0.1:9/bucket/path")
    with pytest.raises(BackendError) as raised:
        backend.open()
    message = str(raised.value)
    assert "no S3 credentials" in message
    for hint in ("access_key_id:secret@", "profile", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "'default'"):
        assert hint in message
    with pytest.raises(BackendError, match="no S3 credentials"):
        Store("s3:http://127.0.0.1:9/bucket/path", config=CONFIG).open()


def test_aws_profile_that_does_not_exist(aws_files, monkeypatch):
    """An AWS_PROFILE that names a profile in neither ~/.aws file is a BackendError naming that profile."""
    aws_files(PROFILES)
    monkeypatch.setenv("AWS_PROFILE", "gone")
    with pytest.raises(BackendError, match="'gone'"):
        s3_backend_from_url("s3:http://127.0.0.1:9/bucket/path").open()


@pytest.mark.parametrize(
    "section",
    [
        "region = eu-west-1\n",
        "aws_access_key_id = ONLYKEY\n",
        "aws_secret_access_key = only-secret-value\n",
        "aws_access_key_id =\naws_secret_access_key = only-secret-value\n",
    ],
)
def test_profile_without_keys_says_so(aws_files, section):
    """A profile missing the key id or secret (or with one empty) is a BackendError naming it, secret unshown."""
    aws_files(f"[nokeys]\n{section}")
    with pytest.raises(BackendError) as raised:
        s3_backend_from_url("s3:nokeys@http://127.0.0.1:9/bucket/path").open()
    message = str(raised.value)
    assert "'nokeys'" in message and "has no aws_access_key_id and aws_secret_access_key" in message
    assert "only-secret-value" not in message


def test_malformed_credentials_file_is_reported_without_its_secrets(aws_files):
    """A credentials file that is not INI is a 'cannot read' BackendError that quotes none of its secrets."""
    aws_files("aws_secret_access_key = leaked-secret-value\n[default]\naws_access_key_id = K\n")
    with pytest.raises(BackendError, match="cannot read") as raised:
        s3_backend_from_url("s3:http://127.0.0.1:9/bucket/path").open()
    assert "leaked-secret-value" not in str(raised.value)


def test_credentials_are_read_at_open_not_when_the_backend_is_built(proxy, aws_files, monkeypatch):
    """Credentials are read when the backend first talks to the server: a profile added after building counts."""
    backend = s3_backend_from_url(f"s3:late@{proxy.endpoint}/{BUCKET}/{path()}")
    aws_files("[late]\naws_access_key_id = LATEKEY\naws_secret_access_key = s\n")
    backend.create()
    assert signed_with(proxy) == {("LATEKEY", "us-east-1", None)}
