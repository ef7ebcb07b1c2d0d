"""The plugin system: discovery, failures, application plugins, and the middleware chain order."""

import importlib.metadata
import inspect
import subprocess
import sys
import textwrap

import pytest

import borgstore
from borgstore import BackendSpec, MiddlewareSpec, Store, get_backend, hookimpl, hookspecs
from borgstore import _plugins
from borgstore.backends.errors import BackendError, BackendNotInstalled, BackendURLInvalid
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware


@pytest.fixture
def fresh_registry():
    """A plugin registry loaded anew from the entry points, restored afterwards."""
    _plugins.reset_for_tests()
    yield
    _plugins.reset_for_tests()


def test_builtins_are_registered():
    """The core provides memory, both nesting strategies and its middleware."""
    assert "memory" in _plugins.backends()
    assert {"hex", "hash"} <= set(_plugins.nesting_strategies())
    assert {"stats", "emulate", "permissions", "quota", "cache", "readonly"} <= set(_plugins.middlewares())
    assert "softdelete" not in _plugins.middlewares()  # soft deletion is the Store's own


def test_every_hookspec_is_documented():
    """Each hook has a docstring with a return value and a versionadded note."""
    hooks = [obj for name, obj in inspect.getmembers(hookspecs) if name.startswith("borgstore_")]
    assert len(hooks) == 3
    for hook in hooks:
        doc = hook.__doc__ or ""
        assert ":return:" in doc and ".. versionadded::" in doc and "\n\n" in doc, hook.__name__


class Recorder(Middleware):
    """Appends (its label, op) to a shared log on every load and store."""

    def __init__(self, inner, *, log, label):
        super().__init__(inner)
        self.log, self.label = log, label

    def load(self, name, **kwargs):
        self.log.append((self.label, "load"))
        return self.inner.load(name, **kwargs)

    def store(self, name, value):
        self.log.append((self.label, "store"))
        return self.inner.store(name, value)


class RecorderPlugin:
    @hookimpl
    def borgstore_middleware(self):
        return [MiddlewareSpec("recorder", Recorder, "records calls")]


@pytest.fixture
def recorder_plugin(fresh_registry):
    plugin = RecorderPlugin()
    borgstore.plugin_manager().register(plugin, name="recorder-plugin")
    yield plugin


@pytest.mark.parametrize("order", [["a", "b", "c"], ["c", "a", "b"]])
def test_chain_order_is_the_order_given(recorder_plugin, order):
    """Middleware runs outermost first, exactly in the order the application gave."""
    log = []
    chain = [("recorder", {"log": log, "label": label}) for label in order]
    store = Store("memory:", config={"": {"levels": [0]}}, middleware=["stats", *chain])
    assert store.middleware == ("stats", "recorder", "recorder", "recorder")
    store.create()
    with store:
        store.store("k", b"v")
        assert store.load("k") == b"v"
    assert log == [(label, "store") for label in order] + [(label, "load") for label in order]


def test_application_plugin_overrides_a_backend(fresh_registry):
    """A backend plugin registered later serves the scheme instead of the installed one."""

    class Tagged(MemoryBackend):
        pass

    class Plugin:
        @hookimpl
        def borgstore_backends(self):
            return [borgstore.BackendSpec(("memory",), lambda url, **options: Tagged())]

    borgstore.plugin_manager().register(Plugin(), name="override")
    assert isinstance(Store("memory:", config={"": {"levels": [0]}}).backend, Tagged)
    borgstore.plugin_manager().unregister(name="override")
    assert not isinstance(Store("memory:", config={"": {"levels": [0]}}).backend, Tagged)


def test_unknown_middleware_is_named():
    """An unknown middleware name raises ValueError naming it and listing the installed ones."""
    with pytest.raises(ValueError, match="'nosuch'.*stats"):
        Store("memory:", config={"": {"levels": [0]}}, middleware=["nosuch"])


def test_bad_middleware_options_are_named():
    """Options a middleware does not take raise ValueError naming the middleware."""
    with pytest.raises(ValueError, match="'emulate'"):
        Store("memory:", config={"": {"levels": [0]}}, middleware=[("emulate", {"latencyy": 1})])


def test_missing_backend_names_the_distribution(fresh_registry):
    """A file: URL without the posixfs plugin says which distribution to install."""
    pm = borgstore.plugin_manager()
    for name, plugin in list(pm.list_name_plugin()):
        if any(spec.schemes == ("file",) for spec in (getattr(plugin, "borgstore_backends", lambda: [])() or [])):
            pm.unregister(name=name)
    # from a clone the command names the plugin's folder, from an index the distribution
    with pytest.raises(BackendNotInstalled, match=r"\(borgstore-backend-posixfs\) is not installed; install it with: pip install "):
        Store("file:///tmp/x", config={"": {"levels": [0]}})
    with pytest.raises(BackendURLInvalid, match="unknown URL scheme 'gopher'"):
        Store("gopher://x", config={"": {"levels": [0]}})


def test_broken_entry_point_is_reported_and_isolated(fresh_registry, tmp_path, monkeypatch):
    """An entry point that fails to import is named with its error; the other plugins still load."""
    dist = tmp_path / "borgstore_broken_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: borgstore-broken-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [borgstore]
            brokenplugin = borgstore_broken_demo_module_that_does_not_exist
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    failures = borgstore.load_failures()
    assert [f.plugin for f in failures] == ["brokenplugin"]
    assert failures[0].distribution == "borgstore-broken-demo"
    assert "ModuleNotFoundError" in failures[0].error
    assert "memory" in _plugins.backends()  # the rest still works
    from borgstore.__main__ import main

    import io
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plugins"]) == 0
    assert "brokenplugin" in out.getvalue() and "failed to load" in out.getvalue()
    monkeypatch.undo()
    sys.modules.pop("borgstore_broken_demo_module_that_does_not_exist", None)


def test_broken_declarations_are_reported(fresh_registry):
    """A misspelled hook and a hook returning no spec are reported, not silently ignored."""

    class Careless:
        @hookimpl
        def borgstore_backend(self):  # the hook is borgstore_backends
            return []

        @hookimpl
        def borgstore_middleware(self):
            return ["not a spec"]

    borgstore.plugin_manager().register(Careless(), name="careless")
    errors = {f.target: f.error for f in borgstore.load_failures() if f.plugin == "careless"}
    assert "not a borgstore hook" in errors["borgstore_backend"]
    assert "not a MiddlewareSpec" in errors["borgstore_middleware"]
    assert "stats" in _plugins.middlewares()
    borgstore.plugin_manager().unregister(name="careless")
    assert not [f for f in borgstore.load_failures() if f.plugin == "careless"]


def test_builtins_are_listed_once_in_code_not_as_entry_points():
    """The core's own plugins come from one list in code; no entry point of the core repeats it."""
    core_entry_points = [
        ep
        for ep in importlib.metadata.entry_points(group="borgstore")
        if ep.dist is not None and ep.dist.name == "borgstore"
    ]
    assert core_entry_points == []
    assert set(_plugins.BUILTIN_PLUGINS) <= {name for name, _ in borgstore.plugin_manager().list_name_plugin()}


def test_hooks_are_called_through_pluggy(fresh_registry):
    """pluggy's call monitoring sees every hook call the registry makes."""
    seen = []
    pm = borgstore.plugin_manager()
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *args: None)
    try:
        _plugins.backends()
    finally:
        undo()
    assert {"borgstore_backends", "borgstore_nesting_strategies", "borgstore_middleware"} <= set(seen)


class LazyPlugin:
    @hookimpl
    def borgstore_backends(self):
        return [
            BackendSpec(
                schemes=("lazy",),
                factory="no_such_module_anywhere:factory",
                description="names a module that is not there",
                options=("speed",),
            ),
            BackendSpec(schemes=("lazymem",), factory="borgstore.backends.memory:memory_backend_from_url", options=()),
        ]


def test_a_factory_named_by_path_is_imported_only_when_used(fresh_registry):
    """A spec's factory given as "module:name" costs nothing until a URL of its scheme is used."""
    borgstore.plugin_manager().register(LazyPlugin(), name="lazy")
    assert "lazy" in _plugins.backends() and not any(f.plugin == "lazy" for f in borgstore.load_failures())
    with pytest.raises(BackendNotInstalled, match="no_such_module_anywhere"):
        Store("lazy:x", config={"": {"levels": [0]}})


def test_unknown_options_are_rejected_from_the_spec(fresh_registry):
    """The core rejects options a spec does not name, before the factory runs."""
    borgstore.plugin_manager().register(LazyPlugin(), name="lazy")
    with pytest.raises(ValueError, match="unknown option.*'?colour"):
        Store("lazymem:", config={"": {"levels": [0]}}, backend_options={"colour": "red"})
    with pytest.raises(ValueError, match="list_tree, speed|speed"):
        get_backend("lazy:x", speed=1, colour=2)


def test_using_file_does_not_import_other_backends():
    """Importing borgstore and using file: imports no other backend's implementation (no paramiko)."""
    code = (
        "import sys, tempfile\n"
        "from borgstore.store import Store\n"
        "d = tempfile.mkdtemp()\n"
        "s = Store('file://' + d + '/s', config={'': {'levels': [0]}})\n"
        "s.create()\n"
        "with s:\n"
        "    s.store('k', b'v')\n"
        "    assert s.load('k') == b'v'\n"
        "from borgstore import _plugins\n"
        "assert {'file', 'sftp', 'rclone', 'memory'} <= set(_plugins.backends()), sorted(_plugins.backends())\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('paramiko', 'borgstore_backend_sftp.', 'borgstore_backend_rclone.')))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "url, secret",
    [
        ("sftp://alice:hunter2@example.invalid/repo", "hunter2"),
        ("nosuchscheme://bob:s3cr3t@host/path", "s3cr3t"),
        ("s3:AKIDEXAMPLE:wJalrXUtnFEMIK7MDENG@https://host:9000/bucket/path", "wJalrXUtnFEMIK7MDENG"),
        ("http://user:pa55word@host:5618/sub?token=abcdef123", "pa55word"),
    ],
)
def test_secrets_in_urls_are_never_shown(url, secret):
    """redact_url hides passwords and secret keys; repr and errors use it."""
    shown = _plugins.redact_url(url)
    assert secret not in shown and "***" in shown
    assert "abcdef123" not in _plugins.redact_url("http://h/x?token=abcdef123&a=1")
    try:
        store = Store(url, config={"": {"levels": [0]}})
    except BackendError as exc:
        assert secret not in str(exc) and secret not in repr(exc)
    else:
        assert secret not in repr(store)
