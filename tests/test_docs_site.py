"""The documentation site (Sphinx, docs/conf.py) builds with warnings as errors, and every public
class and function of the Store API, the kit and the toolkit has a docstring for its reference."""

import importlib
import inspect
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: the public modules and what of them the API reference shows (None: the module's __all__)
PUBLIC = {
    "borgstore": None,
    "borgstore.store": ["Store", "get_backend"],
    "borgstore.backends.errors": "every class",
    "borgstore.backends.toolkit": None,
    "borgstore.backends.http": None,
    "borgstore.backends.memory": ["MemoryBackend"],
    "borgstore.middleware": None,
    "borgstore.testing": None,
}


def public_objects():
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        if names == "every class":
            names = [n for n, o in vars(module).items() if inspect.isclass(o) and o.__module__ == module_name]
        for name in names or module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj


def undocumented() -> list:
    missing = []
    for qualified, obj in public_objects():
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(qualified)
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") or not (inspect.isfunction(value) or isinstance(value, (property, classmethod))):
                continue
            if not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                missing.append(f"{qualified}.{attr}")
    return missing


def test_every_public_class_and_function_has_a_docstring():
    """help() and the API reference say something for each public class, function and method."""
    assert undocumented() == []


def test_the_site_builds_with_warnings_as_errors(tmp_path, skip_or_fail_ci):
    """`sphinx -W` builds docs/ (MyST Markdown pages and the autodoc API reference) without a warning."""
    try:
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        skip_or_fail_ci("Sphinx and myst-parser are not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    page = (tmp_path / "api.html").read_text(encoding="utf-8")
    assert "Store" in page and "check_backend_name" in page and "BackendTests" in page
