"""The built wheels (not editable installs) install into a fresh venv and find every plugin."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def distributions():
    """The core and every plugin folder, as (project name, path)."""
    import tomllib

    dists = []
    for path in [ROOT, *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())]:
        with open(path / "pyproject.toml", "rb") as f:
            dists.append((tomllib.load(f)["project"]["name"], path))
    return dists


@pytest.mark.packaging
def test_wheels_install_and_every_backend_is_found(tmp_path):
    """pip-installed wheels of the core and all plugins list every backend through entry points."""
    wheelhouse = tmp_path / "wheels"
    dists = distributions()
    # build from copies, so that no build/ or *.egg-info left in the work tree can leak into a wheel
    sources = []
    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*", "plugins", "tests", "benchmarks")
    for name, path in dists:
        copy = tmp_path / "src" / name
        shutil.copytree(path, copy, ignore=skip)
        sources.append(str(copy))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheelhouse),
        *sources)
    # BSD-3-Clause: every binary distribution carries the license text
    license_text = (ROOT / "LICENSE").read_text()
    for wheel in wheelhouse.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            licenses = [n for n in archive.namelist() if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
            assert licenses, f"{wheel.name} has no LICENSE"
            assert archive.read(licenses[0]).decode() == license_text, wheel.name
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    # the wheel files themselves, so that pip cannot prefer the unrelated PyPI release of borgstore
    run(python, "-m", "pip", "install", "-q", *sorted(str(wheel) for wheel in wheelhouse.glob("*.whl")))
    installed = run(python, "-m", "pip", "list", "--format=freeze")
    for name, _ in dists:
        assert f"{name}==" in installed.replace("_", "-"), name
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    listing = run(python, "-m", "borgstore", "plugins", cwd=tmp_path, env=env)
    expected = {"memory"} | {name.rsplit("-", 1)[-1] for name, _ in dists if name.startswith("borgstore-backend-")}
    schemes = {line.split(":")[0].strip() for line in listing.split("nesting strategies:")[0].splitlines()[1:]
               if line.startswith("  ") and not line.startswith("      ")}
    assert {"file" if s == "posixfs" else s for s in expected} <= schemes, listing
    assert "failed to load" not in listing
    # the package came from the wheel, not from this source tree
    location = run(python, "-c", "import borgstore; print(borgstore.__file__)", cwd=tmp_path, env=env)
    assert str(venv) in location
    demo = run(python, "-m", "borgstore", "demo", cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert "demo store destroyed" in demo
    # the REST server's console script, and the import path the PyPI package had for it
    assert "--socket-activation" in run(str(venv / "bin" / "borgstore-server-rest"), "--help", cwd=tmp_path, env=env)
    shim = run(python, "-c", "from borgstore.server.rest import serve; print(serve.__module__)", cwd=tmp_path, env=env)
    assert shim.strip() == "borgstore_backend_rest.server"
