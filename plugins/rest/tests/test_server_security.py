"""What the server refuses: clients without the right credentials or Accept header, names that
would leave the store, operations the permissions deny, stores beyond the quota."""

import base64
import json
import threading

import pytest
from borgstore_backend_rest import _wire
from borgstore_backend_rest.server import PERMISSION_SHORTCUTS

from .conftest import raw_exchange, snapshot

PASSWORD = "s3cret-Pa55"


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic authentication."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def password_file(tmp_path):
    """A file holding PASSWORD on its first line."""
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def test_credentials_are_required(rest_server, password_file):
    """With a username and password, a request without them or with wrong ones gets 401 and
    WWW-Authenticate before anything touches the storage; the right ones are served."""
    server = rest_server(["--username", "borg", "--password-file", str(password_file)], create=False)
    refused = [
        server.request("POST", "/?cmd=create"),
        server.request("POST", "/?cmd=create", headers=basic("borg", "wrong")),
        server.request("POST", "/?cmd=create", headers=basic("other", PASSWORD)),
        server.request("POST", "/?cmd=create", headers=basic("borg", PASSWORD + "x")),
        server.request("POST", "/?cmd=create", headers={"Authorization": "Basic !!notbase64"}),
        server.request("POST", "/?cmd=create", headers={"Authorization": "Bearer " + PASSWORD}),
    ]
    for answer in refused:
        assert answer.status == 401
        assert answer.headers["www-authenticate"].startswith("Basic ")
        assert answer.headers[_wire.ERROR_HEADER.lower()] == "PermissionDenied"
    assert not server.store_path.exists()
    assert server.request("POST", "/?cmd=create", headers=basic("borg", PASSWORD)).status == 200
    assert server.store_path.is_dir()
    log = server.log(until=" borg ")
    assert PASSWORD not in log
    assert base64.b64encode(f"borg:{PASSWORD}".encode()).decode() not in log
    assert " borg " in log  # the user an authenticated request came from


def test_password_from_the_environment(rest_server):
    """BORGSTORE_REST_PASSWORD is the password of a server given --username only."""
    server = rest_server(["--username", "borg"], create=False, env={"BORGSTORE_REST_PASSWORD": PASSWORD})
    assert server.request("GET", "/").status == 401
    assert server.request("POST", "/?cmd=create", headers=basic("borg", PASSWORD)).status == 200


def test_accept_is_required(rest_server):
    """A request without our media type in Accept gets 406 and changes nothing."""
    server = rest_server()
    before = snapshot(server.store_path)
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        answer = server.request("POST", "/data/x", body=b"1", headers=headers, accept=False)
        assert answer.status == 406
        assert _wire.ERROR_HEADER.lower() in answer.headers
    assert snapshot(server.store_path) == before
    listed = {"Accept": f"text/plain, {_wire.MEDIA_TYPE};q=0.9"}
    assert server.request("GET", "/", headers=listed, accept=False).status == 200


EVIL_TARGETS = [
    "/../outside",
    "/%2e%2e/outside",
    "/%2E%2E/outside",
    "/data/%2e%2e/%2e%2e/outside",
    "/data/..%2f..%2foutside",
    "/%2f%2e%2e/outside",
    "//etc/passwd",
    "///",
    "/%2fetc/passwd",
    "/data//x",
    "/data/./x",
    "/./x",
    "/a%00b",
    "/a%5cb",
    "/a\\b",
    "/a%0ab",
    "/a%1bb",
    "/%ff%fe",
    "/quota.hid",
    "/data/x.tmp",
    "/data/0123.abc.tmp",
]


@pytest.mark.parametrize("target", EVIL_TARGETS)
def test_names_leaving_the_store_are_refused(rest_server, tmp_path, target):
    """Every name in a URL is percent-decoded once and checked before the storage sees it:
    traversal, absolute names, empty or '.' components, NUL, backslashes and control
    characters get 400, whatever the operation, and nothing changes inside or outside."""
    (tmp_path / "outside").write_bytes(b"precious")
    server = rest_server()
    server.store("data/x", b"x")
    before, outside_before = snapshot(server.store_path), snapshot(tmp_path / "store")
    requests = [
        ("POST", target, b"evil"),
        (("POST", target + "?cmd=store_new", b"evil")),
        ("POST", target + "?cmd=mkdir", b""),
        ("DELETE", target, b""),
        ("DELETE", target + "?cmd=rmdir", b""),
        ("GET", target, b""),
        ("GET", target + "/", b""),
        ("HEAD", target, b""),
        ("POST", target + "?cmd=hash", b""),
    ]
    for method, url, body in requests:
        answer = server.request(method, url, body=body)
        assert answer.status == 400, (method, url)
    assert snapshot(server.store_path) == before
    assert (tmp_path / "outside").read_bytes() == b"precious"
    assert snapshot(tmp_path / "store") == outside_before


@pytest.mark.parametrize(
    "evil", ["../outside", "../../etc/x", "/etc/x", "data//x", "data/./x", "a\\b", "quota.hid", "data/x.tmp"]
)
def test_names_in_queries_and_bodies_are_checked(rest_server, tmp_path, evil):
    """Names in move's parameters, gather's and defrag's bodies and defrag's target are checked too."""
    (tmp_path / "outside").write_bytes(b"precious")
    server = rest_server()
    server.store("data/x", b"x")
    before = snapshot(server.store_path)
    quoted = evil.replace("\\", "%5C")
    assert server.request("POST", f"/?cmd=move&current=data/x&new={quoted}").status == 400
    assert server.request("POST", f"/?cmd=move&current={quoted}&new=data/y").status == 400
    sources = json.dumps([[evil, 0, 1]]).encode()
    assert server.request("POST", "/?cmd=gather", body=sources).status == 400
    assert server.request("POST", "/?cmd=defrag&target=data/y", body=sources).status == 400
    good_sources = json.dumps([["data/x", 0, 1]]).encode()
    assert server.request("POST", f"/?cmd=defrag&target={quoted}", body=good_sources).status == 400
    namespace_escape = "/?cmd=defrag&algorithm=sha256&namespace=../..&levels=0"
    assert server.request("POST", namespace_escape, body=good_sources).status == 400
    assert snapshot(server.store_path) == before
    assert (tmp_path / "outside").read_bytes() == b"precious"


def test_the_quota_file_cannot_be_touched(rest_server):
    """quota.hid is the server's: a client can neither read, overwrite, delete nor move onto it,
    so it cannot reset the count that limits it."""
    first = rest_server(["--quota", "100000"])
    first.store("data/x", b"x" * 100)
    first.stop()  # the quota is written to quota.hid at close
    server = rest_server(["--quota", "100000"], create=False)
    assert (server.store_path / "quota.hid").is_file()
    before = snapshot(server.store_path)
    for method, target, body in [
        ("GET", "/quota.hid", b""),
        ("HEAD", "/quota.hid", b""),
        ("POST", "/quota.hid", b"0"),
        ("DELETE", "/quota.hid", b""),
        ("POST", "/?cmd=move&current=data/x&new=quota.hid", b""),
        ("POST", "/?cmd=defrag&target=quota.hid", b'[["data/x", 0, 1]]'),
    ]:
        assert server.request(method, target, body=body).status == 400, (method, target)
    assert snapshot(server.store_path) == before


def test_control_characters_are_escaped_in_the_log(rest_server):
    """A request line with control characters is refused, and the log stays one line per request."""
    server = rest_server()
    raw_exchange(server.port, b"GET /a\x1b[31mred HTTP/1.1\r\n\r\n")
    server.request("GET", "/data%0a/")
    server.log(until="/data%0a/")
    log = server.log(until='"- -" 400')  # both lines are written (each after its answer)
    assert '"- -" 400' in log and "/data%0a/" in log  # the request line that did not parse is not shown
    assert "\x1b" not in log
    assert all(line.count('"') <= 2 for line in log.splitlines() if '"' in line)


# --- permissions ---

PREFIXES = ["", "archives", "cache", "config", "data", "keys", "locks"]


def _granted(table, name):
    """The letters *table* grants on *name*: the most specific prefix present decides."""
    if table is None:
        return "lrwWD"
    parts = name.split("/")
    for i in range(len(parts), -1, -1):
        letters = table.get("/".join(parts[:i]))
        if letters is not None:
            return letters
    return ""


def _in(prefix, name):
    return f"{prefix}/{name}" if prefix else f"{name}"


def _populate(server):
    for prefix in PREFIXES:
        if prefix:
            assert server.request("POST", f"/{prefix}?cmd=mkdir").status == 200
        for item in ("item", "to-delete", "to-move"):
            assert server.store(_in(prefix, item), b"value").status == 200


def _operations(prefix):
    """(description, method, target, body, letters any one of which allows it on (name, letters))."""
    item, new = _in(prefix, "item"), _in(prefix, "new")
    sources = json.dumps([[item, 0, 2]]).encode()
    return [
        ("list", "GET", f"/{prefix}/" if prefix else "/", b"", [(prefix, "l")]),
        ("info", "HEAD", f"/{item}", b"", [(item, "lr")]),
        ("load", "GET", f"/{item}", b"", [(item, "r")]),
        ("hash", "POST", f"/{item}?cmd=hash", b"", [(item, "r")]),
        ("gather", "POST", "/?cmd=gather", sources, [(item, "r")]),
        ("store new", "POST", f"/{new}", b"new", [(new, "wW")]),
        ("overwrite", "POST", f"/{item}", b"other", [(item, "W")]),
        ("store_new", "POST", f"/{_in(prefix, 'fresh')}?cmd=store_new", b"n", [(_in(prefix, "fresh"), "wW")]),
        ("delete", "DELETE", f"/{_in(prefix, 'to-delete')}", b"", [(_in(prefix, "to-delete"), "D")]),
        (
            "move",
            "POST",
            f"/?cmd=move&current={_in(prefix, 'to-move')}&new={_in(prefix, 'moved')}",
            b"",
            [(_in(prefix, "to-move"), "D"), (_in(prefix, "moved"), "wW")],
        ),
        ("mkdir", "POST", f"/{_in(prefix, 'newdir')}?cmd=mkdir", b"", [(_in(prefix, "newdir"), "w")]),
    ]


def test_the_shortcuts_grant_what_the_pypi_server_grants():
    """The shortcut tables, a compatibility fact: BorgBackup relies on exactly these."""
    assert PERMISSION_SHORTCUTS["borgbackup-all"] is None
    assert PERMISSION_SHORTCUTS["borgbackup-read-only"] == {"": "lr", "locks": "lrwD"}
    assert PERMISSION_SHORTCUTS["borgbackup-no-delete"] == {
        "": "lr",
        "archives": "lrw",
        "cache": "lrwWD",
        "config": "lrW",
        "data": "lrw",
        "keys": "lr",
        "locks": "lrwD",
    }
    assert PERMISSION_SHORTCUTS["borgbackup-write-only"] == {
        "": "l",
        "archives": "lw",
        "cache": "lrwWD",
        "config": "lrW",
        "data": "lw",
        "keys": "lr",
        "locks": "lrwD",
    }


@pytest.mark.parametrize("shortcut", sorted(PERMISSION_SHORTCUTS))
def test_permission_shortcuts(rest_server, shortcut):
    """Every shortcut against every read and write operation in every part of a borg
    repository: allowed ones succeed, denied ones get 403 and change nothing."""
    setup = rest_server()
    _populate(setup)
    setup.stop()
    server = rest_server(["--permissions", shortcut], create=False)
    table = PERMISSION_SHORTCUTS[shortcut]
    seen = {True: 0, False: 0}
    for prefix in PREFIXES:
        for description, method, target, body, needs in _operations(prefix):
            allowed = all(set(_granted(table, name)) & set(letters) for name, letters in needs)
            before = snapshot(server.store_path)
            answer = server.request(method, target, body=body)
            seen[allowed] += 1
            if allowed:
                assert answer.status == 200, (shortcut, description, prefix, answer.data)
            else:
                assert answer.status == 403, (shortcut, description, prefix, answer.status)
                assert answer.headers[_wire.ERROR_HEADER.lower()] == "PermissionDenied"
                assert snapshot(server.store_path) == before, (shortcut, description, prefix)
    assert seen[True] and (seen[False] or table is None)


def test_quota_holds_against_concurrent_clients(rest_server):
    """Clients storing in parallel never take the store above its quota: the refused ones get
    507 and store nothing."""
    limit, size = 20_000, 1000
    server = rest_server(["--quota", str(limit)])
    statuses = []
    lock = threading.Lock()

    def writer(number):
        client = server.client()
        for i in range(8):
            answer = server.store(f"data/{number}-{i}", bytes([number]) * size, client=client)
            with lock:
                statuses.append(answer.status)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 507}
    stored = sum(path.stat().st_size for path in (server.store_path / "data").iterdir())
    assert stored == statuses.count(200) * size
    assert stored <= limit
    assert statuses.count(200) == limit // size
    quota = json.loads(server.request("POST", "/?cmd=quota").data)
    assert quota == {"limit": limit, "usage": stored}
