"""The type checker (mypy, configured in pyproject.toml's [tool.mypy]) passes on the core and the
plugins, holds the public API to complete annotations, and reports a wrong use of the API."""

import fnmatch
import importlib
import importlib.util
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: the modules whose every public function and method must be annotated: where the objects of
#: the public API are defined (docs/api.md), and the modules users import by path
PUBLIC_MODULES = [
    "borgstore",
    "borgstore.constants",
    "borgstore.nesting",
    "borgstore.backends.errors",
    "borgstore.backends.toolkit",
    "borgstore.backends.http",
    "borgstore.backends.memory",
    "borgstore.backends._base",
]
#: packages whose __all__ names public objects: the modules defining them are public too
PUBLIC_PACKAGES = ["borgstore", "borgstore.middleware", "borgstore.testing"]


@pytest.fixture(scope="session")
def mypy(tmp_path_factory, skip_or_fail_ci):
    """``mypy(*args)`` runs ``python -m mypy`` from the repository root (so with its pyproject.toml),
    caching in a temporary directory, and returns (exit status, output)."""
    if importlib.util.find_spec("mypy") is None:
        skip_or_fail_ci("mypy is not installed (pip install -e '.[dev]')")
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(*args):
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        return done.returncode, done.stdout + done.stderr

    return run


def test_the_type_checker_passes(mypy):
    """`python -m mypy` from the repository root checks the core and the plugins without an error."""
    status, output = mypy()
    assert status == 0, output
    assert "Success" in output, output


def _config():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _matches(module, patterns):
    return any(module == pattern or fnmatch.fnmatchcase(module, pattern) for pattern in patterns)


def _public_modules():
    modules = set(PUBLIC_MODULES)
    for package in PUBLIC_PACKAGES:
        imported = importlib.import_module(package)
        for name in imported.__all__:
            obj = getattr(imported, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                modules.add(obj.__module__)
    return sorted(modules)


def test_the_public_api_is_held_to_complete_annotations():
    """Every module of the public API is checked with disallow_untyped_defs (or is listed as pending)."""
    overrides = _config()["overrides"]
    strict = [p for o in overrides if o.get("disallow_untyped_defs") for p in o["module"]]
    pending = [p for o in overrides if o.get("ignore_errors") for p in o["module"]]
    public = _public_modules()
    assert "borgstore.backends.http" in public and "borgstore.middleware._base" in public
    unchecked = [m for m in public if not _matches(m, strict) and not _matches(m, pending)]
    assert unchecked == [], f"add these to the [tool.mypy] section with disallow_untyped_defs: {unchecked}"


WRONG_USE = """
from borgstore import ItemInfo
from borgstore.backends.http import HttpClient
from borgstore.backends.toolkit import temp_name
from borgstore.middleware import Middleware


class Upper(Middleware):
    def load(self, name: str, *, size: int | None = None) -> bytes:
        return self.inner.load(name, size=size).upper()


def use(info: ItemInfo, client: HttpClient) -> str:
    client.request("GET", "/", body=12)
    return temp_name(info.size)
"""


def test_a_wrong_use_of_the_api_is_reported(mypy, tmp_path):
    """The hints reach a user's code: a wrong argument type, a body that is no bytes, and a
    middleware operation that drops a parameter of the backend contract are each an error."""
    module = tmp_path / "wrong_use.py"
    module.write_text(WRONG_USE)
    status, output = mypy(str(module))
    assert status == 1, output
    assert 'Signature of "load" incompatible with supertype' in output, output
    assert 'Argument "body" to "request" of "HttpClient" has incompatible type "int"' in output, output
    assert 'Argument 1 to "temp_name" has incompatible type "int"; expected "str"' in output, output
    # and nothing else: the right uses around them (the inner load, the return types) pass
    assert set(re.findall(r"wrong_use\.py:(\d+): error", output)) == {"9", "14", "15"}, output
