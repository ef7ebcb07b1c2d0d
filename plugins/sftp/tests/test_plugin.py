"""The plugin as borgstore sees it: registered without importing paramiko, options and URL
redaction declared in its spec.  No server needed."""

import subprocess
import sys

import pytest

from borgstore import _plugins
from borgstore.backends.errors import BackendURLInvalid


def run_python(code: str) -> str:
    """Run *code* in a fresh interpreter; return what it printed."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_listing_the_plugins_does_not_import_paramiko():
    """Importing the package and asking borgstore for its backends (and showing an sftp URL)
    imports neither paramiko nor the implementation; the public names still come on first use."""
    code = (
        "import sys\n"
        "import borgstore_backend_sftp\n"
        "from borgstore import _plugins\n"
        "assert 'sftp' in _plugins.backends()\n"
        "_plugins.redact_url('sftp://user:pw@host/path')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('paramiko', 'borgstore_backend_sftp'))\n"
        "print(loaded)\n"
        "from borgstore_backend_sftp import SftpBackend, AuthenticationFailed, parse_url\n"
        "print('paramiko' in sys.modules, SftpBackend.__module__, AuthenticationFailed.__module__)\n"
    )
    before, after = run_python(code).splitlines()
    # the URL module is light by design: the core asks it to redact sftp URLs
    assert before == str(["borgstore_backend_sftp", "borgstore_backend_sftp._url"])
    assert after == "True borgstore_backend_sftp._backend borgstore_backend_sftp._connect"


@pytest.mark.parametrize(
    "name",
    [
        "SftpBackend",
        "parse_url",
        "AuthenticationFailed",
        "HostKeyChanged",
        "HostKeyError",
        "UnknownHostKey",
        "sftp_backend_from_url",
    ],
)
def test_public_names_stay_importable(name):
    import borgstore_backend_sftp

    assert getattr(borgstore_backend_sftp, name) is not None
    assert name in dir(borgstore_backend_sftp) and name in borgstore_backend_sftp.__all__


def test_an_unknown_name_is_an_attribute_error():
    import borgstore_backend_sftp

    with pytest.raises(AttributeError, match="no_such_thing"):
        borgstore_backend_sftp.no_such_thing  # noqa: B018


def test_the_spec_declares_options_and_capabilities():
    """The core checks option names from the spec (the retired retry options included, so that
    the backend can say where retrying went); the spec's capabilities are the backend's, and
    declare transient errors (the default chain retries) and an atomic store_new."""
    import borgstore_backend_sftp
    from borgstore_backend_sftp import SftpBackend

    spec = _plugins.backends()["sftp"].spec
    assert set(spec.options) == {
        "ssh_config",
        "use_agent",
        "durability",
        "connect_timeout",
        "timeout",
        "keepalive",
        "transport",
        "retries",
        "retry_time",
    }
    assert set(borgstore_backend_sftp.RETIRED_OPTIONS) == {"retries", "retry_time"}
    assert spec.capabilities == SftpBackend.capabilities == borgstore_backend_sftp.CAPABILITIES
    assert SftpBackend.capabilities.transient_errors and SftpBackend.capabilities.store_new
    assert isinstance(spec.factory, str) and isinstance(spec.redact, str)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("sftp://alice:hunter2@host/repo", "sftp://alice:***@host/repo"),
        ("sftp://alice:hunter2@host:2222//srv/repo", "sftp://alice:***@host:2222//srv/repo"),
        ("sftp://alice:hun@ter2@host/repo", "sftp://alice:***@host/repo"),
        ("sftp://alice:hun/ter2@host/repo", "sftp://alice:***@host/repo"),
        ("sftp://alice:hunter2@host", "sftp://alice:***@host"),
        ("sftp://:hunter2@host/repo", "sftp://:***@host/repo"),
        ("sftp://alice@host/repo", "sftp://alice@host/repo"),
        ("sftp://host:22//srv/a@b", "sftp://host:22//srv/a@b"),
        ("sftp://[::1]:22//srv/a@b", "sftp://[::1]:22//srv/a@b"),
    ],
)
def test_redact_hides_the_password_and_nothing_else(url, shown):
    assert _plugins.redact_url(url) == shown


def test_a_password_is_dropped_at_parse_time():
    """The password is not part of the user name and goes nowhere; repr shows it redacted."""
    from borgstore_backend_sftp import parse_url, sftp_backend_from_url

    assert parse_url("sftp://alice:hunter2@host:2222//srv/repo") == ("alice", "host", 2222, "/srv/repo")
    assert parse_url("sftp://alice:hun@ter2@host/repo") == ("alice", "host", None, "repo")
    backend = sftp_backend_from_url("sftp://alice:hunter2@host/repo")
    assert "hunter2" not in repr(backend) and "alice:***@host" in repr(backend)
    assert "hunter2" not in repr(vars(backend))


@pytest.mark.parametrize(
    "url", ["sftp://alice:hunter2@host", "sftp://alice:hunter2@host:99999/p", "sftp://alice:hun/ter2@host/p"]
)
def test_invalid_urls_with_a_password_do_not_show_it(url):
    from borgstore_backend_sftp import sftp_backend_from_url

    with pytest.raises(BackendURLInvalid) as excinfo:
        sftp_backend_from_url(url)
    assert "hunter2" not in str(excinfo.value) and "ter2" not in str(excinfo.value)
    assert "alice:***@" in str(excinfo.value)
