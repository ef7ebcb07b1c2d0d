"""http:, https: and rest: URLs: the forms the PyPI borgstore 0.7 accepts, credentials from the
URL or the environment, the command lines rest: URLs run, and passwords never shown."""

import pytest
from borgstore_backend_rest import OPTIONS, rest_backend_from_url
from borgstore_backend_rest._url import SSH_KEEPALIVE, parse, redact

import borgstore
from borgstore.backends.errors import BackendURLInvalid

SERVER = ["borgstore-server-rest", "--stdio", "--backend"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("BORGSTORE_REST_USERNAME", "BORGSTORE_REST_PASSWORD", "BORGSTORE_RSH"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "url, host, port, tls, prefix",
    [
        ("http://example.org", "example.org", 80, False, ""),
        ("http://example.org/", "example.org", 80, False, ""),
        ("https://example.org", "example.org", 443, True, ""),
        ("http://127.0.0.1:5618/", "127.0.0.1", 5618, False, ""),
        ("https://store.example:8443/sub/path", "store.example", 8443, True, "/sub/path"),
        ("https://store.example/sub/path/", "store.example", 443, True, "/sub/path"),
        ("http://[::1]:5618/", "::1", 5618, False, ""),
    ],
)
def test_http_forms(url, host, port, tls, prefix):
    location = parse(url)
    assert (location.scheme, location.host, location.port, location.tls, location.prefix) == (
        url.partition(":")[0],
        host,
        port,
        tls,
        prefix,
    )
    assert location.username is None and location.password is None and not location.command


def test_credentials_are_percent_decoded():
    location = parse("https://back%20up:p%40ss%3Aw%2Ford@host:8443/x")
    assert (location.username, location.password) == ("back up", "p@ss:w/ord")
    assert location.host == "host" and location.prefix == "/x"


def test_password_may_hold_a_slash_as_pypi_reads_it():
    location = parse("http://user:pa/ss@host/")
    assert (location.username, location.password, location.host) == ("user", "pa/ss", "host")


def test_env_credentials(monkeypatch):
    monkeypatch.setenv("BORGSTORE_REST_USERNAME", "envuser")
    monkeypatch.setenv("BORGSTORE_REST_PASSWORD", "envsecret")
    location = parse("http://host/")
    assert (location.username, location.password) == ("envuser", "envsecret")
    # the URL's credentials win over the environment's
    assert parse("http://u:p@host/").username == "u"


def test_env_credentials_need_both(monkeypatch):
    monkeypatch.setenv("BORGSTORE_REST_USERNAME", "envuser")
    location = parse("http://host/")
    assert location.username is None and location.password is None


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://host/", "must start with"),
        ("http:/host", "must start with"),
        ("http://", "no host"),
        ("http://host:0/", "port"),
        ("http://host:65536/", "port"),
        ("http://host:abc/", "port"),
        ("http://host/x?query", "query"),
        ("http://host/x#frag", "fragment"),
        ("http://host/a b", "blank"),
        ("http://:secret@host/", "empty user name or password"),
        ("http://user:@host/", "empty user name or password"),
        ("http://user@host/", "credentials must be user:password@"),
        ("rest://", "no '/'"),
        ("rest://host", "no '/'"),
        ("rest://host/", "path is empty"),
        ("rest:///", "path is empty"),
        ("rest://host:99999/x", "port"),
        ("rest://-oProxyCommand=x/path", "ssh option"),
        ("rest://host/p?x", "query"),
        ("rest://host/p\x00", "control character"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, why):
    with pytest.raises(BackendURLInvalid, match="invalid") as info:
        parse(url)
    assert why in str(info.value)


def test_rest_local_is_an_absolute_path():
    assert list(parse("rest:///srv/store").command) == [*SERVER, "FILE:/srv/store"]
    assert list(parse("rest:///~/store").command) == [*SERVER, "FILE:~/store"]


@pytest.mark.parametrize(
    "url, ssh_args, path",
    [
        ("rest://host/rel/store", ["host"], "FILE:rel/store"),
        ("rest://host//abs/store", ["host"], "FILE:/abs/store"),
        ("rest://me@host:2222/~/store", ["-p", "2222", "me@host"], "'FILE:~/store'"),  # the server expands ~
        ("rest://me@[2001:db8::1]:22/s", ["-p", "22", "me@2001:db8::1"], "FILE:s"),
        ("rest://[::1]/s", ["::1"], "FILE:s"),
    ],
)
def test_rest_through_ssh(url, ssh_args, path):
    assert list(parse(url).command) == ["ssh", *SSH_KEEPALIVE, *ssh_args, *SERVER, path]


def test_rest_path_is_quoted_for_the_remote_shell():
    command = parse("rest://host/my store;rm -rf x").command
    assert command[-1] == "'FILE:my store;rm -rf x'"


def test_borgstore_rsh_replaces_ssh(monkeypatch):
    monkeypatch.setenv("BORGSTORE_RSH", "ssh -i '/home/me/my key' -o BatchMode=yes")
    command = list(parse("rest://me@host:2222/store").command)
    # used as given (no keepalive options added), with the port and the host
    assert command == [
        "ssh",
        "-i",
        "/home/me/my key",
        "-o",
        "BatchMode=yes",
        "-p",
        "2222",
        "me@host",
        *SERVER,
        "FILE:store",
    ]


def test_borgstore_rsh_other_program(monkeypatch):
    monkeypatch.setenv("BORGSTORE_RSH", "/usr/local/bin/myssh --flag")
    assert list(parse("rest://host/s").command) == ["/usr/local/bin/myssh", "--flag", "host", *SERVER, "FILE:s"]


# --- redaction ---

SECRET = "s3cr%2Ft"


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"http://user:{SECRET}@host:80/x", "http://user:***@host:80/x"),
        (f"https://user:{SECRET}@host", "https://user:***@host"),
        ("http://host/x", "http://host/x"),
        ("rest://me@host/store", "rest://me@host/store"),
        # does not parse (a blank in the path): everything up to the last '@' is still hidden
        (f"http://user:{SECRET}@host/a b", "http://user:***@host/a b"),
        # an unencoded '@' in the password
        ("http://user:pa@ss@host/", "http://user:***@host/"),
    ],
)
def test_redact(url, shown):
    assert redact(url) == shown
    assert borgstore.redact_url(url) == shown


def test_secrets_never_shown(monkeypatch):
    monkeypatch.setenv("BORGSTORE_REST_PASSWORD", "envsecret")
    monkeypatch.setenv("BORGSTORE_REST_USERNAME", "envuser")
    url = f"http://user:{SECRET}@127.0.0.1:1/x"
    backend = rest_backend_from_url(url)
    assert "s3cr" not in repr(backend) and "s3cr" not in str(backend.location)
    assert "envsecret" not in repr(rest_backend_from_url("http://127.0.0.1:1/"))
    assert "envsecret" not in repr(parse("http://h/"))
    with pytest.raises(BackendURLInvalid) as info:
        parse(f"http://user:{SECRET}@host:bad/")
    assert "s3cr" not in str(info.value)
    # a failed connection's error shows the redacted URL only
    with pytest.raises(borgstore.backends.errors.BackendError) as info:
        backend.create()
    assert "s3cr" not in str(info.value) and "***" in str(info.value)


def test_factory_through_the_plugin():
    backend = borgstore.get_backend("https://u:pw@host/p", timeout=5, ca_file="/etc/ssl/ca.pem")
    assert type(backend).__name__ == "RestBackend"
    assert set(OPTIONS) == {"timeout", "ca_file"}
    with pytest.raises(ValueError, match="timeout"):
        rest_backend_from_url("http://host/", timeout=0)
    with pytest.raises(ValueError, match="unknown|valid"):
        borgstore.get_backend("http://host/", colour="red")
