"""The file: URL, the backend's options, and the plugin's registration under the ``borgstore`` entry point."""

import pytest

from borgstore import Store, _plugins
from borgstore.store import get_backend
from borgstore.backends.errors import BackendURLInvalid
from borgstore_backend_posixfs import ACCEPTED_FORM, PosixFSBackend, backend_from_url, parse_url


@pytest.mark.parametrize(
    "url, path",
    [
        ("file:///srv/store", "/srv/store"),
        ("file:///srv/my%20store", "/srv/my store"),
        ("file:///srv/%C3%A9t%C3%A9", "/srv/\u00e9t\u00e9"),
        ("FILE:///srv/store", "/srv/store"),
        ("file:///", "/"),
    ],
)
def test_accepted_urls_give_the_percent_decoded_absolute_path(url, path):
    """file:///absolute/path is accepted and its path percent-decoded."""
    assert parse_url(url) == path


def test_a_path_that_is_not_utf8_survives_percent_decoding():
    """Percent-escapes of non-UTF-8 bytes map back to the same bytes on the file system."""
    import os

    path = parse_url("file:///srv/%FF")
    assert os.fsencode(path) == b"/srv/\xff"


@pytest.mark.parametrize(
    "url",
    [
        "file://host/srv/store",
        "file://srv/store",
        "file:/srv/store",
        "file:srv/store",
        "file:",
        "file://",
        "file:///srv/a%00b",
        "sftp://host/srv",
    ],
)
def test_other_forms_raise_url_invalid_naming_url_and_accepted_form(url):
    """Any other form raises BackendURLInvalid that names the URL and the accepted form."""
    with pytest.raises(BackendURLInvalid) as excinfo:
        backend_from_url(url)
    assert repr(url) in str(excinfo.value)
    assert ACCEPTED_FORM in str(excinfo.value)


def test_unknown_option_is_a_value_error_naming_it(tmp_path):
    """The spec names the options, so the core refuses an unknown one, naming it and the known ones."""
    with pytest.raises(ValueError, match="fsync_everything.*durability, precreate_dirs"):
        get_backend(f"file://{tmp_path}", fsync_everything=True)
    with pytest.raises(ValueError, match="fsync_everything"):
        Store(f"file://{tmp_path}", backend_options={"fsync_everything": True})


@pytest.mark.parametrize("options", [{"durability": "sometimes"}, {"durability": None}, {"precreate_dirs": "yes"}])
def test_invalid_option_values_are_value_errors(options):
    """Bad option values raise ValueError naming the value, through the core and the factory."""
    with pytest.raises(ValueError, match="invalid"):
        backend_from_url("file:///srv/store", **options)
    with pytest.raises(ValueError, match="invalid"):
        get_backend("file:///srv/store", **options)


def test_relative_path_is_refused():
    """The backend class only takes absolute paths."""
    with pytest.raises(ValueError, match="absolute"):
        PosixFSBackend("srv/store")


def test_options_reach_the_backend():
    """durability and precreate_dirs land on the backend; the capabilities do not depend on them."""
    default = backend_from_url("file:///srv/store")
    assert default.durability == "close" and default.precreate_dirs is False
    fast = backend_from_url("file:///srv/store", durability="none", precreate_dirs=True)
    assert fast.durability == "none" and fast.precreate_dirs is True
    assert fast.capabilities == default.capabilities


def test_opened_capabilities(tmp_path):
    """What an open backend declares: thread-safe, posix directories, atomic stores, list_tree."""
    backend = get_backend(f"file://{tmp_path}/store")
    backend.create()
    with backend:
        caps = backend.capabilities
        assert caps.read and caps.write and caps.list
        assert caps.thread_safe and caps.needs_mkdir and caps.atomic_store and caps.list_tree
        assert {"sha256", "md5", "blake2b"} <= caps.hash_algorithms
        assert not any(name.startswith("shake_") for name in caps.hash_algorithms)


def test_file_scheme_comes_from_this_distribution():
    """The 'file' scheme is served through the installed entry point of borgstore-backend-posixfs,
    whose spec names the factory by import path and lists the options."""
    provided = _plugins.backends()["file"]
    assert provided.distribution == "borgstore-backend-posixfs"
    assert _plugins.resolve(provided.spec.factory) is backend_from_url
    assert provided.spec.options == ("durability", "precreate_dirs")
    assert provided.spec.capabilities.thread_safe


def test_the_plugin_module_does_not_import_the_backend():
    """Loading the plugin (what borgstore does at start) leaves the backend module unimported; a
    file: URL imports it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from borgstore import _plugins\n"
        "_plugins.backends()\n"
        "import borgstore_backend_posixfs\n"
        "print('borgstore_backend_posixfs._backend' in sys.modules)\n"
        "from borgstore.store import get_backend\n"
        "get_backend('file:///srv/x')\n"
        "print('borgstore_backend_posixfs._backend' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_store_on_a_file_url_works_through_the_entry_point(tmp_path):
    """Store("file:///...") finds this backend and keeps the PyPI layout on disk."""
    root = tmp_path / "a store"
    url = "file://" + str(root).replace(" ", "%20")
    key = "0123" + "ab" * 30
    store = Store(url, config={"data/": {"levels": [1]}}, backend_options={"durability": "none"})
    assert isinstance(store.backend, PosixFSBackend)
    store.create()
    with store:
        store.store("data/" + key, b"value")
        assert store.load("data/" + key) == b"value"
    assert (root / "data" / "01" / key).read_bytes() == b"value"


def test_precreate_dirs_makes_store_create_the_nesting_directories(tmp_path):
    """With precreate_dirs, Store.create() creates every directory of the write level."""
    root = tmp_path / "store"
    store = Store(f"file://{root}", config={"data/": {"levels": [1]}}, backend_options={"precreate_dirs": True})
    store.create()
    assert sorted(p.name for p in (root / "data").iterdir()) == [f"{i:02x}" for i in range(256)]
