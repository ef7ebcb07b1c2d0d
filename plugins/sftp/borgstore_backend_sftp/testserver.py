"""A throwaway OpenSSH sshd on 127.0.0.1 for tests and benchmarks.

It runs the system's real ``sshd`` with everything it needs in one private directory: its own
host key, a client key that is its only authorized key, a ``known_hosts`` file that lists its host
key, and an ssh config file (``ssh_config``) that a client is given instead of ``~/.ssh/config``.
Nothing of the user's own ssh set-up is read or changed.

    with TestSSHServer(workdir) as server:
        url = server.url("//" + str(server.workdir / "store"))
        backend = get_backend(url)  # with backend options server.backend_options()
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from borgstore.backends.toolkit import free_local_port

HOST_ALIAS = "borgstore-test-sshd"


def find_sshd() -> str | None:
    """The sshd binary, or None if OpenSSH's server is not installed."""
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


# capability numbers of linux/capability.h, and prctl's PR_CAPBSET_DROP
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
_PR_CAPBSET_DROP = 24


def _drop_capabilities(*capabilities):
    """Remove *capabilities* from the bounding set: root's programs started from here on lack them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in capabilities:
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"cannot drop capability {capability}")


def _keygen(path: Path, comment: str):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


class TestSSHServer:
    """A real sshd serving sftp on 127.0.0.1 at a free port; see the module docstring.

    :param workdir: a private directory for keys, config and logs (created if missing).
    :param user: the login user (default: the current user).
    :param sftp_options: more options for the server's internal-sftp, e.g. ``-P fsync`` to refuse
        a request.
    :param sshd_options: more sshd_config lines, e.g. ``"MaxSessions 2"``; they come first, so
        they also override the defaults (``"LogLevel DEBUG1"``).
    :param file_size_limit: the largest file the server may write (RLIMIT_FSIZE), to make writes
        fail on the server as a full disk would.
    :param open_files_limit: the file descriptors each server process may have (RLIMIT_NOFILE),
        to make opens fail on the server with a generic failure (EMFILE).
    :param obey_file_modes: started by root, the server still obeys file modes (it runs without
        CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so that a test can make a directory that the
        login user cannot read.  Without root, file modes apply anyway.
    """

    __test__ = False  # not a pytest test class, despite its name

    #: the backend option ``transport`` that backend_options() gives (the tests set it per run)
    transport = "paramiko"

    def __init__(
        self,
        workdir,
        user: str | None = None,
        sftp_options: str = "",
        sshd_options: str = "",
        file_size_limit: int | None = None,
        open_files_limit: int | None = None,
        obey_file_modes: bool = False,
    ):
        self.workdir = Path(workdir)
        self.file_size_limit = file_size_limit
        self.open_files_limit = open_files_limit
        self.obey_file_modes = obey_file_modes
        self.sftp_options = sftp_options
        self.sshd_options = sshd_options
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        self.sshd = find_sshd()
        if self.sshd is None:
            raise FileNotFoundError("OpenSSH sshd is not installed (Debian/Ubuntu: apt-get install openssh-server)")
        self.port = free_local_port()
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.client_key = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.ssh_config = self.workdir / "ssh_config"
        self.sshd_config = self.workdir / "sshd_config"
        self.log = self.workdir / "sshd.log"
        #: the sftp login directory: relative URL paths start here
        self.home = self.workdir / "home"
        self.process: subprocess.Popen | None = None
        self._prepare()

    def _prepare(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.home.mkdir(exist_ok=True)
        if not self.host_key.exists():
            _keygen(self.host_key, "borgstore test sshd host key")
        if not self.client_key.exists():
            _keygen(self.client_key, "borgstore test client key")
        (self.workdir / "authorized_keys").write_text(Path(str(self.client_key) + ".pub").read_text())
        self.write_known_hosts()
        # sshd started by root refuses to run without its privilege separation directory
        if os.getuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.sshd_config.write_text(
            "\n".join(
                [
                    # first: sshd takes a keyword's first value, so these override the lines below
                    self.sshd_options,
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    # the private directory lives under /tmp, which StrictModes would reject
                    "StrictModes no",
                    "UsePAM no",
                    "MaxStartups 100",
                    "LogLevel ERROR",
                    # in-process sftp (no exec per session), starting in our own login directory
                    f"Subsystem sftp internal-sftp {self.sftp_options} -d {self.home}",
                    "",
                ]
            )
        )
        self.ssh_config.write_text(
            "\n".join(
                [
                    # the address too, so URLs that spell out user@127.0.0.1:port find key and known_hosts
                    f"Host {HOST_ALIAS} 127.0.0.1",
                    "    HostName 127.0.0.1",
                    f"    Port {self.port}",
                    f"    User {self.user}",
                    f"    IdentityFile {self.client_key}",
                    "    IdentitiesOnly yes",
                    f"    UserKnownHostsFile {self.known_hosts}",
                    "",
                ]
            )
        )

    def host_key_line(self, key_file: Path | None = None) -> str:
        """The known_hosts line for this server (with *key_file*'s public key if given)."""
        key_type, key_blob = Path(str(key_file or self.host_key) + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key_blob}\n"

    def write_known_hosts(self, content: str | None = None):
        self.known_hosts.write_text(self.host_key_line() if content is None else content)

    # --- URLs and options for the client side ---
    def url(self, path: str, *, alias: bool = True, user: str | None = None) -> str:
        """An sftp URL for *path* (``"rel/path"`` or ``"//abs/path"``).

        alias=True names the host by its ssh config alias (so host, port, user, key and known_hosts
        come from the config file); alias=False spells out user, address and port."""
        if alias:
            return f"sftp://{HOST_ALIAS}/{path}"
        return f"sftp://{user or self.user}@127.0.0.1:{self.port}/{path}"

    def backend_options(self, **more) -> dict:
        options = {"ssh_config": str(self.ssh_config), "use_agent": False, "transport": self.transport}
        options.update(more)
        return options

    def sftp_command(self) -> list:
        """The OpenSSH ``sftp`` client command line for this server, without the destination."""
        return ["sftp", "-q", "-F", str(self.ssh_config), "-b", "-"]

    # --- running ---
    def start(self, timeout: float = 10.0):
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                [self.sshd, "-D", "-e", "-f", str(self.sshd_config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                # no preexec_fn unless needed: it is unsafe in a process with threads
                preexec_fn=self._limit if self._limits_wanted() else None,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer on port {self.port}: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def _limits_wanted(self) -> bool:
        return self.file_size_limit is not None or self.open_files_limit is not None or self.obey_file_modes

    def _limit(self):
        """In the sshd process before it starts: the limits asked for."""
        import resource

        if self.file_size_limit is not None:
            # ignored, SIGXFSZ no longer kills the writer: the write fails with EFBIG instead
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))
        if self.open_files_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))
        if self.obey_file_modes and os.getuid() == 0:
            _drop_capabilities(_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH)

    def _session_pids(self) -> list:
        """The pids of the per-connection sshd processes that the listener forked."""
        if self.process is None:
            return []
        children, parents = [], {self.process.pid}
        # each connection's sshd starts its own session, so walk the parent links in /proc
        found = True
        while found:
            found = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) in parents:
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid in parents or self._works_in_home(entry):
                    parents.add(int(entry))
                    children.append(int(entry))
                    found = True
        return children

    def _works_in_home(self, pid: str) -> bool:
        """True for an sftp session process of this server whose parent died (it runs in home)."""
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return False
        return cwd == str(self.home) or cwd.startswith(str(self.home) + "/")

    def kill(self):
        """Kill the listener and every connection it serves, as a crashed or rebooted server would."""
        if self.process is None:
            return
        for pid in self._session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None

    def stop(self):
        self.kill()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
