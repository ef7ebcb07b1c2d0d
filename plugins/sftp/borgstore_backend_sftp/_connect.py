"""Opening an authenticated SSH connection the way OpenSSH would: its config, its known_hosts.

Host keys are always verified against the known_hosts files, and nothing is ever added to them:
an unknown or changed key stops the connection with an error saying what to check and how to
fix it.  Those errors, and a refused login, are permanent (never retried); a server that cannot
be reached is a BackendConnectionError, one that does not answer in time a BackendTimeout.
"""

import base64
import getpass
import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from borgstore.backends.errors import BackendConnectionError, BackendError, BackendTimeout

from ._errors import connection_error

SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
USER_SSH_CONFIG = "~/.ssh/config"
DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")

# host key algorithms a known_hosts key type may be verified with
_ALGORITHMS_FOR_KEY_TYPE = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}


class HostKeyError(BackendError):
    """The server's host key could not be verified.  Permanent: retrying cannot help."""


class UnknownHostKey(HostKeyError):
    """No known_hosts file has a key for this server."""


class HostKeyChanged(HostKeyError):
    """The server offered a key different from the one known_hosts has: maybe an attack."""


class AuthenticationFailed(BackendError):
    """The server refused every key we had.  Permanent: retrying cannot help."""


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _known_hosts_name(target: "Target") -> str:
    # OpenSSH looks a HostKeyAlias up without the port
    return target.host_key_alias or known_hosts_name(target.host, target.port)


@dataclass
class Target:
    """Where and how to connect, after merging the URL, the ssh config and the options."""

    alias: str
    host: str
    port: int
    user: str
    identity_files: list
    identities_only: bool
    user_known_hosts: list
    global_known_hosts: list
    proxy_command: str | None = None
    host_key_alias: str | None = None
    keepalive: float = 0.0
    config_files: list = field(default_factory=list)


def _split_paths(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split()
    return [os.path.expanduser(v) for v in value if v.lower() != "none"]


def resolve(host: str, port: int | None, user: str | None, ssh_config: str | None) -> Target:
    """Merge what the URL says with the ssh config, as OpenSSH does (the URL wins).

    *ssh_config*: a config file to read instead of ``~/.ssh/config`` and ``/etc/ssh/ssh_config``
    (like ``ssh -F``); None reads those two."""
    if ssh_config is not None:
        files = [os.path.expanduser(ssh_config)]
        if not os.path.isfile(files[0]):
            raise ValueError(f"ssh_config {ssh_config!r} is not a file")
    else:
        files = [p for p in (os.path.expanduser(USER_SSH_CONFIG), SYSTEM_SSH_CONFIG) if os.path.isfile(p)]
    config = paramiko.SSHConfig()
    for path in files:
        # user config first: the first value obtained for a setting wins, as in OpenSSH
        with open(path) as f:
            config.parse(f)
    options = config.lookup(host)
    resolved_port = port or int(options.get("port", 22))
    identity_files = _split_paths(options.get("identityfile"))
    user_known = _split_paths(options.get("userknownhostsfile")) or [
        os.path.expanduser(p) for p in DEFAULT_USER_KNOWN_HOSTS
    ]
    global_known = _split_paths(options.get("globalknownhostsfile")) or list(DEFAULT_GLOBAL_KNOWN_HOSTS)
    return Target(
        alias=host,
        host=options.get("hostname", host),
        port=resolved_port,
        user=user or options.get("user") or getpass.getuser(),
        identity_files=identity_files,
        identities_only=options.get("identitiesonly", "no").lower() == "yes",
        user_known_hosts=user_known,
        global_known_hosts=global_known,
        proxy_command=options.get("proxycommand") if options.get("proxycommand", "none").lower() != "none" else None,
        host_key_alias=options.get("hostkeyalias"),
        keepalive=float(options.get("serveraliveinterval", 0) or 0),
        config_files=files,
    )


def _load_known_hosts(target: Target) -> paramiko.HostKeys:
    known = paramiko.HostKeys()
    for path in target.user_known_hosts + target.global_known_hosts:
        if os.path.isfile(path):
            try:
                known.load(path)
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(f"cannot read known_hosts file {path}: {exc}") from exc
    return known


def _host_key_algorithms(known_types) -> list:
    """The host key algorithms that verify the known key types, in paramiko's order."""
    wanted: set[str] = set()
    for key_type in known_types:
        wanted.update(_ALGORITHMS_FOR_KEY_TYPE.get(key_type, (key_type,)))
    return [a for a in paramiko.Transport._preferred_keys if a in wanted] + sorted(
        wanted - set(paramiko.Transport._preferred_keys)
    )


def _verify_host_key(transport: paramiko.Transport, target: Target, known_for_host):
    offered = transport.get_remote_server_key()
    name = _known_hosts_name(target)
    files = ", ".join(target.user_known_hosts + target.global_known_hosts)
    if not known_for_host:
        keyscan_port = "" if target.port == 22 else f"-p {target.port} "
        raise UnknownHostKey(
            f"the host key of {name} is not known (looked in: {files}).  "
            f"The server offered a {offered.get_name()} key with fingerprint {fingerprint(offered)}.  "
            "Check this fingerprint with the server's administrator, then add the key to your "
            f"known_hosts, e.g. with: ssh-keyscan {keyscan_port}-t {offered.get_name()} {target.host} "
            f">> {target.user_known_hosts[0]}  (or connect once with ssh and confirm it).  "
            "Keys are never added automatically."
        )
    expected = known_for_host.get(offered.get_name())
    if expected is None:
        for key in known_for_host.values():
            if key.get_name() == offered.get_name():
                expected = key
    if expected is None or expected.asbytes() != offered.asbytes():
        known_list = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in known_for_host.values())
        raise HostKeyChanged(
            f"WARNING: THE HOST KEY OF {name} HAS CHANGED!  Someone could be intercepting the "
            f"connection (man-in-the-middle), or the server's key was replaced.  The server offered "
            f"{offered.get_name()} {fingerprint(offered)}; known_hosts ({files}) has {known_list}.  "
            f"Refusing to connect.  If the change is legitimate, remove the old key with "
            f"ssh-keygen -R '{name}' and add the new one after checking its fingerprint."
        )


def _candidate_keys(target: Target, use_agent: bool):
    """Return ([(description, key)] in the order OpenSSH would try them, the agent or None).

    The agent connection must stay open until authentication is over: agent keys sign through it."""
    agent = None
    agent_keys = []
    if use_agent and os.environ.get("SSH_AUTH_SOCK"):
        try:
            agent = paramiko.Agent()
            agent_keys = list(agent.get_keys())
        except (paramiko.SSHException, OSError):
            agent_keys = []  # a stale SSH_AUTH_SOCK: go on with the key files
    identity_files = target.identity_files or (
        [] if target.identities_only else [os.path.expanduser(p) for p in DEFAULT_IDENTITIES]
    )
    file_blobs = set()
    loaded = []
    for path in identity_files:
        if not os.path.isfile(path):
            continue
        try:
            key = paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            # an encrypted key can still be used through the agent (matched by public key below)
            pub = Path(path + ".pub")
            if pub.is_file():
                file_blobs.add(pub.read_text().split()[1])
            continue
        except (paramiko.SSHException, OSError, ValueError):
            continue
        file_blobs.add(key.get_base64())
        loaded.append((f"key file {path}", key))
    candidates = [
        (f"agent key {fingerprint(key)}", key)
        for key in agent_keys
        if not target.identities_only or key.get_base64() in file_blobs
    ]
    return candidates + loaded, agent


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges every received segment at once.

    sshd leaves Nagle's algorithm on for sftp sessions, so a small packet that follows another
    unacknowledged one (the channel confirmation after the host keys notice, a reply after a
    reply) waits for our ACK, and Linux delays ACKs by up to 40 ms.  That cost 40 ms on every
    connect.  TCP_QUICKACK is not sticky, so it is set again after each receive."""

    def recv(self, *args):
        data = super().recv(*args)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    if not hasattr(socket, "TCP_QUICKACK"):  # not Linux: a plain socket
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    last_error = OSError(f"no address for {host}")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = _QuickAckSocket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last_error


def _authenticate(transport: paramiko.Transport, target: Target, use_agent: bool):
    """Log in with the first key the server accepts; none: AuthenticationFailed naming them."""
    tried = []
    candidates, agent = _candidate_keys(target, use_agent)
    try:
        for description, key in candidates:
            tried.append(description)
            started = time.monotonic()
            try:
                transport.auth_publickey(target.user, key)
            except paramiko.AuthenticationException as exc:
                # paramiko says "authentication failed" also when no answer came in time or the
                # connection died: only a live server's refusal is a refusal
                if time.monotonic() - started >= transport.auth_timeout:
                    raise BackendTimeout(
                        f"SSH authentication with {target.host}: no answer within {transport.auth_timeout} s"
                    ) from exc
                if not transport.is_active():
                    raise BackendConnectionError(f"SSH authentication with {target.host} broke off: {exc}") from exc
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise BackendConnectionError(f"SSH authentication with {target.host} broke off: {exc}") from exc
            if transport.is_authenticated():
                return
    finally:
        if agent is not None:
            agent.close()
    raise AuthenticationFailed(
        f"{target.host} port {target.port} refused public key authentication for user "
        f"{target.user!r}; tried: {', '.join(tried) or 'no keys (no agent, no readable key files)'}.  "
        "Check the user name, the IdentityFile in your ssh config and the server's authorized_keys."
    )


def _handshake(transport: paramiko.Transport, where: str, connect_timeout: float):
    """The SSH handshake (banner, key exchange) within *connect_timeout*: BackendTimeout if the
    server did not finish it in time, BackendConnectionError if it failed."""
    negotiated = threading.Event()
    started = time.monotonic()
    try:
        transport.start_client(event=negotiated)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise BackendConnectionError(f"SSH handshake with {where} failed: {exc}") from exc
    if not negotiated.wait(connect_timeout):
        raise BackendTimeout(f"SSH handshake with {where} did not finish within {connect_timeout} s")
    if not transport.is_active():
        # paramiko ends a banner wait that timed out with a generic error: the clock tells
        if time.monotonic() - started >= connect_timeout:
            raise BackendTimeout(f"SSH handshake with {where}: no answer within {connect_timeout} s")
        raise BackendConnectionError(f"SSH handshake with {where} failed: {transport.get_exception()}")


def connect(target: Target, *, use_agent: bool, connect_timeout: float, keepalive: float):
    """Return an authenticated paramiko Transport, verified against known_hosts."""
    known = _load_known_hosts(target)
    known_for_host = known.lookup(_known_hosts_name(target)) or {}
    where = f"{target.host} port {target.port}"
    try:
        if target.proxy_command:
            sock = paramiko.ProxyCommand(target.proxy_command)
        else:
            sock = _open_socket(target.host, target.port, connect_timeout)
    except (OSError, paramiko.SSHException) as exc:  # ProxyCommandFailure is an SSHException
        # the errno's class where it names one (refused, unreachable: temporary; EACCES: denied),
        # else BackendConnectionError (a name that does not resolve, say)
        raise connection_error(f"cannot connect to {where}", exc) from exc
    transport = paramiko.Transport(sock, default_window_size=8 << 20)
    try:
        transport.banner_timeout = connect_timeout
        transport.auth_timeout = connect_timeout
        transport.handshake_timeout = connect_timeout
        options = transport.get_security_options()
        if known_for_host:
            # prefer the algorithms of the keys we know, so the server shows one we can check;
            # the others stay allowed so that a server without them is reported as a changed key
            preferred = _host_key_algorithms(known_for_host.keys())
            options.key_types = tuple(preferred) + tuple(a for a in options.key_types if a not in preferred)
        # AES-GCM needs no separate MAC pass and is the fastest cipher paramiko has
        options.ciphers = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") + tuple(
            c for c in options.ciphers if "gcm" not in c
        )
        _handshake(transport, where, connect_timeout)
        _verify_host_key(transport, target, known_for_host)
        _authenticate(transport, target, use_agent)
        if keepalive:
            transport.set_keepalive(int(max(keepalive, 1)))
        return transport
    except BaseException:
        transport.close()
        raise
