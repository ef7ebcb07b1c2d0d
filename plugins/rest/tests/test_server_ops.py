"""Every operation of the wire protocol against our server process, with its statuses."""

import hashlib
import json
import os
import threading

import pytest
from borgstore_backend_rest import _wire

from .conftest import snapshot


def test_create_and_destroy(rest_server):
    """create makes the store (409 if it has content), destroy removes it (410 once gone), and a
    request on a missing store answers 410 with the error class in the error header."""
    server = rest_server(create=False)
    missing = server.request("GET", "/")
    assert missing.status == 410
    assert missing.headers[_wire.ERROR_HEADER.lower()] == "BackendDoesNotExist"
    assert server.request("POST", "/?cmd=create").status == 200
    assert server.store_path.is_dir()
    assert server.store("item", b"value").status == 200
    exists = server.request("POST", "/?cmd=create")
    assert exists.status == 409
    assert exists.headers[_wire.ERROR_HEADER.lower()] == "BackendAlreadyExists"
    assert server.request("DELETE", "/?cmd=destroy").status == 200
    assert not server.store_path.exists()
    gone = server.request("DELETE", "/?cmd=destroy")
    assert gone.status == 410
    assert server.request("GET", "/").status == 410
    # created again while the server runs: opened lazily by the next request
    assert server.request("POST", "/?cmd=create").status == 200
    assert json.loads(server.request("GET", "/").data) == []


def test_store_load_info_delete(rest_server):
    """store writes the body, load returns it (Range: 206 with Content-Range), info tells size and
    kind in headers, delete removes it (404 afterwards)."""
    server = rest_server()
    value = bytes(range(256)) * 10
    assert server.store("data/0001", value).status == 200
    assert (server.store_path / "data" / "0001").read_bytes() == value
    loaded = server.request("GET", "/data/0001")
    assert (loaded.status, loaded.data) == (200, value)
    part = server.request("GET", "/data/0001", headers={"Range": "bytes=10-19"})
    assert (part.status, part.data) == (206, value[10:20])
    assert part.headers["content-range"].startswith("bytes 10-19/")
    tail = server.request("GET", "/data/0001", headers={"Range": "bytes=-5"})
    assert (tail.status, tail.data, tail.headers["content-range"]) == (206, value[-5:], "bytes 2555-2559/2560")
    rest = server.request("GET", "/data/0001", headers={"Range": "bytes=2550-"})
    assert (rest.data, rest.headers["content-range"]) == (value[2550:], "bytes 2550-2559/2560")
    # the PyPI client asks for load(size=0) so: no bytes, but a missing item is still 404
    nothing = server.request("GET", "/data/0001", headers={"Range": "bytes=7--1"})
    assert (nothing.status, nothing.data) == (206, b"")
    assert server.request("GET", "/data/none", headers={"Range": "bytes=0--1"}).status == 404
    past = server.request("GET", "/data/0001", headers={"Range": "bytes=5000-5009"})
    assert (past.status, past.data) == (206, b"")
    assert server.request("GET", "/data/0001", headers={"Range": "bytes=0-1,5-6"}).status == 400
    info = server.request("HEAD", "/data/0001")
    assert info.status == 200
    assert info.headers["content-length"] == str(len(value))
    assert info.headers[_wire.IS_DIRECTORY_HEADER.lower()] == "false"
    assert float(info.headers[_wire.MTIME_HEADER.lower()]) > 0
    directory = server.request("HEAD", "/data")
    assert directory.headers[_wire.IS_DIRECTORY_HEADER.lower()] == "true"
    assert server.request("HEAD", "/data/nothing").status == 404
    assert server.request("DELETE", "/data/0001").status == 200
    assert not (server.store_path / "data" / "0001").exists()
    for method in ("GET", "DELETE"):
        missing = server.request(method, "/data/0001")
        assert missing.status == 404
        assert missing.headers[_wire.ERROR_HEADER.lower()] == "ObjectNotFound"


def test_large_values(rest_server):
    """A value of several MiB goes up and comes back whole (its body arrives in many pieces)."""
    server = rest_server()
    value = os.urandom(9 * 1024 * 1024 + 3)
    assert server.store("data/large", value).status == 200
    assert server.request("GET", "/data/large").data == value
    assert (
        server.request("GET", "/data/large", headers={"Range": "bytes=5000000-5000009"}).data == value[5000000:5000010]
    )


def test_mkdir_rmdir_list(rest_server):
    """mkdir/rmdir manage directories; GET with a trailing slash lists a directory as JSON."""
    server = rest_server()
    assert server.request("POST", "/dir/sub?cmd=mkdir").status == 200
    assert (server.store_path / "dir" / "sub").is_dir()
    server.store("dir/b", b"bb")
    server.store("dir/a", b"a")
    entries = json.loads(server.request("GET", "/dir/").data)
    assert [(e["name"], e["size"], e["directory"]) for e in entries] == [
        ("a", 1, False),
        ("b", 2, False),
        ("sub", entries[2]["size"], True),
    ]
    assert all(e["mtime"] > 0 for e in entries)
    assert [e["name"] for e in json.loads(server.request("GET", "/").data)] == ["dir"]
    assert server.request("GET", "/nothing/").status == 404
    assert server.request("DELETE", "/dir/sub?cmd=rmdir").status == 200
    assert not (server.store_path / "dir" / "sub").exists()


def test_move_hash_gather_defrag_quota(rest_server):
    """move renames; hash is computed on the server; gather joins ranges; defrag stores them
    under a content name; quota reports limit and usage."""
    server = rest_server(["--quota", "100000"])
    server.store("data/one", b"0123456789")
    server.store("data/two", b"abcdefghij")
    assert server.request("POST", "/?cmd=move&current=data/one&new=data/uno").status == 200
    assert (server.store_path / "data" / "uno").read_bytes() == b"0123456789"
    assert server.request("POST", "/?cmd=move&current=data/one&new=data/x").status == 404
    assert server.request("POST", "/?cmd=move&current=data/uno").status == 400
    digest = server.request("POST", "/data/two?cmd=hash&algorithm=sha1")
    assert digest.data.decode() == hashlib.sha1(b"abcdefghij").hexdigest()
    default = server.request("POST", "/data/two?cmd=hash")
    assert default.data.decode() == hashlib.sha256(b"abcdefghij").hexdigest()
    assert server.request("POST", "/data/two?cmd=hash&algorithm=nonsense").status == 400
    sources = json.dumps([["data/uno", 2, 3], ["data/two", 0, 2]]).encode()
    gathered = server.request("POST", "/?cmd=gather", body=sources)
    assert (gathered.status, gathered.data) == (200, b"234ab")
    too_far = json.dumps([["data/uno", 8, 5]]).encode()
    assert server.request("POST", "/?cmd=gather", body=too_far).status == 416
    assert server.request("POST", "/?cmd=gather", body=b"[[1, 2]]").status == 400
    defrag = server.request("POST", "/?cmd=defrag&algorithm=sha256&namespace=data&levels=1", body=sources)
    name = defrag.data.decode()
    expected = hashlib.sha256(b"234ab").hexdigest()
    assert name == f"data/{expected[:2]}/{expected}"
    assert (server.store_path / name).read_bytes() == b"234ab"
    targeted = server.request("POST", "/?cmd=defrag&target=data/joined", body=sources)
    assert targeted.data == b"data/joined"
    assert (server.store_path / "data" / "joined").read_bytes() == b"234ab"
    assert server.request("POST", "/?cmd=defrag", body=sources).status == 400
    quota = json.loads(server.request("POST", "/?cmd=quota").data)
    assert quota["limit"] == 100000
    assert quota["usage"] == 10 + 10 + 5 + 5


def test_hash_mismatch_stores_nothing(rest_server):
    """A body that does not match its announced SHA-256 is refused with 422, nothing stored."""
    server = rest_server()
    before = snapshot(server.store_path)
    answer = server.request("POST", "/data/x", body=b"payload", headers={_wire.HASH_HEADER: "0" * 64})
    assert answer.status == _wire.HASH_MISMATCH_STATUS
    assert "temporary" in answer.headers[_wire.ERROR_HEADER.lower()]
    assert snapshot(server.store_path) == before
    # without the header the body is taken as it is (a PyPI-era client may omit it)
    assert server.request("POST", "/data/x", body=b"payload").status == 200


@pytest.mark.parametrize("size", [1, 200 * 1024, 900 * 1024, 3 * 1024 * 1024 + 5])
def test_hash_is_checked_over_every_piece(rest_server, size):
    """The server hashes a body while it arrives, piece by piece: whatever its size (in the head's
    receive, received into its own buffer, or grown as it comes), a matching body is stored
    exactly, and a body whose last byte differs from what its hash announced is refused."""
    server = rest_server()
    value = os.urandom(size)
    assert server.store("data/good", value).status == 200
    assert (server.store_path / "data" / "good").read_bytes() == value
    before = snapshot(server.store_path)
    damaged = value[:-1] + bytes([value[-1] ^ 1])
    answer = server.request(
        "POST", "/data/bad", body=damaged, headers={_wire.HASH_HEADER: hashlib.sha256(value).hexdigest()}
    )
    assert answer.status == _wire.HASH_MISMATCH_STATUS
    assert snapshot(server.store_path) == before


def test_options_announces_store_new(rest_server):
    """OPTIONS / answers 200 with the capabilities header (posixfs has store_new)."""
    server = rest_server()
    answer = server.request("OPTIONS", "/")
    assert answer.status == 200
    assert answer.headers[_wire.CAPABILITIES_HEADER.lower()] == "store_new"


def test_store_new_refuses_an_existing_item(rest_server):
    """store_new writes a new item and refuses an existing one with 409 ObjectAlreadyExists."""
    server = rest_server()
    assert server.request("POST", "/data/n?cmd=store_new", body=b"first").status == 200
    again = server.request("POST", "/data/n?cmd=store_new", body=b"second")
    assert again.status == 409
    assert again.headers[_wire.ERROR_HEADER.lower()] == "ObjectAlreadyExists"
    assert (server.store_path / "data" / "n").read_bytes() == b"first"


def test_store_new_race_has_one_winner(rest_server):
    """Two threads racing store_new on one name: exactly one wins, its value is stored."""
    server = rest_server()
    for round_ in range(10):
        barrier = threading.Barrier(2)
        results = {}

        def race(value, round_=round_, barrier=barrier, results=results):
            client = server.client()
            client.request("OPTIONS", "/", headers={"Accept": _wire.MEDIA_TYPE})  # connected before the race
            barrier.wait()
            answer = server.request("POST", f"/race/{round_}?cmd=store_new", body=value, client=client)
            results[value] = answer.status

        threads = [threading.Thread(target=race, args=(value,)) for value in (b"a" * 1000, b"b" * 1000)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results.values()) == [200, 409]
        winner = next(value for value, status in results.items() if status == 200)
        assert (server.store_path / "race" / str(round_)).read_bytes() == winner


def test_errors_do_not_show_the_storage_path(rest_server):
    """Error texts name items, never the storage's absolute location."""
    server = rest_server()
    server.store("data/x", b"1")
    answers = [
        server.request("POST", "/data/x?cmd=store_new", body=b"2"),
        server.request("GET", "/data/missing"),
    ]
    assert server.request("DELETE", "/?cmd=destroy").status == 200
    answers.append(server.request("GET", "/"))  # the missing store's error names its location
    for answer in answers:
        assert answer.status >= 400
        assert str(server.store_path) not in answer.data.decode()
        assert _wire.ERROR_HEADER.lower() in answer.headers


def test_unknown_requests(rest_server):
    """Unknown methods (405) and commands (400) are refused, changing nothing."""
    server = rest_server()
    before = snapshot(server.store_path)
    assert server.request("PUT", "/data/x", body=b"1").status == 405
    assert server.request("POST", "/data/x?cmd=frobnicate", body=b"1").status == 400
    assert server.request("POST", "/", body=b"1").status == 400
    assert server.request("DELETE", "/").status == 400
    assert snapshot(server.store_path) == before


def test_bad_requests_are_value_errors_to_the_client(rest_server):
    """Whatever went wrong in a bad request (JSON, a name that is not UTF-8, a bad name), the
    error header says ValueError, matching the 400."""
    server = rest_server()
    for answer in (
        server.request("POST", "/?cmd=gather", body=b"[not json"),
        server.request("GET", "/%ff%fe"),
        server.request("GET", "/a/../b"),
    ):
        assert answer.status == 400
        assert answer.headers[_wire.ERROR_HEADER.lower()] == "ValueError"


def test_requests_through_a_reverse_proxy(rest_server):
    """X-Forwarded-* headers (a reverse proxy in front of plain HTTP on 127.0.0.1) change nothing."""
    server = rest_server()
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "backup.example"}
    assert server.store("data/proxied", b"via proxy", headers=forwarded).status == 200
    assert server.request("GET", "/data/proxied", headers=forwarded).data == b"via proxy"


def test_the_core_shim_reexports_the_server():
    """``from borgstore.server.rest import serve, main`` works as with the PyPI borgstore."""
    from borgstore_backend_rest import server

    from borgstore.server.rest import PERMISSION_SHORTCUTS, main, serve

    assert serve is server.serve
    assert main is server.main
    assert PERMISSION_SHORTCUTS is server.PERMISSION_SHORTCUTS
