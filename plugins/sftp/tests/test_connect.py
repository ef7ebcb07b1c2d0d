"""URLs, ssh config, host key verification and authentication, against a real sshd.

The connects here are the paramiko transport's, which reads the ssh config and checks host keys
itself; the openssh transport (the default where ssh exists) leaves both to ssh, and
test_openssh.py checks how its errors are reported."""

import os
import socket
import subprocess
import threading
import time

import pytest
from borgstore_backend_sftp import (
    AuthenticationFailed,
    HostKeyChanged,
    UnknownHostKey,
    parse_url,
    sftp_backend_from_url,
)
from borgstore_backend_sftp.testserver import HOST_ALIAS

from borgstore.backends.errors import BackendConnectionError, BackendDoesNotExist, BackendTimeout, BackendURLInvalid

CONFIG = {"": {"levels": [0]}}
PARAMIKO = {"transport": "paramiko"}


def ssh_fingerprint(pub_file) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub_file)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


def private_config(server, tmp_path, *, known_hosts=None, identity=True):
    """A copy of the server's ssh config with its own known_hosts content (and maybe no key)."""
    known_file = tmp_path / "known_hosts"
    known_file.write_text(server.host_key_line() if known_hosts is None else known_hosts)
    lines = []
    for line in server.ssh_config.read_text().splitlines():
        if "UserKnownHostsFile" in line:
            line = f"    UserKnownHostsFile {known_file}"
        if ("IdentityFile" in line or "IdentitiesOnly" in line) and not identity:
            continue
        lines.append(line)
    config = tmp_path / "ssh_config"
    config.write_text("\n".join(lines) + "\n")
    return config, known_file


def open_backend(server, config, path, **options):
    options = {"use_agent": False, **PARAMIKO, **options}
    backend = sftp_backend_from_url(server.url(path), ssh_config=str(config), **options)
    backend.open()
    return backend


# --- URLs and options (no server needed) ---


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sftp://host/rel/path", (None, "host", None, "rel/path")),
        ("sftp://user@host:2222/rel", ("user", "host", 2222, "rel")),
        ("sftp://user@host//abs/path/", ("user", "host", None, "/abs/path")),
        ("sftp://us%40er@ho%2Dst:22//with%20space/x", ("us@er", "ho-st", 22, "/with space/x")),
        ("sftp://u@[::1]:2022//srv/store", ("u", "::1", 2022, "/srv/store")),
        ("sftp://host:0/rel", (None, "host", None, "rel")),
    ],
)
def test_parse_url(url, expected):
    """User, host, port and path come out of the URL, percent-decoded; //path is absolute."""
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    "url", ["sftp://host", "sftp://host/", "sftp:///path", "sftp:host/path", "sftp://host:99999/p", "sftp://h:x/p"]
)
def test_bad_urls_are_rejected(url):
    """A malformed sftp URL raises BackendURLInvalid naming it, before any connection."""
    with pytest.raises(BackendURLInvalid) as excinfo:
        sftp_backend_from_url(url)
    assert url in str(excinfo.value)


def test_bad_options_are_rejected():
    """Unknown option names are refused by the core (the spec names the options); bad values
    by the backend."""
    from borgstore.store import get_backend

    with pytest.raises(ValueError, match="unknown option.*sftp.*colour"):
        get_backend("sftp://h/p", colour="blue")
    with pytest.raises(ValueError, match="durability"):
        sftp_backend_from_url("sftp://h/p", durability="sometimes")
    with pytest.raises(ValueError, match="ssh_config"):
        sftp_backend_from_url("sftp://h/p", ssh_config="/no/such/config")
    for option, value in (("timeout", 0), ("timeout", "5"), ("connect_timeout", -1), ("keepalive", -1)):
        with pytest.raises(ValueError, match=option):
            sftp_backend_from_url("sftp://h/p", **{option: value})


@pytest.mark.parametrize("option, value", [("retries", 5), ("retry_time", 60.0)])
def test_retired_retry_options_say_where_retrying_went(option, value):
    """The backend's own retry options are gone: passing one (through the core, which still knows
    the names) raises a ValueError naming it and the retry middleware that replaced it."""
    from borgstore.store import Store, get_backend

    for make in (
        lambda: get_backend("sftp://h/p", **{option: value}),
        lambda: Store("sftp://h/p", config=CONFIG, backend_options={option: value}),
    ):
        with pytest.raises(ValueError) as excinfo:
            make()
        assert option in str(excinfo.value) and "'retry' middleware" in str(excinfo.value)


def test_the_sftp_scheme_is_registered_through_the_entry_point(sshd):
    """get_backend() finds this distribution's backend for sftp URLs."""
    from borgstore_backend_sftp import SftpBackend

    from borgstore.store import get_backend

    assert isinstance(get_backend("sftp://somehost/some/path"), SftpBackend)


# --- host keys ---


def test_unknown_host_key_fails_with_its_fingerprint_and_is_not_added(sshd, tmp_path):
    """No known key: UnknownHostKey naming the offered key's fingerprint and how to add it;
    known_hosts stays as it was."""
    config, known = private_config(sshd, tmp_path, known_hosts="")
    with pytest.raises(UnknownHostKey) as excinfo:
        open_backend(sshd, config, "//" + str(tmp_path))
    message = str(excinfo.value)
    assert ssh_fingerprint(str(sshd.host_key) + ".pub") in message
    assert "ssh-keyscan" in message and f"[127.0.0.1]:{sshd.port}" in message
    assert known.read_text() == ""


def test_changed_host_key_fails_loudly(sshd, tmp_path):
    """A different key on record for the server: HostKeyChanged showing both fingerprints."""
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config, known = private_config(sshd, tmp_path, known_hosts=sshd.host_key_line(other))
    with pytest.raises(HostKeyChanged) as excinfo:
        open_backend(sshd, config, "//" + str(tmp_path))
    message = str(excinfo.value)
    assert "CHANGED" in message
    assert ssh_fingerprint(str(sshd.host_key) + ".pub") in message
    assert ssh_fingerprint(str(other) + ".pub") in message
    assert known.read_text() == sshd.host_key_line(other)


def test_changed_key_of_another_type_is_not_accepted_instead(sshd, tmp_path):
    """Only an ecdsa key is known: the server's ed25519 key must not be taken as new and fine."""
    other = tmp_path / "ecdsa_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(other)], check=True)
    config, _ = private_config(sshd, tmp_path, known_hosts=sshd.host_key_line(other))
    with pytest.raises((HostKeyChanged, BackendConnectionError)):
        open_backend(sshd, config, "//" + str(tmp_path))


def test_hashed_known_hosts_entries_are_understood(sshd, tmp_path):
    """known_hosts hashed by ssh-keygen -H (the Debian default) still verifies the server."""
    config, known = private_config(sshd, tmp_path)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert f"[127.0.0.1]:{sshd.port}" not in known.read_text()
    (tmp_path / "s").mkdir()
    open_backend(sshd, config, "//" + str(tmp_path / "s")).close()


# --- authentication and paths ---


def test_wrong_user_fails_authentication(sshd, tmp_path):
    """A user the server does not accept: AuthenticationFailed naming the user, not retried."""
    url = f"sftp://nosuchuser@127.0.0.1:{sshd.port}//{tmp_path}"
    backend = sftp_backend_from_url(url, ssh_config=str(sshd.ssh_config), use_agent=False, **PARAMIKO)
    with pytest.raises(AuthenticationFailed, match="nosuchuser"):
        backend.open()


def test_no_usable_key_fails_authentication(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no default ~/.ssh/id_* keys
    config, _ = private_config(sshd, tmp_path, identity=False)
    with pytest.raises(AuthenticationFailed, match="refused"):
        open_backend(sshd, config, "//" + str(tmp_path))


def test_agent_keys_are_used(sshd, tmp_path, monkeypatch, require_binary):
    """With no IdentityFile, a key held by a running ssh-agent logs in."""
    require_binary("ssh-agent")
    require_binary("ssh-add")
    monkeypatch.setenv("HOME", str(tmp_path))
    config, _ = private_config(sshd, tmp_path, identity=False)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True, env=env, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        (tmp_path / "s").mkdir()
        open_backend(sshd, config, "//" + str(tmp_path / "s"), use_agent=True).close()
        with pytest.raises(AuthenticationFailed):
            open_backend(sshd, config, "//" + str(tmp_path / "s"), use_agent=False)
    finally:
        agent.terminate()
        agent.wait()


def test_missing_store_path(sshd, tmp_path):
    """open() of a path that does not exist, absolute or relative: BackendDoesNotExist."""
    for url in (sshd.url("//" + str(tmp_path / "missing"), alias=False), sshd.url("no/such/store")):
        backend = sftp_backend_from_url(url, **sshd.backend_options())
        with pytest.raises(BackendDoesNotExist):
            backend.open()


def test_ssh_config_supplies_hostname_port_user_and_key(sshd, tmp_path):
    """The alias in the URL is resolved through the ssh config: HostName, Port, User, IdentityFile
    and UserKnownHostsFile all come from there (the URL names none of them)."""
    (sshd.home / "cfg-store").mkdir(exist_ok=True)
    backend = sftp_backend_from_url(f"sftp://{HOST_ALIAS}/cfg-store", **sshd.backend_options())
    backend.open()
    backend.store("x", b"via alias")
    backend.close()
    assert (sshd.home / "cfg-store" / "x").read_bytes() == b"via alias"


class SilentListener:
    """A TCP listener that accepts connections and never says a word (a frozen server)."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.accepted = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept)

    def _accept(self):
        while not self._stop.is_set():
            try:
                self.accepted.append(self.socket.accept()[0])
            except OSError:
                pass

    def count(self, expected: int) -> int:
        """How many connections came, once *expected* came (or a few seconds passed)."""
        deadline = time.monotonic() + 5
        while len(self.accepted) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # room for one too many to show up
        return len(self.accepted)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for s in self.accepted:
            s.close()
        self.socket.close()


def test_connect_timeout_on_a_silent_server(tmp_path, sshd):
    """A server that accepts TCP but never speaks SSH: BackendTimeout after connect_timeout, from
    one try per call; through the retry middleware one connection per attempt, then the timeout."""
    from borgstore.store import Store

    with SilentListener() as listener:
        url = f"sftp://root@127.0.0.1:{listener.port}//x"
        options = {"ssh_config": str(sshd.ssh_config), "connect_timeout": 0.5}
        backend = sftp_backend_from_url(url, **options)
        started = time.monotonic()
        with pytest.raises(BackendTimeout) as excinfo:
            backend.open()
        assert time.monotonic() - started < 0.5 + 5
        assert excinfo.value.temporary and not excinfo.value.maybe_applied
        assert listener.count(1) == 1
        retry = ("retry", {"attempts": 3, "first_delay": 0.01, "max_delay": 0.01, "budget": 30.0})
        store = Store(url, config=CONFIG, backend_options=options, middleware=[retry])
        with pytest.raises(BackendTimeout, match="3 tries"):
            store.open()
        assert listener.count(1 + 3) == 1 + 3
        assert store.stats["retry_attempts"] == 2


def test_timeout_is_also_the_connect_timeout(tmp_path, sshd):
    """Without connect_timeout, a connect waits for the server as long as any other wait: timeout."""
    with SilentListener() as listener:
        backend = sftp_backend_from_url(
            f"sftp://root@127.0.0.1:{listener.port}//x", ssh_config=str(sshd.ssh_config), timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            backend.open()
        assert time.monotonic() - started < 0.5 + 5


def test_connect_failures_are_temporary_connection_errors(sshd):
    """Nothing listens at the port (ECONNREFUSED), or the name does not resolve: a temporary
    BackendConnectionError naming where, never a permanent error."""
    for url in (f"sftp://root@127.0.0.1:{_closed_port()}//x", "sftp://root@no-such-host.invalid//x"):
        backend = sftp_backend_from_url(url, ssh_config=str(sshd.ssh_config), connect_timeout=5, **PARAMIKO)
        with pytest.raises(BackendConnectionError) as excinfo:
            backend.open()
        assert excinfo.value.temporary and not excinfo.value.maybe_applied
        assert "cannot connect to" in str(excinfo.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_proxy_command_from_the_ssh_config(sshd, tmp_path, require_binary):
    """A ProxyCommand in the ssh config carries the connection (here: ssh -W through the same sshd)."""
    require_binary("ssh")
    config = tmp_path / "proxy_config"
    config.write_text(
        "Host viaproxy\n"
        "    HostName 127.0.0.1\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {sshd.client_key}\n"
        f"    UserKnownHostsFile {sshd.known_hosts}\n"
        f"    ProxyCommand ssh -F {sshd.ssh_config} -o BatchMode=yes -W %h:%p {HOST_ALIAS}\n"
    )
    (tmp_path / "s").mkdir()
    backend = sftp_backend_from_url(
        f"sftp://viaproxy//{tmp_path / 's'}", ssh_config=str(config), use_agent=False, **PARAMIKO
    )
    backend.open()
    backend.store("x", b"through the proxy")
    backend.close()
    assert (tmp_path / "s" / "x").read_bytes() == b"through the proxy"


def test_host_key_alias_names_the_known_hosts_entry(sshd, tmp_path):
    """HostKeyAlias in the ssh config: the key is looked up under the alias, not host:port."""
    key_line = sshd.host_key_line().split(" ", 1)[1]
    config, _ = private_config(sshd, tmp_path, known_hosts=f"my-nas-alias {key_line}")
    with pytest.raises(UnknownHostKey):
        open_backend(sshd, config, "//" + str(tmp_path))
    config.write_text(config.read_text() + "    HostKeyAlias my-nas-alias\n")
    (tmp_path / "s").mkdir()
    open_backend(sshd, config, "//" + str(tmp_path / "s")).close()


def test_system_known_hosts_are_used(sshd, tmp_path):
    """A key only in the GlobalKnownHostsFile (the system-wide list) verifies the server too."""
    config, _ = private_config(sshd, tmp_path, known_hosts="")
    system_file = tmp_path / "ssh_known_hosts"
    system_file.write_text(sshd.host_key_line())
    config.write_text(config.read_text() + f"    GlobalKnownHostsFile {system_file}\n")
    (tmp_path / "s").mkdir()
    open_backend(sshd, config, "//" + str(tmp_path / "s")).close()


def test_percent_encoded_path_reaches_the_right_directory(sshd, tmp_path):
    """%20 and %25 in the URL path are decoded: the store lands in 'a b%c' on the server."""
    url = f"sftp://{HOST_ALIAS}/{str(tmp_path).lstrip('/')}/a%20b%25c"
    backend = sftp_backend_from_url(url.replace(f"{HOST_ALIAS}/", f"{HOST_ALIAS}//"), **sshd.backend_options())
    backend.create()
    backend.open()
    backend.store("x", b"1")
    backend.close()
    assert (tmp_path / "a b%c" / "x").read_bytes() == b"1"


@pytest.mark.parametrize("problem", ["unknown key", "changed key", "wrong user"])
def test_permanent_connect_failures_are_never_retried(sshd, tmp_path, monkeypatch, problem):
    """Host key and authentication failures are permanent: a Store's default chain, whose retry
    middleware retries temporary errors, connects once and reports them."""
    from borgstore_backend_sftp import _connect

    from borgstore.store import Store

    tries = []
    real_connect = _connect.connect

    def counting_connect(*args, **kwargs):
        tries.append(1)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(_connect, "connect", counting_connect)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = {"unknown key": "", "changed key": sshd.host_key_line(other), "wrong user": None}[problem]
    config, _ = private_config(sshd, tmp_path, known_hosts=known)
    user = "nosuchuser" if problem == "wrong user" else sshd.user
    store = Store(
        f"sftp://{user}@127.0.0.1:{sshd.port}//{tmp_path}",
        config=CONFIG,
        backend_options={"ssh_config": str(config), "use_agent": False, **PARAMIKO},
    )
    assert "retry" in store.middleware
    with pytest.raises((UnknownHostKey, HostKeyChanged, AuthenticationFailed)) as excinfo:
        store.open()
    assert not excinfo.value.temporary
    assert len(tries) == 1
    assert store.stats["retry_attempts"] == 0
