"""The openssh transport's cipher order: AES-GCM first when the config leaves the ciphers to
OpenSSH and the CPU has AES instructions; a config's own ``Ciphers`` obeyed as it is.

The negotiated cipher is read from the real sshd's log (``LogLevel DEBUG1``), so these tests
check what went over the wire, not only the command line."""

import re
import shutil
import subprocess

import pytest
from borgstore_backend_sftp import _openssh
from borgstore_backend_sftp.testserver import HOST_ALIAS

TRANSPORTS = ("openssh",)

DEBUG_SSHD = {"sshd_options": "LogLevel DEBUG1"}
CHACHA_ONLY_SSHD = {"sshd_options": "LogLevel DEBUG1\nCiphers chacha20-poly1305@openssh.com"}
CHACHA = "chacha20-poly1305@openssh.com"


#: the real check, before the fixture below replaces it
REAL_CPU_HAS_AES = _openssh.cpu_has_aes


@pytest.fixture(autouse=True)
def need_ssh(require_binary):
    require_binary("ssh")


@pytest.fixture(autouse=True)
def cpu_with_aes(monkeypatch):
    """Every test runs as on a CPU with AES instructions, whatever this one has (one turns it off)."""
    monkeypatch.setattr(_openssh, "cpu_has_aes", lambda: True)


def negotiated_ciphers(server) -> set:
    """The ciphers sshd agreed on for the connections in its log so far."""
    return set(re.findall(r"kex: client->server cipher: (\S+)", server.log.read_text()))


def openssh_defaults() -> list:
    out = subprocess.run(
        [shutil.which("ssh"), "-F", "/dev/null", "-G", "example.org"], capture_output=True, text=True, check=True
    ).stdout
    return next(line.split(" ", 1)[1].split(",") for line in out.splitlines() if line.startswith("ciphers "))


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 aes avx\n", True),  # x86
        ("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n", True),  # arm64
        ("processor\t: 0\nflags\t\t: fpu sse2 avx vaes_like\n", False),  # no exact 'aes'
        ("model name\t: aes lookalike\n", False),  # the word elsewhere does not count
    ],
)
def test_cpu_has_aes_reads_the_flags(tmp_path, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert REAL_CPU_HAS_AES.__wrapped__(str(path)) is expected


def test_cpu_has_aes_without_cpuinfo_keeps_opensshs_order(tmp_path):
    assert REAL_CPU_HAS_AES.__wrapped__(str(tmp_path / "missing")) is False


def test_gcm_first_keeps_every_default_cipher(sshd):
    found = _openssh.preferred_ciphers("ssh", HOST_ALIAS, None, None, ssh_config=sshd.ssh_config, timeout=10)
    defaults = openssh_defaults()
    order = found.split(",")
    assert order[:2] == list(_openssh.GCM_CIPHERS)
    assert sorted(order) == sorted(defaults)  # nothing dropped, so any server still agrees on one


def test_a_cpu_without_aes_leaves_opensshs_order(sshd, monkeypatch):
    monkeypatch.setattr(_openssh, "cpu_has_aes", lambda: False)
    assert _openssh.preferred_ciphers("ssh", HOST_ALIAS, None, None, ssh_config=sshd.ssh_config, timeout=10) is None


def test_a_config_that_sets_ciphers_is_obeyed(sshd, ssh_config_with):
    config = ssh_config_with(sshd, f"Ciphers {CHACHA}")
    assert _openssh.preferred_ciphers("ssh", HOST_ALIAS, None, None, ssh_config=config, timeout=10) is None


@pytest.mark.parametrize(
    "custom_sshd, config_ciphers, expected",
    [
        (DEBUG_SSHD, None, _openssh.GCM_CIPHERS[0]),  # the config leaves the ciphers alone
        (DEBUG_SSHD, CHACHA, CHACHA),  # the config chooses
        (CHACHA_ONLY_SSHD, None, CHACHA),  # a server without AES-GCM
    ],
    indirect=["custom_sshd"],
    ids=["aes-gcm-first", "config-obeyed", "server-without-gcm"],
)
def test_the_negotiated_cipher(custom_sshd, backend_on, ssh_config_with, config_ciphers, expected):
    options = {}
    if config_ciphers:
        options["ssh_config"] = str(ssh_config_with(custom_sshd, f"Ciphers {config_ciphers}"))
    backend = backend_on(custom_sshd, **options)
    backend.store("x", b"1")
    assert backend.load("x") == b"1"
    backend.close()
    assert negotiated_ciphers(custom_sshd) == {expected}


def test_when_ssh_cannot_tell_its_own_choice_stands(sshd, tmp_path):
    """No ssh to ask, or a config it cannot read: no Ciphers option (the connect reports the
    real problem)."""
    broken = tmp_path / "ssh_config"
    broken.write_text("NoSuchKeyword yes\n")
    for ssh, config in ((str(tmp_path / "no-ssh"), sshd.ssh_config), ("ssh", broken)):
        assert _openssh.preferred_ciphers(ssh, HOST_ALIAS, None, None, ssh_config=config, timeout=10) is None
