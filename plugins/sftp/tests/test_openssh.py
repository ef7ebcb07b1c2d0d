"""The openssh transport: ssh processes that end with us, and errors that say what to fix.

The kit and the failure tests run with this transport too (TRANSPORTS in their modules); this
module checks what only it has: processes, ssh's own messages, a missing ssh binary.
"""

import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from borgstore_backend_sftp import AuthenticationFailed, HostKeyChanged, UnknownHostKey, _openssh, sftp_backend_from_url
from borgstore_backend_sftp.testserver import HOST_ALIAS

from borgstore.backends.errors import BackendError

TRANSPORTS = ("openssh",)


def ssh_children(pid: int) -> list:
    """The pids of the ssh processes whose parent is *pid*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                comm, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        if comm.endswith("(ssh") and int(rest.split()[1]) == pid:
            found.append(int(entry))
    return found


def wait_gone(pids, limit=20.0) -> list:
    """Wait (up to *limit* seconds) until the processes *pids* ended; the ones still there."""
    deadline = time.monotonic() + limit
    while True:
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and not _zombie(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def make_backend(server, path, **options):
    backend = sftp_backend_from_url(server.url("//" + str(path), alias=False), **server.backend_options(**options))
    backend.create()
    backend.open()
    return backend


def test_sessions_are_ssh_processes_and_close_ends_them(own_sshd, tmp_path):
    """Each busy session is an ssh child process; after close() no ssh child remains."""
    backend = make_backend(own_sshd, tmp_path / "store")
    backend.store("x", b"1")
    assert ssh_children(os.getpid())
    backend.close()
    assert ssh_children(os.getpid()) == []


def test_a_dropped_backend_leaves_no_ssh_process(own_sshd, tmp_path):
    """A backend garbage-collected without close() ends its ssh processes."""
    import gc

    backend = make_backend(own_sshd, tmp_path / "store")
    backend.store("x", b"1")
    del backend
    gc.collect()
    assert ssh_children(os.getpid()) == []


def test_ssh_processes_end_when_their_parent_is_killed(own_sshd, tmp_path):
    """A program killed with SIGKILL leaves no ssh process behind: ssh sees end of file."""
    options = own_sshd.backend_options()
    url = own_sshd.url("//" + str(tmp_path / "store"), alias=False)
    program = textwrap.dedent(f"""
        import sys, time
        from borgstore_backend_sftp import sftp_backend_from_url
        backend = sftp_backend_from_url({url!r}, **{options!r})
        backend.create()
        backend.open()
        backend.store("x", b"1")
        print("ready", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        pids = ssh_children(child.pid)
        assert pids
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert wait_gone(pids) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_unknown_host_key_is_refused_naming_the_fix(own_sshd, tmp_path):
    """An empty known_hosts: UnknownHostKey quoting ssh, nothing is added to known_hosts."""
    own_sshd.write_known_hosts("")
    backend = sftp_backend_from_url(own_sshd.url("//" + str(tmp_path), alias=False), **own_sshd.backend_options())
    with pytest.raises(UnknownHostKey) as caught:
        backend.open()
    assert "Host key verification failed" in str(caught.value)
    assert "known_hosts" in str(caught.value)
    assert own_sshd.known_hosts.read_text() == ""
    assert ssh_children(os.getpid()) == []


def test_a_changed_host_key_is_refused(own_sshd, tmp_path):
    """known_hosts lists another key for the server: HostKeyChanged."""
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    own_sshd.write_known_hosts(own_sshd.host_key_line(other))
    backend = sftp_backend_from_url(own_sshd.url("//" + str(tmp_path), alias=False), **own_sshd.backend_options())
    with pytest.raises(HostKeyChanged, match="has changed"):
        backend.open()


def test_a_refused_login_names_the_user_and_what_to_check(own_sshd, tmp_path):
    """A user the server does not accept: AuthenticationFailed quoting ssh's refusal."""
    backend = sftp_backend_from_url(
        own_sshd.url("//" + str(tmp_path), alias=False, user="nobody-here"), **own_sshd.backend_options()
    )
    with pytest.raises(AuthenticationFailed) as caught:
        backend.open()
    assert "Permission denied" in str(caught.value)
    assert "authorized_keys" in str(caught.value)


BREAKERS = ["RemoteCommand echo not-sftp", "ForkAfterAuthentication yes", "StdinNull yes"]


@pytest.mark.parametrize("line", BREAKERS)
def test_a_config_that_would_break_the_session_is_undone(sshd, ssh_config_with, tmp_path, line):
    """A config line ``ssh -s`` cannot work with is undone on the command line: ssh refuses a
    RemoteCommand beside a subsystem, StdinNull takes ssh off our socket, and
    ForkAfterAuthentication leaves an ssh that is no longer our child to end."""
    config = ssh_config_with(sshd, line)
    backend = make_backend(sshd, tmp_path / "store", ssh_config=str(config))
    try:
        backend.store("x", b"1")
        assert backend.load("x") == b"1"
        assert [pid for pid in ssh_children(os.getpid()) if not _zombie(pid)]
    finally:
        backend.close()


@pytest.mark.parametrize("line", BREAKERS)
def test_the_guards_go_with_ssh_G_so_gcm_stays_first(sshd, ssh_config_with, monkeypatch, line):
    """ssh -G refuses a ForkAfterAuthentication without a command: the guards go with it too."""
    monkeypatch.setattr(_openssh, "cpu_has_aes", lambda: True)
    config = ssh_config_with(sshd, line)
    found = _openssh.preferred_ciphers("ssh", HOST_ALIAS, None, None, ssh_config=config, timeout=10)
    assert found.split(",")[:2] == list(_openssh.GCM_CIPHERS)


def test_guards_are_only_the_options_this_ssh_knows(tmp_path):
    """An older ssh refuses an option it does not know: it is sent only the guards it takes."""
    assert _openssh.session_guards("ssh") == (
        "-o", "RemoteCommand=none", "-o", "ForkAfterAuthentication=no", "-o", "StdinNull=no"
    )  # fmt: skip
    older = tmp_path / "ssh"  # as OpenSSH 7.6 to 8.6: RemoteCommand only
    older.write_text('#!/bin/sh\ncase "$*" in *ForkAfter*|*StdinNull*) exit 255;; esac\nexit 0\n')
    older.chmod(0o755)
    assert _openssh.session_guards(str(older)) == ("-o", "RemoteCommand=none")
    assert _openssh.session_guards(str(tmp_path / "missing")) == ()


def test_a_missing_ssh_binary_names_what_to_install(own_sshd, tmp_path, monkeypatch):
    """No ssh on PATH: a permanent BackendError naming openssh-client and the other transport."""
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = sftp_backend_from_url(own_sshd.url("//" + str(tmp_path), alias=False), **own_sshd.backend_options())
    with pytest.raises(BackendError) as caught:
        backend.open()
    assert "openssh-client" in str(caught.value) and "transport='paramiko'" in str(caught.value)
    assert not caught.value.temporary


def test_an_unknown_transport_is_refused():
    """transport must name a known transport: ValueError before anything connects."""
    with pytest.raises(ValueError, match="transport must be one of"):
        sftp_backend_from_url("sftp://host/path", transport="putty")


def test_auto_takes_openssh_where_ssh_is_on_path(own_sshd, tmp_path, monkeypatch):
    """The default, transport='auto', runs ssh processes when there is an ssh client."""
    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    backend = make_backend(own_sshd, tmp_path / "store", transport="auto")
    assert backend.transport == "openssh"
    backend.store("x", b"1")
    assert backend.load("x") == b"1"
    assert ssh_children(os.getpid())
    backend.close()


def test_auto_takes_paramiko_without_an_ssh_client(own_sshd, tmp_path, monkeypatch):
    """With no ssh on PATH the default still connects, in this process, with no ssh process."""
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = make_backend(own_sshd, tmp_path / "store", transport="auto")
    assert backend.transport == "paramiko"
    backend.store("x", b"1")
    assert backend.load("x") == b"1"
    assert ssh_children(os.getpid()) == []
    backend.close()


def test_the_default_transport_is_auto(monkeypatch, tmp_path):
    """Built without a transport option, the backend chooses as 'auto' does (nothing connects yet)."""
    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    assert sftp_backend_from_url("sftp://host/path").transport == "openssh"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sftp_backend_from_url("sftp://host/path").transport == "paramiko"


def test_auto_keeps_paramiko_where_ssh_would_read_another_home(monkeypatch, tmp_path):
    """ssh finds ~/.ssh through the password database; with HOME pointing elsewhere (or a user id
    without an entry there) 'auto' takes paramiko, which reads the ~/.ssh that HOME names."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sftp_backend_from_url("sftp://host/path").transport == "paramiko"
    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)

    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert sftp_backend_from_url("sftp://host/path").transport == "paramiko"
