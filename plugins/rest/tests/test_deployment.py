"""The example deployment in docs/deploy works as shipped: the service's command line, started
by systemd-socket-activate on the socket unit's address, serves a store with its password and
its permissions; the proxies let through every body the server accepts."""

import base64
import grp
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from borgstore_backend_rest import _wire
from borgstore_backend_rest.server import DEFAULT_MAX_BODY

from borgstore import get_backend
from borgstore.backends.errors import PermissionDenied
from borgstore.backends.http import HttpClient
from borgstore.backends.toolkit import free_local_port

from .conftest import make_certificate, skip_or_fail

DEPLOY = Path(__file__).resolve().parents[3] / "docs" / "deploy"
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
PASSWORD = "correct horse battery staple"
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
SIZE_UNITS.update({"kb": 1000, "mb": 1000**2, "gb": 1000**3})


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (keys may repeat; a line
    ending in a backslash continues on the next; '#' and ';' start comment lines)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def size_in_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", text.strip())
    assert match, f"not a size: {text!r}"
    return int(match[1]) * SIZE_UNITS[match[2].lower()]


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit(DEPLOY / name)


def service_argv() -> list[str]:
    (exec_start,) = unit("borgstore-rest.service")["Service"]["ExecStart"]
    return shlex.split(exec_start)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def listen_address() -> str:
    (address,) = unit("borgstore-rest.socket")["Socket"]["ListenStream"]
    return address


def test_socket_hands_all_connections_to_one_server():
    """The socket unit passes its listening socket (Accept=no) to a server run with --socket-activation."""
    socket_unit = unit("borgstore-rest.socket")["Socket"]
    assert socket_unit.get("Accept", ["no"]) == ["no"]
    assert "--socket-activation" in service_argv()
    assert unit("borgstore-rest.service")["Unit"]["Requires"] == ["borgstore-rest.socket"]


def test_service_is_sandboxed_and_can_write_its_store():
    """The service runs hardened, and its store lies inside the one path it may write."""
    service = unit("borgstore-rest.service")["Service"]
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes"}.items():
        assert service[key] == [value], key
    assert service.get("User") or service.get("DynamicUser") == ["yes"]
    store = option(service_argv(), "--backend").removeprefix("file://")
    writable = " ".join(service["ReadWritePaths"]).split()
    assert any(store == path or store.startswith(path.rstrip("/") + "/") for path in writable)
    assert "--password" not in service_argv(), "a password on the command line is visible to every local user"


def test_password_credential_is_the_file_the_server_reads():
    """The credential that LoadCredential= provides is the file given to --password-file."""
    service = unit("borgstore-rest.service")["Service"]
    (credential,) = service["LoadCredential"]
    name = credential.split(":", 1)[0]
    assert option(service_argv(), "--password-file") == f"%d/{name}"


def test_proxies_accept_every_body_the_server_accepts():
    """nginx's and Caddy's body limits are at least the server's default --max-body, and both
    proxy to the socket unit's address."""
    nginx = (DEPLOY / "nginx.conf").read_text()
    limits = re.findall(r"^\s*client_max_body_size\s+(\S+);", nginx, re.MULTILINE)
    assert limits, "nginx.conf sets no client_max_body_size (its default, 1 MiB, is too small)"
    assert all(limit == "0" or size_in_bytes(limit) >= DEFAULT_MAX_BODY for limit in limits)
    assert re.search(r"^\s*proxy_request_buffering\s+off;", nginx, re.MULTILINE)
    caddy = (DEPLOY / "Caddyfile").read_text()
    (caddy_limit,) = re.findall(r"^\s*max_size\s+(\S+)", caddy, re.MULTILINE)
    assert size_in_bytes(caddy_limit) >= DEFAULT_MAX_BODY
    address = listen_address()
    if address.startswith("/"):
        assert f"server unix:{address};" in nginx
        assert f"unix/{address}" in caddy
    else:
        assert f"server {address};" in nginx
        assert address in caddy


# --- the socket activation, for real ----------------------------------------------------------------


class Activated:
    """The service's ExecStart under systemd-socket-activate, listening at the socket unit's
    address (a Unix socket path moved into the test's directory, or the TCP host with a free port)."""

    def __init__(self, tmp_path: Path):
        self.store = tmp_path / "store"
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credential,) = unit("borgstore-rest.service")["Service"]["LoadCredential"]
        (credentials / credential.split(":", 1)[0]).write_text(PASSWORD + "\n")
        argv = [arg.replace("%d", str(credentials)) for arg in service_argv()]
        argv[0] = str(Path(sys.executable).with_name("borgstore-server-rest"))  # our install, not /opt's
        argv[argv.index("--backend") + 1] = f"file://{self.store}"
        self.username = option(argv, "--username")
        address = listen_address()
        if address.startswith("/"):
            self.path = str(tmp_path / Path(address).name)
            self.listen = self.path
        else:
            self.path = None
            self.host = address.rpartition(":")[0].strip("[]")
            self.port = free_local_port()
            self.listen = f"{address.rpartition(':')[0]}:{self.port}"
        self.log = tmp_path / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [SOCKET_ACTIVATE, "-l", self.listen, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        # systemd-socket-activate binds at once and runs the server at the first connection
        deadline = time.monotonic() + 30
        while "Listening on" not in self.log.read_text():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def client(self, password: str | None) -> HttpClient:
        headers = {"Accept": _wire.MEDIA_TYPE}
        if password is not None:
            token = base64.b64encode(f"{self.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if self.path is None:
            return HttpClient(self.host, self.port, headers=headers)
        path = self.path

        def connect(timeout: float) -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(path)
            return sock

        return HttpClient("localhost", 80, headers=headers, connect=connect)

    def stop(self) -> int:
        """SIGTERM (the server took the launcher's place), as systemctl stop sends; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def activated(tmp_path):
    if not os.access(SOCKET_ACTIVATE, os.X_OK):
        skip_or_fail(f"{SOCKET_ACTIVATE} is missing (Debian: apt-get install systemd)")
    if shutil.which("borgstore-server-rest", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("borgstore-server-rest is not installed next to this Python (pip install -e plugins/rest)")
    server = Activated(tmp_path)
    yield server
    server.stop()


def store(client: HttpClient, name: str, value: bytes):
    return client.request(
        "POST", f"/{name}", headers={_wire.HASH_HEADER: hashlib.sha256(value).hexdigest()}, body=value
    )


def test_socket_activated_service_serves_the_store_with_auth_and_permissions(activated):
    """Through the socket: the right password stores and loads; a wrong or missing one gets 401
    and changes nothing; deleting is refused (borgbackup-no-delete); SIGTERM ends it cleanly."""
    get_backend(f"file://{activated.store}").create()  # the admin's step: the store exists
    client = activated.client(PASSWORD)
    value = os.urandom(4096)
    assert store(client, "data/0123", value).status == 200
    response = client.request("GET", "/data/0123")
    assert (response.status, response.data) == (200, value)
    for wrong in (activated.client("wrong password"), activated.client(None)):
        assert store(wrong, "data/0123", b"overwritten").status == 401
        assert store(wrong, "data/4567", b"new").status == 401
        assert wrong.request("GET", "/data/0123").status == 401
        wrong.close()
    assert client.request("DELETE", "/data/0123").status == 403
    assert client.request("GET", "/data/0123").data == value
    assert client.request("HEAD", "/data/4567").status == 404
    client.close()
    assert activated.stop() == 0, activated.log.read_text()
    assert (activated.store / "data" / "0123").read_bytes() == value


def test_units_pass_systemd_analyze(tmp_path):
    """systemd itself finds nothing wrong in the units, and rates the service's sandbox as
    tight (an exposure level of at most 2.0 of 10)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_or_fail("systemd-analyze is missing (Debian: apt-get install systemd)")
    service = (DEPLOY / "borgstore-rest.service").read_text()
    # verify wants the program to exist: ours, where the unit names /opt's
    program = service_argv()[0]
    (tmp_path / "borgstore-rest.service").write_text(
        service.replace(program, str(Path(sys.executable).with_name("borgstore-server-rest")))
    )
    shutil.copy(DEPLOY / "borgstore-rest.socket", tmp_path)
    units = [str(tmp_path / "borgstore-rest.socket"), str(tmp_path / "borgstore-rest.service")]
    verify = subprocess.run(
        [analyze, "verify", "--man=no", *units], check=False, capture_output=True, text=True, timeout=120
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = [analyze, "security", "--offline=yes", "--threshold=20", units[1]]
    rated = subprocess.run(security, check=False, capture_output=True, text=True, timeout=120)
    assert rated.returncode == 0, rated.stdout[-3000:] + rated.stderr[-1000:]


# --- the nginx site in front of it, for real -----------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    """(certificate, key) files of a self-signed certificate for 127.0.0.1."""
    return make_certificate(tmp_path, "127.0.0.1")


def nginx_site(activated: "Activated", port: int, cert: Path, key: Path) -> str:
    """The shipped nginx.conf, listening on 127.0.0.1:*port* with the test's certificate and the
    test's server socket (nothing else changed)."""
    site = (DEPLOY / "nginx.conf").read_text()
    site = re.sub(r"^\s*listen \[::\]:443 ssl;\n", "", site, flags=re.MULTILINE)
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = re.sub(r"ssl_certificate \S+;", f"ssl_certificate {cert};", site)
    site = re.sub(r"ssl_certificate_key \S+;", f"ssl_certificate_key {key};", site)
    upstream = f"unix:{activated.path}" if activated.path else f"{activated.host}:{activated.port}"
    return site.replace(f"server unix:{listen_address()};", f"server {upstream};")


@pytest.fixture
def nginx(tmp_path, activated, certificate):
    """nginx in the foreground with the shipped site (see nginx_site) in a main config of the
    test's own (its files in tmp_path, its workers as this user); yields its port."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if binary is None:
        skip_or_fail("nginx is not installed (Debian: apt-get install nginx-light)")
    port = free_local_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(nginx_site(activated, port, *certificate))
    user = f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
    (prefix / "nginx.conf").write_text(
        f"user {user};\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  include {prefix}/site.conf;\n}}\n"
    )
    command = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]
    process = subprocess.Popen([*command, "-g", "daemon off;"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
    yield port
    process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_nginx_site_passes_large_stores_to_the_service(activated, nginx, certificate):
    """Our REST client over https through the shipped nginx site to the socket-activated server:
    a value larger than nginx's default body limit (1 MiB) goes and comes back whole, kept-alive
    requests follow each other, and a wrong password is refused."""
    get_backend(f"file://{activated.store}").create()  # the admin's step: the store exists
    url = f"https://{activated.username}:{{}}@127.0.0.1:{nginx}/"
    backend = get_backend(url.format(PASSWORD.replace(" ", "%20")), ca_file=str(certificate[0]))
    backend.open()
    value = os.urandom(5 * 1024 * 1024 + 1)
    backend.store("data/large", value)
    for _ in range(3):
        assert backend.load("data/large") == value
    assert backend.info("data/large").size == len(value)
    backend.close()
    intruder = get_backend(url.format("wrong"), ca_file=str(certificate[0]))
    with pytest.raises(PermissionDenied):
        intruder.open()
        intruder.load("data/large")
    assert (activated.store / "data" / "large").read_bytes() == value
