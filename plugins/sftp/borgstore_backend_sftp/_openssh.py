"""The ``openssh`` transport: sftp sessions through the system's own ``ssh`` client.

Each session is one ``ssh -s <host> sftp`` process whose stdin and stdout are one end of a
socketpair: our end is a real socket with ``sendall``/``recv``/``settimeout``/``close``, which is
all that :class:`_protocol.Session` asks of a channel.  OpenSSH does the encryption in C (and in
its own process, beside ours), and the user's whole ssh config applies: ProxyJump,
ControlMaster, Match blocks, the agent, passphrase keys in the agent.

Several sessions are several processes (each its own SSH connection, unless the user's config
shares one with ControlMaster); a new connection is a new process.  Host keys are checked
strictly whatever the config says (``StrictHostKeyChecking=yes``, ``UpdateHostKeys=no``), and
nothing prompts (``BatchMode=yes``).  A process ends when its session is closed, and by itself
when we die: its stdin, our socket, reaches end of file.

Ciphers: when the config leaves them at OpenSSH's defaults and the CPU has AES instructions,
AES-GCM is moved to the front of OpenSSH's own list (see :func:`preferred_ciphers`); a config
that sets ``Ciphers`` is obeyed as it is.  A config that would break the session for this host
(a ``RemoteCommand``, ``ForkAfterAuthentication``, ``StdinNull``) is undone on the command line
(:data:`SESSION_GUARDS`).
"""

import functools
import itertools
import os
import shutil
import socket
import subprocess

from borgstore.backends.errors import BackendConnectionError, BackendError, BackendTimeout
from borgstore.backends.toolkit import SocketProcess

from . import _protocol as p
from ._connect import AuthenticationFailed, HostKeyChanged, HostKeyError, UnknownHostKey
from ._pool import SessionSlots

# what ssh's stderr says -> the error to raise, tried in this order (ssh's messages are stable
# across OpenSSH releases; an unknown message is a lost connection)
_STDERR_ERRORS = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", HostKeyChanged),
    ("has changed and you have requested strict checking", HostKeyChanged),
    ("Host key verification failed", UnknownHostKey),
    ("host key is known for", UnknownHostKey),
    ("Permission denied", AuthenticationFailed),
    ("timed out", BackendTimeout),
    ("Connection timed out", BackendTimeout),
)

_FIXES = {
    HostKeyChanged: "the server's host key differs from the one in known_hosts: check with the server's "
    "administrator, then replace the old key (ssh-keygen -R <host>)",
    UnknownHostKey: "the server's host key is not in known_hosts: check its fingerprint with the server's "
    "administrator, then connect once with ssh to add it (or use ssh-keyscan)",
    AuthenticationFailed: "the server refused the login: check the user name, the IdentityFile of your ssh "
    "config, the agent and the server's authorized_keys",
}


def usable_here() -> bool:
    """Whether ssh can run here and would read the ~/.ssh that this process's HOME names.

    The transport hands ssh a socket as its stdin and stdout, which needs POSIX.  ssh finds
    ~/.ssh through the password database, not HOME, and refuses to run for a user id that has no
    entry there (a container run as an arbitrary uid); paramiko, like the PyPI release, follows
    HOME.  Where the two differ, the backend's ``auto`` keeps the files the user pointed at."""
    if os.name != "posix" or shutil.which("ssh") is None:
        return False
    import pwd

    try:
        entry = pwd.getpwuid(os.getuid())
    except KeyError:
        return False
    return os.path.realpath(entry.pw_dir) == os.path.realpath(os.path.expanduser("~"))


def find_ssh() -> str:
    """The ssh client's path; BackendError naming what to install if there is none."""
    path = shutil.which("ssh")
    if path is None:
        raise BackendError(
            "transport='openssh' needs the OpenSSH client 'ssh' on PATH, and there is none "
            "(Debian/Ubuntu: apt-get install openssh-client; or use transport='paramiko')"
        )
    return path


#: with AES instructions these move data 1.2-1.5x as fast as chacha20-poly1305, OpenSSH's first
#: choice (docs/sftp.md, "Ciphers"); paramiko's transport prefers them too
GCM_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@functools.cache
def cpu_has_aes(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU announces AES instructions (the x86 flag or arm64 feature ``aes``).

    False where there is no /proc/cpuinfo: without AES instructions chacha20-poly1305 is the
    faster cipher, so OpenSSH's order is kept when we cannot tell."""
    try:
        with open(cpuinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and "aes" in value.split():
            return True
    return False


#: options that undo what a config may set for a host and an sftp session cannot work with:
#: ``ssh -s`` refuses a RemoteCommand (OpenSSH 7.6), and ForkAfterAuthentication and StdinNull
#: (8.7) take ssh off our socket.  Command-line options win over every config file.
SESSION_GUARDS = {"RemoteCommand": "none", "ForkAfterAuthentication": "no", "StdinNull": "no"}


@functools.cache
def session_guards(ssh: str) -> tuple:
    """The ``-o`` arguments of the SESSION_GUARDS that *ssh* knows (an older ssh refuses an
    option it does not know, so each is tried with ``ssh -G`` first; once per process)."""

    def known(*options: str) -> bool:
        command = [ssh, "-G", "-F", os.devnull, *options, "--", "localhost"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0

    pairs = [("-o", f"{option}={value}") for option, value in SESSION_GUARDS.items()]
    if not known(*itertools.chain.from_iterable(pairs)):
        pairs = [pair for pair in pairs if known(*pair)]
    return tuple(itertools.chain.from_iterable(pairs))


def _resolved_ciphers(command: list, timeout: float) -> list | None:
    """The ciphers ``ssh -G`` resolves for *command*, or None if it could not tell."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "ciphers":
            return value.strip().split(",")
    return None


def preferred_ciphers(ssh, host, port, user, *, ssh_config, timeout: float) -> str | None:
    """The ``Ciphers`` value to pass: OpenSSH's default list with AES-GCM first, or None to leave
    ssh's own choice alone.

    None unless the CPU has AES instructions and ``ssh -G`` resolves the same ciphers for this
    host with the user's config as with no config at all: a command-line option wins over every
    config file, so one set in a config (a policy, a server that needs an old cipher) must not be
    replaced.  The list keeps every cipher OpenSSH offers, so a server without AES-GCM still
    agrees on one."""
    if not cpu_has_aes():
        return None

    def resolve(config_file: list) -> list | None:
        # with the session's guards: ssh -G refuses a ForkAfterAuthentication without a command
        command = [ssh, "-G", *config_file, *session_guards(ssh), *_destination(host, port, user)]
        return _resolved_ciphers(command, timeout)

    configured, defaults = resolve(_config_file(ssh_config)), resolve(["-F", os.devnull])
    if configured is None or configured != defaults:
        return None
    first = [cipher for cipher in GCM_CIPHERS if cipher in defaults]
    if not first or defaults[: len(first)] == first:
        return None
    return ",".join(first + [cipher for cipher in defaults if cipher not in first])


def _config_file(ssh_config) -> list:
    return [] if ssh_config is None else ["-F", os.path.expanduser(ssh_config)]


def _destination(host, port, user) -> list:
    return (["-p", str(port)] if port else []) + (["-l", user] if user else []) + ["--", host]


def ssh_command(ssh, host, port, user, *, ssh_config, use_agent, connect_timeout, keepalive, ciphers=None) -> list:
    """The ssh command line for one sftp session on *host* (*ciphers*: see preferred_ciphers)."""
    command = [ssh, "-x", "-a", "-T", "-e", "none", "-s"] + _config_file(ssh_config)
    options = {
        # command-line options win over every config file: these cannot be weakened
        "BatchMode": "yes",
        "StrictHostKeyChecking": "yes",
        "UpdateHostKeys": "no",
        "ClearAllForwardings": "yes",
        "PermitLocalCommand": "no",
        "ConnectTimeout": str(max(1, round(connect_timeout))),
    }
    if not use_agent:
        options["IdentityAgent"] = "none"
    if keepalive:
        options["ServerAliveInterval"] = str(max(1, round(keepalive)))
    if ciphers:
        options["Ciphers"] = ciphers
    for name, value in options.items():
        command += ["-o", f"{name}={value}"]
    return command + list(session_guards(ssh)) + _destination(host, port, user) + ["sftp"]


class Process(SocketProcess):
    """One ssh process and our end of its socketpair."""

    def error_text(self, wait: float = 2.0) -> str:
        """What ssh wrote to stderr (after it ended, if that happens within *wait* seconds)."""
        try:
            self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            pass
        return self.stderr_tail()

    def close(self):
        """End the process: close our socket (ssh sees end of file), then kill and reap it."""
        try:
            # shutdown first: it wakes a thread blocked in recv on this socket, close does not
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.socket.close()
        self.reap(kill=True)


class ProcessChannel:
    """The channel a Session speaks through: our socket, and the process closed with it."""

    def __init__(self, process: Process):
        self.process = process
        self.sock = process.socket

    def sendall(self, data):
        self.sock.sendall(data)

    def recv(self, size):
        return self.sock.recv(size)

    def settimeout(self, timeout):
        self.sock.settimeout(timeout)

    def close(self):
        self.process.close()


def _start_failed(process: Process, where: str, exc: BaseException) -> BackendError:
    """The error for an ssh process that did not give us an sftp session."""
    text = process.error_text()
    quoted = f" (ssh said: {text})" if text else ""
    for needle, cls in _STDERR_ERRORS:
        if needle in text:
            fix = _FIXES.get(cls)
            message = f"ssh to {where} failed{quoted}"
            return cls(f"{message}; {fix}" if fix else message)
    if isinstance(exc, p.Timeout):
        return BackendTimeout(f"ssh to {where}: no sftp session within the timeout{quoted}")
    code = process.popen.poll()
    status = f"ssh exited with status {code}" if code is not None else f"{exc}"
    return BackendConnectionError(f"ssh to {where}: no sftp session: {status}{quoted}")


class OpensshConnection(SessionSlots):
    """Sessions through ssh processes, with the interface of _pool.Connection.

    The first session is started at once, so that a refused host key or login is reported by
    the connect, as with paramiko."""

    def __init__(self, command: list, where: str, connect_timeout: float, timeout: float):
        super().__init__()
        self.command = command
        self.where = where
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._processes: set[Process] = set()  # every running process, busy or idle
        self.idle.append(self._open())
        self.count = 1

    def alive(self) -> bool:
        return not self.dead

    def _open(self) -> p.Session:
        try:
            process = Process(self.command)
        except OSError as exc:  # ssh vanished, or cannot be executed
            raise start_process_error(exc) from exc
        with self.ready:
            self._processes.add(process)
            if self.dead:  # closed while we started it
                self._processes.discard(process)
                process.close()
                raise p.ConnectionLost("the connection was closed")
        try:
            # the first reply waits for ssh's connect, handshake and login as well
            session = p.Session(ProcessChannel(process), self.connect_timeout + self.timeout)
        except p.ConnectionLost as exc:
            error = _start_failed(process, self.where, exc)
            self._end(process)
            raise error from None
        except BaseException:
            self._end(process)
            raise
        session.timeout = self.timeout
        process.socket.settimeout(self.timeout)
        return session

    def _open_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (BackendTimeout, BackendConnectionError)) and not isinstance(exc, HostKeyError):
            # a later session that cannot start: the server went away, as a lost connection
            return (p.Timeout if isinstance(exc, BackendTimeout) else p.ConnectionLost)(str(exc))
        return exc

    def _discarded(self, session: p.Session) -> None:
        self._processes.discard(session.channel.process)

    def _end(self, process: Process):
        with self.ready:
            self._processes.discard(process)
        process.close()

    def close(self):
        """End every process, the busy ones too (their sessions fail as a lost connection)."""
        with self.ready:
            self.dead = True
            self.idle = []
            processes, self._processes = self._processes, set()
            self._wake_all()
        for process in processes:
            process.close()


def start_process_error(exc: OSError) -> BackendError:
    """The error for an ssh binary that could not be run at all."""
    return BackendError(
        f"cannot run the OpenSSH client 'ssh': {exc} (use transport='paramiko', or install openssh-client)"
    )
