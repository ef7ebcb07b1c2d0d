"""Secrets in rclone URLs: everything after ``rclone:`` goes to rclone, and a connection string
can carry passwords, keys and tokens.  Messages, repr and the core's redaction never show them."""

import subprocess
import sys

import pytest
from borgstore_backend_rclone import redact, scrubber

from borgstore import Store, get_backend
from borgstore._plugins import redact_url
from borgstore.backends.errors import BackendError


@pytest.mark.parametrize(
    "url, shown",
    [
        # a remote from the config, a local path: nothing secret in the URL
        ("rclone:myremote:backups/repo", "rclone:myremote:backups/repo"),
        ("rclone:myremote:", "rclone:myremote:"),
        ("rclone:/srv/repo", "rclone:/srv/repo"),
        ("rclone:/dir,pass=not-a-parameter:x", "rclone:/dir,pass=not-a-parameter:x"),
        # on-the-fly remotes: secret values hidden, the rest (and the path) shown
        (
            "rclone::s3,access_key_id=AKIA,secret_access_key=XYZ:bucket/path",
            "rclone::s3,access_key_id=***,secret_access_key=***:bucket/path",
        ),
        ("rclone::sftp,host=h,user=u,pass=p4ss:dir", "rclone::sftp,host=h,user=u,pass=***:dir"),
        ("rclone:remote,token=T0KEN:path/pass=x", "rclone:remote,token=***:path/pass=x"),
        ("rclone::b2,account=acc,key=K3Y:bucket", "rclone::b2,account=acc,key=***:bucket"),
        ("rclone::azureblob,sas_url='https://a/?sig=S1G':c", "rclone::azureblob,sas_url=***:c"),
        ("rclone::drive,service_account_credentials='{\"a\": 1}':x", "rclone::drive,service_account_credentials=***:x"),
        ("rclone::s3,env_auth:bucket", "rclone::s3,env_auth:bucket"),
        # quoted values, with the quote doubled inside
        ("rclone::sftp,pass='a,b:c''d',host=h:x", "rclone::sftp,pass=***,host=h:x"),
        # a password inside a URL value
        ("rclone::webdav,url='https://me:PW@h/dav':x", "rclone::webdav,url='https://me:***@h/dav':x"),
        # nested connection strings
        (
            "rclone::crypt,remote=':s3,secret_access_key=S:b',password=P:",
            "rclone::crypt,remote=':s3,secret_access_key=***:b',password=***:",
        ),
        ("rclone::union,upstreams='a:x :s3,key=K:b':", "rclone::union,upstreams='a:x :s3,key=***:b':"),
        # a string rclone would refuse: every parameter hidden
        ("rclone::sftp,pass='unterminated:x", "rclone::sftp,***"),
    ],
)
def test_redact_hides_the_values_of_secret_parameters(url, shown):
    """Values of parameters named like a secret (pass, secret, key, token, ...) become ***."""
    assert redact(url) == shown
    assert redact_url(url) == shown  # the core's entry point uses the plugin's rule


def test_scrubber_hides_secrets_that_rclone_quotes_in_its_messages():
    """rclone's own error texts may repeat the connection string or a value from it."""
    scrub = scrubber(":s3,secret_access_key=XYZ123:bucket")
    text = 'failed to create file system for ":s3,secret_access_key=XYZ123:bucket/": bad key XYZ123'
    assert scrub(text) == 'failed to create file system for ":s3,secret_access_key=***:bucket/": bad key ***'
    assert scrubber("remote:path")("remote:path is fine") == "remote:path is fine"


SECRET_URLS = [
    # rclone refuses a password that is not obscured, in words that do not quote it
    ("rclone::sftp,host=127.0.0.1,port=1,user=u,pass=SECRETPW1:dir", ["SECRETPW1"]),
    # rclone's error repeats the URL, with its password
    ("rclone::webdav,url='http://user:SECRETPW2@127.0.0.1:1/dav':x", ["SECRETPW2"]),
    (
        "rclone::s3,provider=Other,access_key_id=AKIDSECRET3,secret_access_key=SECRETKEY3,"
        "endpoint='http://127.0.0.1:1':bucket/path",
        ["AKIDSECRET3", "SECRETKEY3"],
    ),
]


@pytest.mark.parametrize("url, secrets", SECRET_URLS)
def test_no_message_or_repr_shows_a_secret(rclone_binary, url, secrets):
    """repr of the backend and of a Store, and the errors of create/open/destroy against a remote
    that cannot be reached, show the URL with its secrets hidden."""
    backend = get_backend(url)
    texts = [repr(backend), backend.url, repr(Store(url, config={"data/": {"levels": [1]}}))]
    for operation in (backend.create, backend.open, backend.destroy):
        with pytest.raises(BackendError) as raised:
            operation()
        texts.append(str(raised.value))
    assert not backend.opened
    for text in texts:
        assert "***" in text
        for secret in secrets:
            assert secret not in text


def test_finding_plugins_and_redacting_import_no_backend_module():
    """Listing the plugins and redacting an rclone URL import the package only: the backend and
    the daemon are imported when an rclone: URL is used."""
    program = (
        "import sys; from borgstore import _plugins; _plugins.backends();"
        "print(_plugins.redact_url('rclone::sftp,pass=x:d'));"
        "print(sorted(m for m in sys.modules if m.startswith('borgstore_backend_rclone.')))"
    )
    done = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True)
    assert done.stdout.splitlines() == ["rclone::sftp,pass=***:d", "[]"]
