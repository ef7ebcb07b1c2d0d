"""What the S3 backend promises beyond the kit: the PyPI layout, requests per operation, pages of
1,000 keys, conditional create, checksums on every upload, multipart uploads and their clean-up."""

import base64
import hashlib

import pytest
from borgstore_backend_s3 import s3_backend_from_url
from borgstore_backend_s3._listing import pages
from borgstore_backend_s3.testserver import FaultProxy

from borgstore.backends.errors import BackendError, ObjectAlreadyExists, ObjectNotFound, PermissionDenied
from borgstore.store import Store

from .conftest import BUCKET

CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [2]}}
MiB = 1024 * 1024


def key(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


def raw_keys(backend) -> list:
    """Every object key below the store's prefix, as the bucket holds them."""
    return [k for page in pages(backend._connect(), backend.location.prefix, delimiter=None, what="t") for k, _, _ in page.objects]


@pytest.fixture
def proxy(moto):
    made = []

    def make(hook=None):
        made.append(FaultProxy(moto.port, hook))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_layout_is_one_object_per_item_and_no_directory_objects(s3_url):
    """The bucket holds the marker, one object per item at path/<backend name>, and nothing else."""
    url = s3_url()
    store = Store(url, config=CONFIG)
    store.create()
    with store:
        for i in range(3):
            store.store(f"data/{key(i)}", b"v%d" % i)
        store.store("config/manifest", b"m")
        store.move(f"data/{key(0)}", delete=True)
        store.create_levels()  # asks the backend for every nesting directory: none is made
        prefix = store.chain.backend.location.prefix
        keys = raw_keys(store.chain.backend)
    expected = [prefix, f"{prefix}config/manifest"]
    expected += [f"{prefix}data/{key(i)[:2]}/{key(i)[2:4]}/{key(i)}" for i in (1, 2)]
    expected.append(f"{prefix}data/{key(0)[:2]}/{key(0)[2:4]}/{key(0)}.del")
    assert sorted(keys) == sorted(expected)


def test_requests_per_operation(s3_url):
    """store, load and info 1 request each, a soft deletion 2, and list() of a two-level
    namespace of N items 1 + N/1000 (one page per 1,000 keys, not one per directory)."""
    store = Store(s3_url(), config=CONFIG)
    store.create()
    with store:
        backend = store.chain.backend
        counts = {}
        for op, call in (
            ("store", lambda: store.store(f"data/{key(0)}", b"x" * 1024)),
            ("load", lambda: store.load(f"data/{key(0)}")),
            ("info", lambda: store.info(f"data/{key(0)}")),
            ("soft delete", lambda: store.move(f"data/{key(0)}", delete=True)),
        ):
            before = backend.requests
            call()
            counts[op] = backend.requests - before
        assert counts == {"store": 1, "load": 1, "info": 1, "soft delete": 2}
        n = 1100
        for i in range(1, n + 1):
            backend.store(f"data/{key(i)[:2]}/{key(i)[2:4]}/{key(i)}", b"")
        before = backend.requests
        names = [item.name for item in store.list("data")]
        assert backend.requests - before == 2  # 1 + 1100 // 1000
        assert names == sorted(key(i) for i in range(1, n + 1))


def test_flat_listing_pages_past_1000(s3_url):
    """A directory of more than 1,000 entries lists whole through every page, temps apart."""
    backend = s3_backend_from_url(s3_url())
    backend.create()
    with backend:
        names = sorted(f"k{i:05d}" for i in range(1001))
        for name in names:
            backend.store(f"flat/{name}", b"1")
        backend.store("flat/sub/x", b"")
        backend.store("flat/z.tmp", b"partial")
        listed = list(backend.list("flat"))
        assert [i.name for i in listed] == sorted(names + ["sub"])
        assert [i.name for i in listed if i.directory] == ["sub"]
        tree = [i.name for i in backend.list_tree("flat")]
        assert tree == sorted(names + ["sub/x"])
        assert [i.name for i in backend.list_temp("flat")] == ["z.tmp"]


def test_list_order_is_by_name_not_by_key(s3_url):
    """S3 returns 'a-b' before the directory 'a/'; list() sorts by name ('a' < 'a-b')."""
    backend = s3_backend_from_url(s3_url())
    backend.create()
    with backend:
        for name in ("a-b", "a/x", "a.del", "b"):
            backend.store(f"d/{name}", b"")
        assert [(i.name, i.directory) for i in backend.list("d")] == [
            ("a", True),
            ("a-b", False),
            ("a.del", False),
            ("b", False),
        ]
        assert [i.name for i in backend.list_tree("d")] == ["a-b", "a.del", "a/x", "b"]


def test_directories_are_implied(s3_url):
    """mkdir makes nothing; a directory exists through its keys; rmdir and list of an item are conflicts."""
    backend = s3_backend_from_url(s3_url())
    backend.create()
    with backend:
        backend.mkdir("empty/dir")
        assert not backend.info("empty").exists
        with pytest.raises(ObjectNotFound):
            list(backend.list("empty"))
        backend.store("d/only.tmp", b"partial")
        assert backend.info("d").directory  # a directory holding only a temp exists
        assert list(backend.list("d")) == []
        with pytest.raises(BackendError) as raised:
            backend.rmdir("d")
        assert not isinstance(raised.value, ObjectNotFound)
        backend.store("item", b"x")
        with pytest.raises(BackendError, match="item"):
            list(backend.list("item"))
        with pytest.raises(ObjectNotFound):
            backend.rmdir("nothing")
        assert backend.info("").directory


def test_conditional_create(s3_url):
    """store_new writes a new name and refuses an existing one, keeping its value."""
    backend = s3_backend_from_url(s3_url())
    backend.create()
    with backend:
        backend.store_new("data/new", b"first")
        with pytest.raises(ObjectAlreadyExists):
            backend.store_new("data/new", b"second")
        assert backend.load("data/new") == b"first"


def test_write_new_never_overwrite_is_enforced_by_the_server(s3_url):
    """Permission w without W: the permissions middleware uses store_new, so an overwrite is
    refused by the server's If-None-Match, not by a look first that another writer can race."""
    url = s3_url()
    Store(url, config=CONFIG).create()
    with Store(url, config=CONFIG, permissions={"": "lrw"}) as store:
        store.store(f"data/{key(1)}", b"one")
        with pytest.raises(PermissionDenied):
            store.store(f"data/{key(1)}", b"two")
        assert store.load(f"data/{key(1)}") == b"one"


def test_b2_has_no_conditional_create_unless_asked(s3_url):
    """b2: has no store_new by default; the option turns it on or off."""
    assert not s3_backend_from_url(s3_url("b2")).capabilities.store_new
    assert s3_backend_from_url(s3_url("b2"), conditional_create=True).capabilities.store_new
    assert not s3_backend_from_url(s3_url(), conditional_create=False).capabilities.store_new


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_every_upload_carries_the_md5_of_its_body(proxy, moto):
    """Every request with a body (PUT, parts, completion, deletion batch) carries its Content-MD5."""
    p = proxy()
    backend = s3_backend_from_url(p.url(BUCKET, "md5s"), multipart_threshold=5 * MiB, part_size=5 * MiB)
    backend.create()
    with backend:
        backend.store("small", b"x" * 1000)
        backend.store("large", bytes(range(256)) * (11 * MiB // 256))
    backend.destroy()
    uploads = [r for r in p.requests if r.body]
    assert len(uploads) >= 6  # marker, small, 3 parts, completion, the deletion batch
    for request in uploads:
        assert request.headers.get("content-md5") == md5_b64(request.body), request


def test_a_corrupted_upload_is_never_reported_as_stored(proxy, moto):
    """moto does not check Content-MD5 (real services answer BadDigest); the ETag the server
    answers still tells that it stored other bytes, and store() raises instead of succeeding."""
    p = proxy()
    backend = s3_backend_from_url(p.url(BUCKET, "corrupt"))
    backend.create()
    with backend:
        p.hook = lambda request: ("corrupt",) if request.method == "PUT" else None
        with pytest.raises(BackendError, match="other bytes"):
            backend.store("item", b"precious value")


def test_the_server_refuses_a_wrong_content_md5(real_s3_url):
    """Against a real endpoint only (moto does not check): a body that does not match its
    Content-MD5 is refused, not stored."""
    backend = s3_backend_from_url(real_s3_url())
    backend.create()
    try:
        with backend:
            client = backend._connect()
            k = backend.location.prefix + "item"
            response = client.request("PUT", k, headers={"content-md5": md5_b64(b"other")}, body=b"value", mutation=True, what="t")
            assert response.status == 400 and b"BadDigest" in response.data
            assert not backend.info("item").exists
    finally:
        backend.destroy()


def test_multipart_upload(proxy, moto):
    """A value above the threshold goes up in parts and loads back whole, ranges included."""
    p = proxy()
    backend = s3_backend_from_url(p.url(BUCKET, "multi"), multipart_threshold=5 * MiB, part_size=5 * MiB)
    backend.create()
    value = hashlib.sha256(b"seed").digest() * (12 * MiB // 32)
    with backend:
        backend.store("big", value)
        assert backend.load("big") == value
        assert backend.load("big", offset=5 * MiB - 3, size=7) == value[5 * MiB - 3 : 5 * MiB + 4]
        parts = [r for r in p.requests if r.method == "PUT" and "partNumber=" in r.target]
        assert len(parts) == 3
        assert [i.name for i in backend.list_temp("")] == []


def test_a_failed_multipart_upload_is_aborted(proxy, moto):
    """A part that fails aborts the upload: no object, no open upload left."""
    p = proxy()
    backend = s3_backend_from_url(p.url(BUCKET, "aborted"), multipart_threshold=5 * MiB, part_size=5 * MiB)
    backend.create()
    with backend:
        p.hook = lambda r: ("answer", 500, b"") if "partNumber=2" in r.target else None
        with pytest.raises(BackendError):
            backend.store("big", b"x" * (11 * MiB))
        assert any(r.method == "DELETE" and "uploadId=" in r.target for r in p.requests)
        assert list(backend.list_temp("")) == []
        assert not backend.info("big").exists


def test_a_dead_writers_upload_is_removed_by_clean_temps(proxy, moto):
    """An upload whose writer died (here: its completion and its abort never arrive) shows as a
    temp item, and Store.remove_stale_temps() aborts it."""
    p = proxy()
    url = p.url(BUCKET, "dead-writer")
    backend = s3_backend_from_url(url, multipart_threshold=5 * MiB, part_size=5 * MiB)
    backend.create()
    with backend:
        p.hook = lambda r: ("drop",) if "uploadId=" in r.target and r.method in ("POST", "DELETE") else None
        with pytest.raises(BackendError):
            backend.store("data/big", b"x" * (6 * MiB))
        p.hook = None
        temps = list(backend.list_temp(""))
        assert len(temps) == 1 and temps[0].name.startswith("data/big.") and temps[0].mtime > 0
        assert [i.name for i in backend.list_tree("")] == []
    with Store(url, config=CONFIG) as store:
        assert store.remove_stale_temps(older_than=0) == 1
        assert list(store.chain.backend.list_temp("")) == []
