"""Messages name items as the application did (and where the backend keeps them), and the
missing-backend message gives an install command that works where the user is."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from borgstore.backends.errors import (
    BackendConnectionError,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
    ReadRangeError,
)
from borgstore.backends.memory import MemoryBackend
from borgstore.store import Store

ROOT = Path(__file__).resolve().parent.parent
KEY = "0123abcd"
NESTED = "data/01/23/0123abcd"
CONFIG = {"config/": {"levels": [0]}, "data/": {"levels": [2]}, "multi/": {"levels": [0, 2]}}


@pytest.fixture
def store(url):
    """An open, empty store with a flat, a two-level and a two-levels-at-once namespace."""
    store = Store(url, config=CONFIG)
    store.create()
    store.open()
    yield store
    store.close()
    store.destroy()


MISSING_LIVE = [
    ("load", lambda s: s.load(f"data/{KEY}")),
    ("load a range", lambda s: s.load(f"data/{KEY}", offset=1, size=2)),
    ("delete", lambda s: s.delete(f"data/{KEY}")),
    ("soft delete", lambda s: s.move(f"data/{KEY}", delete=True)),
    ("rename", lambda s: s.move(f"data/{KEY}", "data/4567cdef")),
    ("change level", lambda s: s.move(f"data/{KEY}", change_level=True) or s.load(f"data/{KEY}")),
    ("hash", lambda s: s.hash(f"data/{KEY}")),
    ("gather", lambda s: s.gather([(f"data/{KEY}", 0, 1)])),
    ("gather by key", lambda s: s.gather([(KEY, 0, 1)], namespace="data")),
    ("defrag", lambda s: s.defrag([(KEY, 0, 1)], target="89abcdef", namespace="data")),
]


@pytest.mark.parametrize("operation", [op for _, op in MISSING_LIVE], ids=[name for name, _ in MISSING_LIVE])
def test_missing_item_is_named_as_the_application_named_it(store, operation):
    """ObjectNotFound says the application's name first, then the nested backend name."""
    with pytest.raises(ObjectNotFound) as exc:
        operation(store)
    assert str(exc.value) == f"data/{KEY} (stored as {NESTED})"


MISSING_DELETED = [
    ("load", lambda s: s.load(f"data/{KEY}", deleted=True)),
    ("delete", lambda s: s.delete(f"data/{KEY}", deleted=True)),
    ("undelete", lambda s: s.move(f"data/{KEY}", undelete=True)),
    ("hash", lambda s: s.hash(f"data/{KEY}", deleted=True)),
    ("gather", lambda s: s.gather([(f"data/{KEY}", 0, 1)], deleted=True)),
]


@pytest.mark.parametrize("operation", [op for _, op in MISSING_DELETED], ids=[name for name, _ in MISSING_DELETED])
def test_missing_soft_deleted_item_says_so(store, operation):
    """A soft-deleted item that is not there is named with 'soft-deleted' and its .del name."""
    with pytest.raises(ObjectNotFound) as exc:
        operation(store)
    assert str(exc.value) == f"data/{KEY} (soft-deleted, stored as {NESTED}.del)"


def test_unnested_name_is_shown_once(store):
    """Where the backend name is the application's name, the message has no 'stored as' note."""
    with pytest.raises(ObjectNotFound) as exc:
        store.load("config/main")
    assert str(exc.value) == "config/main"


def test_item_missing_at_every_level_lists_where_it_was_looked_for(store):
    """A namespace with several levels names every place the item could have been."""
    with pytest.raises(ObjectNotFound) as exc:
        store.load(f"multi/{KEY}")
    assert str(exc.value) == f"multi/{KEY} (at none of multi/{KEY}, multi/01/23/{KEY})"
    with pytest.raises(ObjectNotFound) as exc:
        store.load(f"multi/{KEY}", deleted=True)
    assert str(exc.value) == f"multi/{KEY} (soft-deleted, at none of multi/{KEY}.del, multi/01/23/{KEY}.del)"


def test_short_read_keeps_the_compatible_prefix_with_the_applications_name(store):
    """ReadRangeError still starts 'Read range error from <name>', now the application's name."""
    store.store(f"data/{KEY}", b"abc")
    with pytest.raises(ReadRangeError) as exc:
        store.gather([(f"data/{KEY}", 0, 10)])
    assert str(exc.value) == (
        f"Read range error from data/{KEY}: wanted 10 bytes at offset 0, got 3 (stored as {NESTED})"
    )


def test_permission_and_quota_messages_name_the_applications_name(url):
    """Refusals by the permissions and quota middleware name the item as the application did."""
    Store(url, config=CONFIG).create()
    store = Store(url, config=CONFIG, permissions={"": "lrw"}, quota=10)
    with store:
        store.store(f"data/{KEY}", b"abc")
        with pytest.raises(PermissionDenied) as exc:
            store.delete(f"data/{KEY}")
        assert str(exc.value) == f"delete: permission 'D' required for 'data/{KEY}', not granted (stored as {NESTED})"
        with pytest.raises(PermissionDenied) as exc:
            store.move(f"data/{KEY}", delete=True)
        assert f"'data/{KEY}'" in str(exc.value) and str(exc.value).endswith(f"(stored as {NESTED})")
        with pytest.raises(QuotaExceeded) as exc:
            store.store("data/4567cdef", b"x" * 20)
        assert "storing 'data/4567cdef' needs 20 more bytes" in str(exc.value)
        assert str(exc.value).endswith("(stored as data/45/67/4567cdef)")
        assert store.load(f"data/{KEY}") == b"abc"


class LosingMemory(MemoryBackend):
    """A memory backend whose loads and moves fail as a lost connection would, naming the
    backend names in the words a network backend uses."""

    def load(self, name, *, size=None, offset=0):
        raise BackendConnectionError(f"connection lost reading {name!r} from /srv/store/{name}")

    def move(self, curr_name, new_name):
        raise BackendConnectionError(f"move {curr_name} -> {new_name}: connection lost", maybe_applied=True)


def test_rewording_keeps_the_error_class_its_flags_and_other_words():
    """A reworded error is the same exception: class, temporary, maybe_applied kept; an absolute
    path that merely ends with the backend name is not touched."""
    store = Store(backend=LosingMemory(), config=CONFIG)
    store.create()
    with store:
        with pytest.raises(BackendConnectionError) as exc:
            store.load(f"data/{KEY}")
        assert exc.value.temporary and not exc.value.maybe_applied
        assert str(exc.value) == (f"connection lost reading 'data/{KEY}' from /srv/store/{NESTED} (stored as {NESTED})")
        with pytest.raises(BackendConnectionError) as exc:
            store.move(f"data/{KEY}", delete=True)
        assert exc.value.maybe_applied
        # the name and its .del twin are told apart, each with its own note
        assert str(exc.value) == (
            f"move data/{KEY} -> data/{KEY}: connection lost "
            f"(data/{KEY} stored as {NESTED}; data/{KEY} soft-deleted, stored as {NESTED}.del)"
        )


def test_empty_component_is_reported_as_such(store):
    """'data//x' is an empty component, not a namespace that is too deep; 'a/b/c' still is."""
    with pytest.raises(ValueError, match=r"^invalid name 'data//x': it has an empty component \('//'\)$"):
        store.load("data//x")
    with pytest.raises(ValueError, match=r"only one level of namespace"):
        store.load("data/x/y")


# --- the install command in the missing-backend message --------------------------------------

UNINSTALL_SFTP_AND_OPEN = """
import borgstore
from borgstore.store import Store
pm = borgstore.plugin_manager()
for name, plugin in list(pm.list_name_plugin()):
    specs = getattr(plugin, "borgstore_backends", lambda: [])() or []
    if any("sftp" in spec.schemes for spec in specs):
        pm.unregister(name=name)
try:
    Store("sftp://user:secret@host/store", config={"": {"levels": [0]}})
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def core_copy(where: Path) -> Path:
    """A copy of the core's import package at *where*/borgstore; returns *where*."""
    shutil.copytree(ROOT / "borgstore", where / "borgstore", ignore=shutil.ignore_patterns("__pycache__"))
    return where


def open_sftp_without_its_plugin(core_parent: Path) -> str:
    """The message of opening an sftp: URL without the sftp plugin, with the core imported from
    *core_parent* (the installed plugins still come from the environment's entry points)."""
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(core_parent)!r})\n" + UNINSTALL_SFTP_AND_OPEN],
        cwd=core_parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_missing_backend_from_a_clone_names_the_plugin_folder(tmp_path):
    """A core imported from a source tree that holds plugins/sftp says: pip install <that folder>."""
    clone = core_copy(tmp_path / "my clone")
    (clone / "plugins" / "sftp").mkdir(parents=True)
    shutil.copy(ROOT / "plugins" / "sftp" / "pyproject.toml", clone / "plugins" / "sftp")
    message = open_sftp_without_its_plugin(clone)
    assert message.startswith("BackendNotInstalled: cannot open 'sftp://user:***@host/store': the 'sftp' backend")
    # quoted, so that the path with a blank pastes as one argument
    assert message.endswith(f"install it with: pip install '{clone / 'plugins' / 'sftp'}'"), message
    assert "secret" not in message


def test_missing_backend_from_an_index_names_the_distribution(tmp_path):
    """A core imported from anywhere else (site-packages) says: pip install borgstore-backend-sftp."""
    installed = core_copy(tmp_path / "site-packages")
    message = open_sftp_without_its_plugin(installed)
    assert message.endswith("install it with: pip install borgstore-backend-sftp"), message


def test_a_plugins_folder_of_something_else_is_not_offered(tmp_path):
    """A plugins/sftp folder next to the core that is not the sftp plugin does not count."""
    installed = core_copy(tmp_path / "site-packages")
    (installed / "plugins" / "sftp").mkdir(parents=True)
    (installed / "plugins" / "sftp" / "pyproject.toml").write_text('[project]\nname = "some-other-project"\n')
    message = open_sftp_without_its_plugin(installed)
    assert message.endswith("install it with: pip install borgstore-backend-sftp"), message
