"""`pip install plugins/s3` next to the core in a fresh venv: s3: and b2: are found through the
entry point, and `python -m borgstore check` passes against the moto server."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run(*args, **kwargs):
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.packaging
def test_pip_install_plugin_then_check_against_moto(tmp_path, moto, s3_url):
    """pip install of plugins/s3 in a fresh venv registers s3: and b2:; check passes on moto, secret unshown."""
    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*", "plugins", "tests", "benchmarks")
    sources = {}
    for name, path in (("core", ROOT), ("posixfs", ROOT / "plugins" / "posixfs"), ("s3", ROOT / "plugins" / "s3")):
        sources[name] = tmp_path / "src" / name
        shutil.copytree(path, sources[name], ignore=skip)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    # the core and its posixfs backend are not on the package index (PyPI's borgstore is 0.x):
    # they are installed from the clone first, as the README's route for use says
    run(python, "-m", "pip", "install", "-q", f"{sources['core']}[testing]", str(sources["posixfs"]))
    run(python, "-m", "pip", "install", "-q", str(sources["s3"]))  # the route under test
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_"))}
    listing = run(python, "-m", "borgstore", "plugins", cwd=tmp_path, env=env)
    shown = {line.split(":")[0].strip() for line in listing.splitlines() if line.startswith("  ")}
    assert {"s3", "b2"} <= shown, listing
    location = run(
        python, "-c", "import borgstore_backend_s3; print(borgstore_backend_s3.__file__)", cwd=tmp_path, env=env
    )
    assert str(venv) in location
    url = s3_url()
    report = run(python, "-m", "borgstore", "check", url, cwd=tmp_path, env=env)
    assert "FAIL" not in report and "PASS" in report, report
    assert "borgstore-test-secret" not in report
