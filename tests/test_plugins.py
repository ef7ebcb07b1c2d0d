"""The plugin system: discovery, failures, application plugins, and the middleware chain order."""

import inspect
import sys
import textwrap

import pytest

import borgstore
from borgstore import MiddlewareSpec, Store, hookimpl, hookspecs
from borgstore import _plugins
from borgstore.backends.errors import BackendNotInstalled, BackendURLInvalid
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
    assert {"stats", "softdelete", "emulate"} <= set(_plugins.middlewares())


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
    store = Store("memory:", config={"": {"levels": [0]}}, middleware=["stats", *chain, "softdelete"])
    assert store.middleware == ("stats", "recorder", "recorder", "recorder", "softdelete")
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
    with pytest.raises(BackendNotInstalled, match="pip install borgstore-backend-posixfs"):
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
