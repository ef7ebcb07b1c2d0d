"""The browsing subcommands of `borgstore` (ls, stat, cat, put, rm, mv, du) on BorgBackup-like
stores: exact outputs, JSON lines, exit statuses, discovery of the nesting levels (docs/cli.md)."""

import hashlib
import json
import os
import subprocess
import sys
import time
import types
import uuid

import pytest

from borgstore import _plugins, hookimpl
from borgstore._cli import main
from borgstore._cli._levels import discover
from borgstore._plugins import BackendSpec
from borgstore.backends.memory import MemoryBackend
from borgstore.store import Store, build_chain

MTIME = 1796064791  # 2026-11-30 18:53:11 UTC
WHEN = "2026-11-30 18:53:11"
README = b"This is a Borg Backup repository.\n"
CHUNKS = [b"chunk zero", b"chunk one", b"chunk two \xff\x00 binary"]
KEYS = [hashlib.sha256(chunk).hexdigest() for chunk in CHUNKS]
ARCHIVE = hashlib.sha256(b"archive 1").hexdigest()
BORG_LEVELS = {
    "archives/": [0],
    "cache/": [0],
    "config/": [0],
    "data/": [2],
    "index/": [0],
    "keys/": [0],
    "locks/": [0],
}


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Times print in local time: make it UTC for exact outputs."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def repo(tmp_path, file_backend):
    """A BorgBackup 2-like store: config/ keys/ archives/ flat, data/ at level 2 with a soft-deleted
    chunk and a leftover temp item, empty locks/, a quota.hid in the root; every mtime MTIME."""
    root = tmp_path / "repo"
    store = Store(f"file://{root}", config={ns: {"levels": levels} for ns, levels in BORG_LEVELS.items()})
    store.create()
    with store:
        store.store("config/readme", README)
        store.store("config/id", b"0123")
        store.store("keys/repokey", b"KEY DATA")
        store.store(f"archives/{ARCHIVE}", b"archive metadata")
        for key, chunk in zip(KEYS, CHUNKS):
            store.store(f"data/{key}", chunk)
        store.move(f"data/{KEYS[1]}", delete=True)
    for namespace in ("locks", "cache", "index"):
        (root / namespace).mkdir(exist_ok=True)
    (root / "quota.hid").write_bytes(b"123")
    leaf = root / "data" / KEYS[0][:2] / KEYS[0][2:4]
    (leaf / f"{KEYS[2]}.4f2a.tmp").write_bytes(b"half-written")
    for path in root.rglob("*"):
        os.utime(path, (MTIME, MTIME))
    return f"file://{root}"


def run(capsys, *argv):
    """Run `borgstore ARGV` in this process: (exit status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def cli(*argv, stdin=b""):
    """Run the real command in a subprocess: (exit status, stdout bytes, stderr text)."""
    env = {**os.environ, "TZ": "UTC"}
    result = subprocess.run(
        [sys.executable, "-m", "borgstore", *argv], input=stdin, capture_output=True, env=env, timeout=120, check=False
    )
    return result.returncode, result.stdout, result.stderr.decode()


def line(size, name, marker=""):
    return f"{size:>12}  {WHEN}  {name}{marker}"


def tree(url):
    """Every file below the store's root with its bytes and mtime: what a read must not change."""
    root = url[len("file://") :]
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = (f.read(), os.stat(path).st_mtime)
    return found


# --- the command line ---


def test_help_lists_every_browsing_subcommand_with_a_one_line_help():
    """`borgstore --help` names ls, stat, cat, put, rm, mv and du, each with its one-line help."""
    status, out, _ = cli("--help")
    assert status == 0
    text = out.decode()
    for command, words in [
        ("ls", "list the items of a namespace"),
        ("stat", "show an item's size, mtime"),
        ("cat", "write an item's bytes"),
        ("put", "store a file (or stdin) as an item"),
        ("rm", "soft-delete items (--hard: for good)"),
        ("mv", "rename an item, or undelete soft-deleted items"),
        ("du", "count items and bytes per namespace"),
    ]:
        assert any(row.split() and row.split()[0] == command and words in row for row in text.splitlines()), command


def test_bad_levels_option_is_a_usage_error_naming_it(repo):
    """--levels without '=' or with a level out of range exits 2 and quotes the bad value."""
    for bad in ("data", "data/=9", "data/=x", "Data/=1"):
        status, _, err = cli("ls", repo, "--levels", bad)
        assert status == 2
        assert f"invalid --levels {bad!r}" in err


# --- ls ---


def test_ls_root_of_a_borg_repository_shows_its_namespaces_with_discovered_levels(repo):
    """`ls URL` on a BorgBackup-like store, no flags: each namespace with its levels (data/ 2), no quota.hid."""
    status, out, err = cli("ls", repo)
    assert (status, err) == (0, "")
    assert out.decode().splitlines() == [
        f"{'-':>12}  {'-':19}  {ns}  (levels {levels[0]})" for ns, levels in sorted(BORG_LEVELS.items())
    ]


def test_ls_namespace_lists_live_items_sorted_by_application_name(repo, capsys):
    """`ls URL data` lists the live chunks by their application names, sorted, without the temp item."""
    status, out, err = run(capsys, "ls", repo, "data")
    assert (status, err) == (0, "")
    live = sorted([(KEYS[0], CHUNKS[0]), (KEYS[2], CHUNKS[2])])
    assert out.splitlines() == [line(len(chunk), f"data/{key}") for key, chunk in live]


def test_ls_deleted_shows_only_soft_deleted_items_and_all_shows_both(repo, capsys):
    """--deleted lists the soft-deleted chunk alone; -a lists all three, the deleted one marked."""
    assert run(capsys, "ls", repo, "data/", "--deleted")[1].splitlines() == [
        line(len(CHUNKS[1]), f"data/{KEYS[1]}", "  (deleted)")
    ]
    status, out, _ = run(capsys, "ls", repo, "data", "-a")
    assert status == 0
    expected = sorted(
        (key, line(len(chunk), f"data/{key}", "  (deleted)" if i == 1 else ""))
        for i, (key, chunk) in enumerate(zip(KEYS, CHUNKS))
    )
    assert out.splitlines() == [text for _, text in expected]


def test_ls_json_prints_one_object_per_item_for_scripts(repo, capsys):
    """--json: one object per line with name, size, deleted and mtime; namespaces carry their levels."""
    status, out, _ = run(capsys, "ls", repo, "data", "--all", "--json")
    assert status == 0
    objects = [json.loads(text) for text in out.splitlines()]
    assert objects == sorted(
        (
            {"name": f"data/{key}", "size": len(chunk), "deleted": i == 1, "mtime": MTIME}
            for i, (key, chunk) in enumerate(zip(KEYS, CHUNKS))
        ),
        key=lambda obj: obj["name"],
    )
    status, out, _ = run(capsys, "ls", repo, "--json")
    assert json.loads(out.splitlines()[3]) == {"name": "data/", "namespace": True, "levels": [2], "nesting": "hex"}


def test_ls_recursive_lists_every_item_and_never_temp_or_hidden_items(repo, capsys):
    """-R lists every live item of every namespace; the leftover .tmp and quota.hid never appear."""
    status, out, _ = run(capsys, "ls", "-R", repo)
    assert status == 0
    assert out.splitlines() == [
        line(16, f"archives/{ARCHIVE}"),
        line(4, "config/id"),
        line(len(README), "config/readme"),
        *[line(len(chunk), f"data/{key}") for key, chunk in sorted([(KEYS[0], CHUNKS[0]), (KEYS[2], CHUNKS[2])])],
        line(8, "keys/repokey"),
    ]
    assert ".tmp" not in run(capsys, "ls", "-R", "-a", repo)[1]
    assert "hid" not in run(capsys, "ls", "-a", repo)[1]


def test_ls_root_merges_root_items_with_the_namespaces(repo, capsys):
    """An item of the root namespace is listed among the namespaces, in name order."""
    assert run(capsys, "put", repo, "db-info", os.devnull) == (0, "", "")
    status, out, _ = run(capsys, "ls", repo, "--json")
    assert status == 0
    names = [json.loads(text)["name"] for text in out.splitlines()]
    assert names == ["archives/", "cache/", "config/", "data/", "db-info", "index/", "keys/", "locks/"]


def test_ls_human_readable_sizes_use_1024_based_units(tmp_path, file_backend, capsys):
    """--human-readable prints 512 B, 1.5 KiB and 2.0 MiB for items of those sizes."""
    url = f"file://{tmp_path}/store"
    store = Store(url, config={"blobs/": {"levels": [0]}})
    store.create()
    with store:
        for name, size in (("a", 512), ("b", 1536), ("c", 2 * 1024 * 1024)):
            store.store(f"blobs/{name}", bytes(size))
    status, out, _ = run(capsys, "ls", url, "blobs", "--human-readable")
    assert status == 0
    assert [text[:12].strip() for text in out.splitlines()] == ["512 B", "1.5 KiB", "2.0 MiB"]


# --- discovery of the levels ---


def memory_tree(items=(), directories=()):
    """An open memory backend holding *items* (backend names) and *directories*."""
    backend = MemoryBackend(f"discovery-{uuid.uuid4().hex}")
    backend.create()
    backend.open()
    for name in directories:
        backend.mkdir(name)
    for name in items:
        backend.store(name, b"x")
    return backend


def test_discovery_finds_the_level_of_sparse_and_pre_created_trees():
    """Items two directories deep give level 2; an all-empty pre-created level-2 tree too; level 3 too."""
    key = "0123abcd"
    assert discover(memory_tree([f"data/01/23/{key}"]).list, "data").levels == (2,)
    assert discover(memory_tree([f"data/01/23/45/{key}"]).list, "data").levels == (3,)
    pre_created = [f"data/{i:02x}/{j:02x}" for i in range(256) for j in range(0, 256, 51)]
    assert discover(memory_tree(directories=pre_created).list, "data").levels == (2,)
    layout = discover(memory_tree([f"data/01/23/{key}"], pre_created).list, "data")
    assert layout.levels == (2,)


def test_discovery_calls_flat_what_holds_anything_but_nesting_directories():
    """Hex keys stored directly, a directory of another name, an empty namespace: level 0 (a hex directory: 1)."""
    assert discover(memory_tree([f"archives/{ARCHIVE}"]).list, "archives").levels == (0,)
    assert discover(memory_tree(["cache/ab/x"]).list, "cache").levels == (1,)
    assert discover(memory_tree(["cache/abc/x"]).list, "cache").levels == (0,)
    assert discover(memory_tree(directories=["locks"]).list, "locks").levels == (0,)


def test_discovery_lists_a_bounded_sample_of_directories():
    """A full level-2 tree of 256 x 256 directories is read with at most 1 + 4 + 4 listings."""
    backend = memory_tree([f"data/{i:02x}/{j:02x}/{i:02x}{j:02x}aa" for i in range(256) for j in range(0, 256, 17)])
    listed = []

    def list_dir(name):
        listed.append(name)
        return backend.list(name)

    assert discover(list_dir, "data").levels == (2,)
    assert len(listed) <= 9


def test_discovery_notes_items_beside_nesting_directories():
    """A namespace being converted (items at level 0 and level 1) is read flat, with a note naming --levels."""
    layout = discover(memory_tree(["data/0123", "data/45/4567"]).list, "data")
    assert layout.levels == (0,)
    assert "--levels data/=LEVEL,LEVEL" in layout.note


def test_discovery_tells_hash_nesting_from_hex_nesting():
    """An item under its SHA-256 digits is hash-nested; under its own leading digits hex-nested."""
    digits = hashlib.sha256(b"config").hexdigest()
    assert discover(memory_tree([f"meta/{digits[:2]}/config"]).list, "meta").nesting == "hash"
    assert discover(memory_tree(["data/01/0123"]).list, "data").nesting == "hex"
    assert discover(memory_tree(directories=["data/01"]).list, "data").nesting is None


def test_levels_option_overrides_discovery(repo, capsys):
    """--levels data/=0 finds no item in data/; --levels data/=0,2 finds the chunks again."""
    status, out, _ = run(capsys, "ls", repo, "data", "--levels", "data/=0")
    assert (status, out) == (0, "")
    status, out, _ = run(capsys, "ls", repo, "data", "--levels", "data=0,2")
    assert status == 0
    assert len(out.splitlines()) == 2
    status, out, _ = run(capsys, "ls", repo, "--levels", "data/=1,2")
    assert "data/  (levels 1,2)" in out


def test_a_hash_nested_namespace_is_read_without_flags(tmp_path, file_backend, capsys):
    """stat and cat find items of a hash-nested namespace with no --nesting; ls lists them sorted."""
    url = f"file://{tmp_path}/store"
    store = Store(url, config={"meta/": {"levels": [1], "nesting": "hash"}})
    store.create()
    with store:
        for name in ("zeta", "alpha", "config"):
            store.store(f"meta/{name}", name.encode())
    assert [text.split()[-1] for text in run(capsys, "ls", url, "meta")[1].splitlines()] == [
        "meta/alpha",
        "meta/config",
        "meta/zeta",
    ]
    status, out, _ = run(capsys, "stat", url, "meta/zeta")
    assert status == 0
    assert f"stored as: meta/{hashlib.sha256(b'zeta').hexdigest()[:2]}/zeta" in out
    assert main(["cat", url, "meta/alpha"]) == 0
    assert capsys.readouterr().out == "alpha"


# --- stat and cat ---


def test_stat_shows_size_mtime_and_where_a_live_item_is(repo, capsys):
    """stat of a live chunk: its size, mtime, 'deleted: no' and its nested backend name."""
    status, out, _ = run(capsys, "stat", repo, f"data/{KEYS[0]}")
    assert status == 0
    assert out.splitlines() == [
        f"name:      data/{KEYS[0]}",
        f"size:      {len(CHUNKS[0])}",
        f"mtime:     {WHEN}",
        "deleted:   no",
        f"stored as: data/{KEYS[0][:2]}/{KEYS[0][2:4]}/{KEYS[0]}",
    ]


def test_stat_finds_a_soft_deleted_item_and_says_so(repo, capsys):
    """stat of a soft-deleted chunk (with or without --deleted): 'deleted: yes'; --json says the same."""
    for extra in ((), ("--deleted",)):
        status, out, _ = run(capsys, "stat", repo, f"data/{KEYS[1]}", *extra, "--json")
        assert status == 0
        assert json.loads(out) == {
            "name": f"data/{KEYS[1]}",
            "size": len(CHUNKS[1]),
            "deleted": True,
            "mtime": MTIME,
            "stored_as": f"data/{KEYS[1][:2]}/{KEYS[1][2:4]}/{KEYS[1]}.del",
        }


def test_stat_of_a_missing_item_exits_1_naming_the_application_name(repo, capsys):
    """A missing item: exit status 1, 'error: no item data/<key> in URL', nothing on stdout."""
    missing = "data/" + "ab" * 32
    assert run(capsys, "stat", repo, missing) == (1, "", f"error: no item {missing} in {repo}\n")
    status, _, err = run(capsys, "stat", repo, f"data/{KEYS[0]}", "--deleted")
    assert status == 1
    assert err == f"error: no soft-deleted item data/{KEYS[0]} in {repo} (only the live item exists)\n"


def test_cat_writes_the_exact_bytes_to_stdout(repo):
    """`cat URL NAME > file` gives the item's bytes unchanged, binary ones included (a real subprocess)."""
    status, out, err = cli("cat", repo, f"data/{KEYS[2]}")
    assert (status, out, err) == (0, CHUNKS[2], "")


def test_cat_offset_and_size_select_a_range(repo, capsysbinary):
    """--offset/--size read a range; a negative offset counts from the end; --deleted reads the soft-deleted item."""
    name = f"data/{KEYS[2]}"
    cases = [
        (["--offset", "6", "--size", "3"], CHUNKS[2][6:9]),
        (["--offset", "-8"], CHUNKS[2][-8:]),
        (["--offset", "-8", "--size", "2"], CHUNKS[2][-8:-6]),
        (["--size", "0"], b""),
        (["--offset", "100"], b""),
    ]
    for options, expected in cases:
        assert main(["cat", repo, name, *options]) == 0
        assert capsysbinary.readouterr().out == expected, options
    assert main(["cat", repo, f"data/{KEYS[1]}", "--deleted", "--offset", "6"]) == 0
    assert capsysbinary.readouterr().out == CHUNKS[1][6:]


def test_cat_of_a_soft_deleted_item_without_deleted_exits_1_with_a_hint(repo, capsys):
    """cat of a soft-deleted name fails with status 1 and points at --deleted and mv --undelete."""
    status, out, err = run(capsys, "cat", repo, f"data/{KEYS[1]}")
    assert (status, out) == (1, "")
    assert err == (
        f"error: no item data/{KEYS[1]} in {repo} (it is soft-deleted: --deleted acts on it, "
        "mv --undelete brings it back)\n"
    )


def test_cat_with_a_negative_size_is_an_error(repo, capsys):
    """--size -1 exits 2 with the Store's message and prints no bytes."""
    status, out, err = run(capsys, "cat", repo, "config/id", "--size", "-1")
    assert (status, out) == (2, "")
    assert err.startswith("error: invalid size -1")


def test_read_commands_change_nothing(repo, capsys):
    """ls, stat, cat and du leave every file, its bytes and its mtime, as they were."""
    before = tree(repo)
    for argv in (["ls", "-R", "-a", repo], ["stat", repo, "config/id"], ["cat", repo, "config/id"], ["du", repo]):
        assert main(argv) == 0
    capsys.readouterr()
    assert tree(repo) == before


# --- put ---


def test_put_reads_stdin_and_refuses_to_overwrite_without_force(repo):
    """`put URL NAME` stores stdin; a second put of the name exits 2 and keeps the first value; --force replaces."""
    assert cli("put", repo, "config/manifest", stdin=b"first\x00") == (0, b"", "")
    assert cli("cat", repo, "config/manifest")[1] == b"first\x00"
    status, out, err = cli("put", repo, "config/manifest", "-", stdin=b"second")
    assert (status, out) == (2, b"")
    assert err == f"error: config/manifest exists in {repo}: give --force to replace it\n"
    assert cli("cat", repo, "config/manifest")[1] == b"first\x00"
    assert cli("put", repo, "config/manifest", "--force", stdin=b"second")[0] == 0
    assert cli("cat", repo, "config/manifest")[1] == b"second"


def test_put_stores_a_file_where_the_store_nests_it(repo, tmp_path, capsys):
    """put from a file into data/ writes it at level 2, where an application finds it."""
    source = tmp_path / "chunk"
    source.write_bytes(b"new chunk")
    key = hashlib.sha256(b"new chunk").hexdigest()
    assert run(capsys, "put", repo, f"data/{key}", str(source)) == (0, "", "")
    store = Store(repo, config={ns: {"levels": levels} for ns, levels in BORG_LEVELS.items()})
    with store:
        assert store.load(f"data/{key}") == b"new chunk"
        assert store.find(f"data/{key}") == f"data/{key[:2]}/{key[2:4]}/{key}"


def test_put_of_an_unreadable_file_changes_nothing(repo, tmp_path, capsys):
    """A FILE that does not exist: exit 2 naming it, and no item is created."""
    before = tree(repo)
    status, _, err = run(capsys, "put", repo, "config/x", str(tmp_path / "nosuch"))
    assert status == 2
    assert err == f"error: cannot read {tmp_path / 'nosuch'}: No such file or directory\n"
    assert tree(repo) == before


def test_put_into_a_namespace_of_unknown_nesting_asks_for_it(tmp_path, file_backend, capsys):
    """A pre-created nested namespace with no item tells no strategy: put exits 2 asking for --nesting."""
    url = f"file://{tmp_path}/store"
    store = Store(url, config={"data/": {"levels": [1]}})
    store.create()
    store.create_levels()
    status, _, err = run(capsys, "put", url, "data/abcd", os.devnull)
    assert status == 2
    assert "give --nesting data/=hex or --nesting data/=hash" in err
    assert run(capsys, "put", url, "data/abcd", os.devnull, "--nesting", "data/=hex")[0] == 0
    assert (tmp_path / "store" / "data" / "ab" / "abcd").exists()


# --- rm and mv ---


def test_rm_soft_deletes_and_mv_undelete_brings_it_back(repo, capsys):
    """rm moves the item to NAME.del (ls --deleted lists it); mv --undelete restores it byte for byte."""
    assert run(capsys, "rm", repo, "config/readme") == (0, "", "")
    root = repo[len("file://") :]
    assert os.path.exists(f"{root}/config/readme.del")
    assert [text.split()[-1] for text in run(capsys, "ls", repo, "config")[1].splitlines()] == ["config/id"]
    assert "config/readme  (deleted)" in run(capsys, "ls", repo, "config", "--deleted")[1]
    assert run(capsys, "mv", repo, "--undelete", "config/readme") == (0, "", "")
    with open(f"{root}/config/readme", "rb") as f:
        assert f.read() == README


def test_rm_hard_and_rm_deleted_delete_for_good(repo, capsys):
    """rm --hard removes a live item with no .del left; rm --deleted removes a soft-deleted one."""
    root = repo[len("file://") :]
    assert run(capsys, "rm", repo, "--hard", "config/id") == (0, "", "")
    assert not os.path.exists(f"{root}/config/id") and not os.path.exists(f"{root}/config/id.del")
    leaf = f"{root}/data/{KEYS[1][:2]}/{KEYS[1][2:4]}"
    assert run(capsys, "rm", repo, "--deleted", f"data/{KEYS[1]}") == (0, "", "")
    assert os.listdir(leaf) == []


def test_rm_goes_on_after_a_missing_name_and_exits_1(repo, capsys):
    """rm of a missing name and a present one: the present one is soft-deleted, the missing one reported, status 1."""
    status, _, err = run(capsys, "rm", repo, "config/nosuch", "config/id")
    assert status == 1
    assert err == f"error: no item config/nosuch in {repo}\n"
    assert "config/id  (deleted)" in run(capsys, "ls", repo, "config", "-a")[1]


def test_rm_with_one_invalid_name_changes_nothing(repo, capsys):
    """An invalid name among several: exit 2 naming it, and no name is deleted."""
    before = tree(repo)
    status, _, err = run(capsys, "rm", repo, "config/id", "Config/readme")
    assert status == 2
    assert err == "error: invalid name 'Config/readme': uppercase letters are not allowed\n"
    assert tree(repo) == before


def test_mv_renames_and_refuses_to_replace_without_force(repo, capsys):
    """mv renames an item; onto an existing name it exits 2 and changes nothing unless --force."""
    assert run(capsys, "mv", repo, "config/id", "config/old-id") == (0, "", "")
    before = tree(repo)
    status, _, err = run(capsys, "mv", repo, "config/old-id", "config/readme")
    assert status == 2
    assert err == f"error: config/readme exists in {repo}: give --force to replace it\n"
    assert tree(repo) == before
    assert run(capsys, "mv", repo, "config/old-id", "config/readme", "-f")[0] == 0
    assert main(["cat", repo, "config/readme"]) == 0
    assert capsys.readouterr().out == "0123"


def test_mv_undelete_does_not_replace_a_live_item_without_force(repo, capsys):
    """Undeleting where a live item of that name exists exits 2; with --force the soft-deleted one wins."""
    name = f"data/{KEYS[1]}"
    assert run(capsys, "put", repo, name, os.devnull) == (0, "", "")
    status, _, err = run(capsys, "mv", repo, "--undelete", name)
    assert status == 2
    assert "give --force to replace it with the soft-deleted one" in err
    assert run(capsys, "mv", repo, "--undelete", name, "--force") == (0, "", "")
    assert main(["cat", repo, name]) == 0
    assert capsys.readouterr().out.encode() == CHUNKS[1]


def test_mv_of_a_missing_item_exits_1_and_wrong_arity_exits_2(repo, capsys):
    """mv of a missing source: status 1 naming it; mv with three names and no --undelete: status 2."""
    assert run(capsys, "mv", repo, "config/nosuch", "config/x") == (1, "", f"error: no item config/nosuch in {repo}\n")
    status, _, err = run(capsys, "mv", repo, "config/id", "config/a", "config/b")
    assert status == 2
    assert "mv needs NAME NEW_NAME" in err


# --- du ---


def test_du_counts_live_and_soft_deleted_items_and_bytes_per_namespace(repo, capsys):
    """du: a row per namespace (root first), live and soft-deleted apart, temp and .hid items not counted, a total."""
    status, out, _ = run(capsys, "du", repo)
    assert status == 0
    assert (len(README), len(CHUNKS[0]) + len(CHUNKS[2]), len(CHUNKS[1])) == (34, 29, 9)
    assert out.splitlines() == [
        "namespace  items  bytes  deleted items  deleted bytes",
        "(root)         0      0              0              0",
        "archives/      1     16              0              0",
        "cache/         0      0              0              0",
        "config/        2     38              0              0",
        "data/          2     29              1              9",
        "index/         0      0              0              0",
        "keys/          1      8              0              0",
        "locks/         0      0              0              0",
        "total          6     91              1              9",
    ]


def test_du_json_prints_one_object_per_namespace_and_the_total(repo, capsys):
    """du --json data config: an object per namespace asked for, then the total with namespace null."""
    status, out, _ = run(capsys, "du", repo, "data", "config/", "--json")
    assert status == 0
    live = len(CHUNKS[0]) + len(CHUNKS[2])
    assert [json.loads(text) for text in out.splitlines()] == [
        {"namespace": "data/", "items": 2, "bytes": live, "deleted_items": 1, "deleted_bytes": len(CHUNKS[1])},
        {"namespace": "config/", "items": 2, "bytes": 38, "deleted_items": 0, "deleted_bytes": 0},
        {"namespace": None, "items": 4, "bytes": live + 38, "deleted_items": 1, "deleted_bytes": len(CHUNKS[1])},
    ]


# --- errors ---


def test_a_missing_namespace_exits_1_listing_the_namespaces(repo):
    """ls and du of a namespace that is not there: status 1, and the message lists the ones that are."""
    for command in ("ls", "du"):
        status, out, err = cli(command, repo, "nosuch")
        assert (status, out) == (1, b"")
        assert err == (
            f"error: no namespace 'nosuch/' in {repo} "
            "(namespaces: archives/, cache/, config/, data/, index/, keys/, locks/)\n"
        )


def test_bad_urls_names_and_missing_stores_exit_2(repo, tmp_path, capsys):
    """An unknown scheme, a store that is not there and an invalid name each exit 2 with one error line."""
    status, _, err = run(capsys, "ls", "nosuch://x")
    assert status == 2 and err.startswith("error: unknown URL scheme 'nosuch'")
    status, _, err = run(capsys, "ls", f"file://{tmp_path}/none")
    assert status == 2 and err.startswith(f"error: no store at file://{tmp_path}/none: ")
    status, _, err = run(capsys, "stat", repo, "data//x")
    assert status == 2 and err.startswith("error: invalid name 'data//x'")
    status, _, err = run(capsys, "ls", repo, "Data")
    assert status == 2 and err.startswith("error: invalid namespace 'Data'")


@pytest.fixture
def immutable():
    """Make a directory immutable (even root cannot write into it); undone at the end."""
    made = []

    def make(path):
        result = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"this file system cannot make a directory immutable: {result.stderr.strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_refused_permission_exits_2_naming_the_item_and_changes_nothing(repo, immutable):
    """rm and put into a directory the file system refuses to change: status 2, the item named, nothing changed."""
    immutable(repo[len("file://") :] + "/config")
    before = tree(repo)
    status, _, err = cli("rm", repo, "config/id")
    assert status == 2
    assert err.startswith(f"error: permission denied for config/id in {repo}: ")
    status, _, err = cli("put", repo, "config/new", stdin=b"x")
    assert status == 2
    assert err.startswith(f"error: permission denied for config/new in {repo}: ")
    assert tree(repo) == before


@pytest.fixture
def scheme():
    """register(name, factory): serve URLs of scheme *name* by *factory* for this test."""
    registered = []

    def register(name, factory):
        plugin = types.ModuleType(f"borgstore_test_browse_{name}")
        plugin.borgstore_backends = hookimpl(lambda: [BackendSpec(schemes=(name,), factory=factory)])
        _plugins.plugin_manager().register(plugin, name=f"borgstore-test-browse-{name}")
        registered.append(name)

    yield register
    for name in registered:
        _plugins.plugin_manager().unregister(name=f"borgstore-test-browse-{name}")


@pytest.fixture
def secret_scheme(scheme):
    """A URL scheme 'secretmem' whose URLs carry a password; the store is memory:<last path part>,
    refusing writes below data/ (the permissions middleware)."""

    def factory(url):
        backend = MemoryBackend(url.rpartition("/")[2])
        return build_chain(backend, [("permissions", {"permissions": {"": "lrwWD", "data": "lr"}})])

    scheme("secretmem", factory)
    return f"secretmem://alice:hunter2@host/browse-{uuid.uuid4().hex}"


def test_errors_hide_the_password_of_the_url(secret_scheme, capsys):
    """No store, a missing item and a refused permission: messages show the URL with '***', never the password."""
    shown = secret_scheme.replace("hunter2", "***")
    status, _, err = run(capsys, "ls", secret_scheme)
    assert status == 2 and err.startswith(f"error: no store at {shown}: ")
    Store(f"memory:{secret_scheme.rpartition('/')[2]}", config={"data/": {"levels": [0]}}).create()
    status, _, err = run(capsys, "put", secret_scheme, "config/a", os.devnull)
    assert status == 0
    assert run(capsys, "stat", secret_scheme, "config/b")[2] == f"error: no item config/b in {shown}\n"
    status, _, err = run(capsys, "put", secret_scheme, "data/ab", os.devnull)
    assert status == 2
    assert err.startswith(f"error: permission denied for data/ab in {shown}: ")
    assert "hunter2" not in err


def test_du_and_put_work_on_a_backend_without_list_tree_or_store_new(scheme, capsys):
    """A backend listing one directory at a time and unable to create exclusively: du counts the
    same, put still refuses to overwrite (memory with both options off)."""
    scheme("plainmem", lambda url: MemoryBackend(url.partition(":")[2], list_tree=False, store_new=False))
    name = f"plain-{uuid.uuid4().hex}"
    store = Store(f"memory:{name}", config={"data/": {"levels": [2]}})
    store.create()
    with store:
        for key, chunk in zip(KEYS, CHUNKS):
            store.store(f"data/{key}", chunk)
        store.move(f"data/{KEYS[1]}", delete=True)
    for url in (f"memory:{name}", f"plainmem:{name}"):
        status, out, err = run(capsys, "du", url, "data", "--json")
        assert status == 0, f"du {url}: {err}"  # failed once in CI with status 2, cause not yet known
        assert json.loads(out.splitlines()[0]) == {
            "namespace": "data/",
            "items": 2,
            "bytes": len(CHUNKS[0]) + len(CHUNKS[2]),
            "deleted_items": 1,
            "deleted_bytes": len(CHUNKS[1]),
        }
    status, _, err = run(capsys, "put", f"plainmem:{name}", f"data/{KEYS[0]}", os.devnull)
    assert status == 2 and "give --force to replace it" in err
    assert run(capsys, "put", f"plainmem:{name}", f"data/{'ee' * 32}", os.devnull) == (0, "", "")
    with store:
        assert store.load(f"data/{KEYS[0]}") == CHUNKS[0]
        assert store.load(f"data/{'ee' * 32}") == b""
