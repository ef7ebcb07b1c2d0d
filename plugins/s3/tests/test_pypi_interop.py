"""Buckets written by the PyPI borgstore 0.7's s3 backend (boto3, in a venv of its own) open
here, and ours open there: same items, same soft deletions, same sizes and ranges, and the same
objects in the bucket (one per item at ``path/<backend name>``, the ``path/`` marker, no
directory objects).  Each side also destroys what the other wrote, and continues the other's
store.  The PyPI side runs as a script in its venv, against the shared moto server.
"""

import hashlib
import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest
from borgstore_backend_s3 import s3_backend_from_url
from borgstore_backend_s3._client import S3Client
from borgstore_backend_s3._listing import pages
from borgstore_backend_s3._sigv4 import Signer
from borgstore_backend_s3._url import parse
from borgstore_backend_s3.testserver import ACCESS_KEY_ID, SECRET_ACCESS_KEY

from borgstore.backends.errors import BackendDoesNotExist, BackendURLInvalid
from borgstore.store import Store

# two-level nesting of the data namespace, as BorgBackup configures it
CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [2]}}
LEVELS = {"config": 0, "data": 2, "index": 1}
MiB = 1024 * 1024


def _skip_or_fail(reason: str):
    # the core's tests/conftest.py has this as a fixture, but its conftest does not reach here
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this must not be skipped)")
    pytest.skip(reason)


# --- what both sides run: the same source, here and (via inspect) in the PyPI venv ---


def write_items(store, plan):
    """Store the plan's items (hex values), then soft-delete and undelete the names it gives."""
    for name, value_hex in plan.get("store", []):
        store.store(name, bytes.fromhex(value_hex))
    for name in plan.get("soft_delete", []):
        store.move(name, delete=True)
    for name in plan.get("undelete", []):
        store.move(name, undelete=True)


def read_view(store, plan):
    """Everything a reader sees of the plan's namespaces, ranges and absent names, as JSON data."""
    import hashlib

    view = {"namespaces": {}, "ranges": [], "absent": []}
    for ns in plan["namespaces"]:
        entry = {}
        for deleted in (False, True):
            items = []
            for info in store.list(ns, deleted=deleted):
                name = ns + "/" + info.name
                value = store.load(name, deleted=deleted)
                size = store.info(name, deleted=deleted).size
                items.append([info.name, info.size, size, len(value), hashlib.sha256(value).hexdigest()])
            entry["deleted" if deleted else "live"] = items
        view["namespaces"][ns] = entry
    for name, offset, size, deleted in plan.get("ranges", []):
        view["ranges"].append(store.load(name, offset=offset, size=size, deleted=deleted).hex())
    for name, deleted in plan.get("absent", []):
        view["absent"].append(store.info(name, deleted=deleted).exists)
    return view


PYPI_MAIN = """
import json, sys
from borgstore.store import Store

url, action, config, plan_path = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
with open(plan_path) as f:
    plan = json.load(f)
store = Store(url, config=config)
if action == "create":
    store.create()
elif action == "destroy":
    store.destroy()
elif action == "mkdirs":  # directory marker objects, as the PyPI backend's mkdir makes them
    with store:
        for name in plan["mkdirs"]:
            store.backend.mkdir(name)
elif action == "create_levels":
    Store(url, config=plan["levels_config"]).create_levels()
elif action == "write":
    with store:
        write_items(store, plan)
elif action == "read":
    with store:
        print(json.dumps(read_view(store, plan)))
else:
    raise SystemExit("unknown action " + action)
"""


# --- the model: what a store should hold ---


def key(tag: str, start: str = "") -> str:
    """A 64-digit hex key (as BorgBackup's chunk ids) starting with *start*."""
    return start + hashlib.sha256(tag.encode()).hexdigest()[len(start) :]


def value(tag: str, size: int) -> bytes:
    return hashlib.shake_256(tag.encode()).digest(size) if size else b""


def backend_name(name: str) -> str:
    """The PyPI layout's name of the item *name*: the key nested below two-digit directories."""
    ns, _, k = name.partition("/")
    return "/".join([ns] + [k[2 * i : 2 * i + 2] for i in range(LEVELS[ns])] + [k])


class Model:
    """The live and soft-deleted items a store should hold, and the plans that change it."""

    def __init__(self):
        self.live = {}
        self.deleted = {}

    def plan(self, store=None, soft_delete=(), undelete=()) -> dict:
        store = store or {}
        self.live.update(store)
        for name in soft_delete:
            self.deleted[name] = self.live.pop(name)
        for name in undelete:
            self.live[name] = self.deleted.pop(name)
        return {
            "store": [[name, data.hex()] for name, data in store.items()],
            "soft_delete": list(soft_delete),
            "undelete": list(undelete),
        }

    def read_plan(self, ranges=(), namespaces=("config", "data")) -> dict:
        absent = [[name, True] for name in self.live if name not in self.deleted]
        absent += [[name, False] for name in self.deleted if name not in self.live]
        absent.append(["data/" + key("never stored"), False])
        return {"namespaces": list(namespaces), "ranges": [list(r) for r in ranges], "absent": absent}

    def expected(self, plan: dict) -> dict:
        view = {"namespaces": {}, "ranges": [], "absent": [False] * len(plan["absent"])}
        for ns in plan["namespaces"]:
            entry = {}
            for label, items in (("live", self.live), ("deleted", self.deleted)):
                entry[label] = [
                    [name.partition("/")[2], len(v), len(v), len(v), hashlib.sha256(v).hexdigest()]
                    for name, v in sorted(items.items())
                    if name.partition("/")[0] == ns
                ]
            view["namespaces"][ns] = entry
        for name, offset, size, deleted in plan["ranges"]:
            whole = (self.deleted if deleted else self.live)[name]
            part = whole[offset:] if size is None else whole[offset:][:size]
            view["ranges"].append(part.hex())
        return view

    def object_keys(self, path: str) -> list:
        """Every object the bucket should hold below *path*: the marker and one per item."""
        keys = [f"{path}/"]
        keys += [f"{path}/{backend_name(name)}" for name in self.live]
        keys += [f"{path}/{backend_name(name)}.del" for name in self.deleted]
        return sorted(keys)


# data item n of sample_items: (how its key starts, its size); 5 is the one for the ranges
DATA = {1: ("abcd", 1000), 2: ("abcd", 2000), 3: ("abef", 3000), 4: ("0000", 0), 5: ("ff", 200_000), 6: ("", 7)}
BIG = 5


def data_name(tag: str, n: int) -> str:
    return "data/" + key(f"{tag}{n}", DATA[n][0])


def sample_items(tag: str) -> dict:
    """Config items and data items: two in one nesting directory, one more below the same first
    level, an empty one, and a larger one for the ranges."""
    items = {"config/manifest": value(tag + "manifest", 300), "config/nonce": value(tag + "nonce", 16)}
    items.update((data_name(tag, n), value(f"{tag}{n}", size)) for n, (_start, size) in DATA.items())
    return items


def sample_ranges(tag: str, deleted_n: int) -> list:
    big = data_name(tag, BIG)
    return [
        (big, 0, 100, False),
        (big, 1000, 4096, False),
        (big, 199_990, 100, False),  # runs past the end: the rest
        (big, -100, None, False),
        (big, -5000, 100, False),  # far from the end: the PyPI side asks for the size first
        (data_name(tag, deleted_n), 3, 5, True),
    ]


# --- the two sides ---


@pytest.fixture(scope="session")
def pypi_python(tmp_path_factory):
    """A venv with the PyPI borgstore 0.7.0 and its s3 extra (boto3)."""
    venv = tmp_path_factory.mktemp("pypi-borgstore-s3") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    result = subprocess.run(
        [python, "-m", "pip", "install", "-q", "borgstore[s3]==0.7.0"], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        _skip_or_fail(f"cannot install the PyPI borgstore[s3] 0.7.0 for the interop test: {result.stderr[-500:]}")
    return python


@pytest.fixture
def pypi(pypi_python, tmp_path):
    """pypi(url, action, plan=None, config=CONFIG): run the PyPI side; its stdout."""
    script = tmp_path / "pypi_side.py"
    shared = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (write_items, read_view))
    script.write_text(shared + "\n" + PYPI_MAIN)
    home = tmp_path / "pypi-home"  # an empty home: no ~/.aws of the user's
    home.mkdir()
    # everything boto3 needs is in the URL (key:secret and the endpoint): no AWS_* variables
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "")}
    runs = iter(range(1000))

    def run(url, action, plan=None, config=CONFIG):
        plan_path = tmp_path / f"plan{next(runs)}.json"
        plan_path.write_text(json.dumps(plan or {}))
        argv = [pypi_python, str(script), url, action, json.dumps(config), str(plan_path)]
        result = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert result.returncode == 0, f"PyPI side failed at {action}:\n{result.stderr[-3000:]}"
        return result.stdout

    return run


def our_view(url: str, plan: dict, config=CONFIG) -> dict:
    with Store(url, config=config) as store:
        return json.loads(json.dumps(read_view(store, plan)))


def our_write(url: str, plan: dict, config=CONFIG, **options) -> None:
    with Store(url, config=config, backend_options=options or None) as store:
        write_items(store, plan)


def bucket_keys(moto, url: str) -> list:
    """All object keys starting with the store's path (also ``path`` and ``path.x`` siblings)."""
    location = parse(url)
    return raw_keys(moto, location.bucket, location.path)


def raw_keys(moto, bucket: str, prefix: str) -> list:
    """The keys starting with *prefix* in the moto *bucket*, from raw ListObjectsV2 requests."""
    signer = Signer(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, "us-east-1")
    client = S3Client(moto.endpoint, bucket, signer, timeout=30)
    try:
        listing = pages(client, prefix, delimiter=None, what="raw listing")
        return sorted(k for page in listing for k, _size, _mtime in page.objects)
    finally:
        client.close()


def store_path(url: str) -> str:
    return parse(url).path


# --- the tests ---


@pytest.mark.packaging
@pytest.mark.parametrize("scheme", ["s3", "b2"])
def test_pypi_writes_we_read(moto, s3_url, pypi, scheme):
    """A store the PyPI backend created and wrote (soft deletions too) holds exactly one object
    per item and the marker, and reads back here item for item, range for range."""
    url = s3_url(scheme)
    model = Model()
    tag = "pypi-a"
    pypi(url, "create")
    pypi(url, "write", model.plan(store=sample_items(tag), soft_delete=[data_name(tag, 2), data_name(tag, 6)]))
    assert bucket_keys(moto, url) == model.object_keys(store_path(url))
    read = model.read_plan(sample_ranges(tag, 2))
    assert our_view(url, read) == model.expected(read)


@pytest.mark.packaging
@pytest.mark.parametrize("scheme", ["s3", "b2"])
def test_we_write_pypi_reads(moto, s3_url, pypi, scheme):
    """A store created and written here (one item a multipart upload) holds exactly one object
    per item and the marker, no directory objects, and reads back with the PyPI backend."""
    url = s3_url(scheme)
    model = Model()
    tag = "ours-a"
    items = sample_items(tag)
    multipart = "data/" + key("ours-a multipart", "abcd")
    items[multipart] = value("ours-a multipart", 5 * MiB + 1000)
    Store(url, config=CONFIG).create()
    plan = model.plan(store=items, soft_delete=[data_name(tag, 1), data_name(tag, 4)])
    our_write(url, plan, multipart_threshold=5 * MiB, part_size=5 * MiB)
    keys = bucket_keys(moto, url)
    assert keys == model.object_keys(store_path(url))
    assert [k for k in keys if k.endswith("/")] == [store_path(url) + "/"]
    read = model.read_plan(sample_ranges(tag, 1) + [(multipart, 5 * MiB - 10, 20, False)])
    assert json.loads(pypi(url, "read", read)) == model.expected(read)


@pytest.mark.packaging
def test_each_side_continues_the_others_store(moto, s3_url, pypi):
    """PyPI writes, we add, soft-delete and undelete, PyPI reads that and changes it further
    (an overwrite among it), and we read the result: what a user switching back and forth sees."""
    url = s3_url()
    model = Model()
    tag = "pypi-b"
    d1, d2, d3, big = (data_name(tag, n) for n in (1, 2, 3, BIG))
    pypi(url, "create")
    pypi(url, "write", model.plan(store=sample_items(tag), soft_delete=[d1, d2]))
    ours = {"data/" + key("ours-b1", "abcd"): value("ours-b1", 50), "data/" + key("ours-b2", "77"): value("b2", 60)}
    our_write(url, model.plan(store=ours, soft_delete=[d3], undelete=[d1]))
    assert bucket_keys(moto, url) == model.object_keys(store_path(url))
    read = model.read_plan([(d1, 1, 10, False), (d3, 0, 5, True)])
    assert json.loads(pypi(url, "read", read)) == model.expected(read)

    theirs = {"data/" + key("pypi-b9", "abcd"): value("pypi-b9", 70), big: value("overwritten", 80)}
    pypi(url, "write", model.plan(store=theirs, soft_delete=[next(iter(ours))]))
    assert bucket_keys(moto, url) == model.object_keys(store_path(url))
    read = model.read_plan([(big, 10, 20, False)])
    assert our_view(url, read) == model.expected(read)


@pytest.mark.packaging
def test_we_destroy_a_pypi_store(moto, s3_url, pypi):
    """Our destroy removes every object the PyPI backend wrote (live, soft-deleted, the marker):
    our open finds no store, and the PyPI create, which refuses a prefix holding anything,
    makes a new one there."""
    url = s3_url()
    model = Model()
    pypi(url, "create")
    pypi(url, "write", model.plan(store=sample_items("pypi-c"), soft_delete=[data_name("pypi-c", 1)]))
    assert bucket_keys(moto, url) == model.object_keys(store_path(url))
    Store(url, config=CONFIG).destroy()
    assert bucket_keys(moto, url) == []
    with pytest.raises(BackendDoesNotExist):
        Store(url, config=CONFIG).open()
    pypi(url, "create")
    assert bucket_keys(moto, url) == [store_path(url) + "/"]


@pytest.mark.packaging
def test_pypi_destroys_our_store(moto, s3_url, pypi):
    """The PyPI destroy removes every object we wrote: our open finds no store, and our create,
    which refuses a prefix holding items, makes a new one there."""
    url = s3_url()
    model = Model()
    Store(url, config=CONFIG).create()
    our_write(url, model.plan(store=sample_items("ours-c"), soft_delete=[data_name("ours-c", 2)]))
    assert bucket_keys(moto, url) == model.object_keys(store_path(url))
    pypi(url, "destroy")
    assert bucket_keys(moto, url) == []
    with pytest.raises(BackendDoesNotExist):
        Store(url, config=CONFIG).open()
    Store(url, config=CONFIG).create()
    assert bucket_keys(moto, url) == [store_path(url) + "/"]


MARKER_CONFIG = {**CONFIG, "index/": {"levels": [1]}}


def marker_dirs(items: dict) -> list:
    """Every directory the PyPI mkdir would make for *items*, parents too, and an empty one."""
    dirs = {"config", "data", "data/ee", "data/ee/ee"}
    for name in items:
        parts = backend_name(name).split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(dirs)


def check_backend_listings(url: str, items: dict) -> None:
    """Our backend's own list() and info() with marker objects present: each directory once."""
    first_level = {backend_name(name).split("/")[1] for name in items if name.startswith("data/")}
    backend = s3_backend_from_url(url)
    backend.open()
    try:
        assert [(i.name, i.directory) for i in backend.list("data")] == [
            (d, True) for d in sorted(first_level | {"ee"})
        ]
        assert [(i.name, i.directory) for i in backend.list("data/ab")] == [("cd", True), ("ef", True)]
        assert list(backend.list("data/ee/ee")) == []
        assert backend.info("data/ee").directory
        assert [i.name for i in backend.list_tree("index")] == []
    finally:
        backend.close()


@pytest.mark.packaging
def test_pypi_directory_markers_are_ignored(moto, s3_url, pypi):
    """The PyPI create() makes no directory objects, but its mkdir() (and with it
    Store.create_levels) does: ``path/data/ab/`` objects.  With them in the bucket, our listings,
    reads and writes are right, we add no directory objects, and our destroy removes them."""
    url = s3_url()
    path = store_path(url)
    model = Model()
    tag = "pypi-d"
    items = sample_items(tag)
    pypi(url, "create")
    assert bucket_keys(moto, url) == [path + "/"]
    pypi(url, "create_levels", {"levels_config": {"config/": {"levels": [0]}, "index/": {"levels": [1]}}})
    pypi(url, "mkdirs", {"mkdirs": marker_dirs(items)})
    pypi(url, "write", model.plan(store=items, soft_delete=[data_name(tag, 2)]))
    markers = {f"{path}/{d}/" for d in marker_dirs(items)} | {f"{path}/index/{i:02x}/" for i in range(256)}
    assert bucket_keys(moto, url) == sorted(model.object_keys(path) + sorted(markers))

    read = model.read_plan(sample_ranges(tag, 2), ("config", "data", "index"))
    expected = model.expected(read)
    assert expected["namespaces"]["index"] == {"live": [], "deleted": []}
    assert our_view(url, read, MARKER_CONFIG) == expected
    check_backend_listings(url, items)

    ours = {"data/" + key("ours-d1", "abcd"): value("ours-d1", 40), "index/" + key("ours-d2", "ee"): value("d2", 9)}
    our_write(url, model.plan(store=ours, soft_delete=[data_name(tag, 3)]), MARKER_CONFIG)
    assert bucket_keys(moto, url) == sorted(model.object_keys(path) + sorted(markers))
    read = model.read_plan(namespaces=("config", "data", "index"))
    assert json.loads(pypi(url, "read", read, MARKER_CONFIG)) == model.expected(read)
    assert our_view(url, read, MARKER_CONFIG) == model.expected(read)

    Store(url, config=MARKER_CONFIG).destroy()
    assert bucket_keys(moto, url) == []


@pytest.mark.packaging
def test_nested_percent_encoded_path(moto, s3_url, pypi):
    """A store path of several components with percent-encoded characters (a space, a non-ASCII
    letter) and a plus sign names the same key prefix on both sides, both ways."""
    url = s3_url() + "/sub%20dir/r%C3%A9po+1"
    path = store_path(url)
    assert path.endswith("/sub dir/répo+1")
    model = Model()
    tag = "pypi-e"
    pypi(url, "create")
    pypi(url, "write", model.plan(store=sample_items(tag), soft_delete=[data_name(tag, 3)]))
    assert bucket_keys(moto, url) == model.object_keys(path)
    read = model.read_plan([(data_name(tag, 1), 10, 10, False)])
    assert our_view(url, read) == model.expected(read)

    ours = {"data/" + key("ours-e1", "abcd"): value("ours-e1", 30)}
    our_write(url, model.plan(store=ours, soft_delete=[data_name(tag, 1)]))
    assert bucket_keys(moto, url) == model.object_keys(path)
    read = model.read_plan([(data_name(tag, 1), 10, 10, True)])
    assert json.loads(pypi(url, "read", read)) == model.expected(read)


@pytest.mark.packaging
def test_pypi_store_without_marker_opens(moto, s3_url, pypi):
    """The PyPI backend's open() looks for nothing, so items written there without create()
    leave no ``path/`` marker: such a store opens and reads here all the same."""
    url = s3_url()
    model = Model()
    tag = "pypi-f"
    pypi(url, "write", model.plan(store=sample_items(tag), soft_delete=[data_name(tag, 6)]))
    assert bucket_keys(moto, url) == model.object_keys(store_path(url))[1:]
    read = model.read_plan()
    assert our_view(url, read) == model.expected(read)


@pytest.mark.packaging
def test_url_with_double_slash_names_the_pypi_prefix(moto, s3_url, pypi):
    """``s3:.../bucket//x``: the PyPI backend's keys start with ``/x/``.  Here the same URL must
    name that store too, or be refused as invalid, but never name another prefix silently."""
    base = s3_url()
    url = base.replace(f"/{store_path(base)}", f"//{store_path(base)}")
    model = Model()
    pypi(url, "create")
    pypi(url, "write", model.plan(store={"config/manifest": b"pypi at a leading slash"}))
    path = store_path(base)
    assert raw_keys(moto, parse(base).bucket, "/" + path) == [f"/{path}/", f"/{path}/config/manifest"]
    assert bucket_keys(moto, base) == []
    read = model.read_plan(namespaces=("config",))
    try:
        view = our_view(url, read)
    except BackendURLInvalid:
        return
    assert view == model.expected(read)
