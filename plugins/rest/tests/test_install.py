"""`pip install plugins/rest` next to the core in a fresh venv: http:, https: and rest: are found
through the entry point, `borgstore-server-rest` is on the venv's PATH, `borgstore.server.rest`
imports, and `python -m borgstore check http://127.0.0.1:PORT/` passes against that server."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from borgstore_backend_rest.testserver import ServerProcess

ROOT = Path(__file__).resolve().parents[3]


def run(*args, expect=0, **kwargs):
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=1800, **kwargs)
    assert result.returncode == expect, (
        f"{args} gave {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.mark.packaging
def test_pip_install_plugin_then_check_against_its_server(tmp_path):
    """The route under test is `pip install plugins/rest` after the core; the check runs at the
    server's URL itself (a server serves one store) and refuses once a store is there."""
    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*", "plugins", "tests", "benchmarks")
    sources = {}
    for name, path in (("core", ROOT), ("posixfs", ROOT / "plugins" / "posixfs"), ("rest", ROOT / "plugins" / "rest")):
        sources[name] = tmp_path / "src" / name
        shutil.copytree(path, sources[name], ignore=skip)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python, bin_dir = str(venv / "bin" / "python"), venv / "bin"
    # the core and its posixfs backend come from the clone (they are on no index), as the README says
    run(python, "-m", "pip", "install", "-q", f"{sources['core']}[testing]", str(sources["posixfs"]))
    run(python, "-m", "pip", "install", "-q", str(sources["rest"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BORGSTORE_"))}
    listing = run(python, "-m", "borgstore", "plugins", cwd=tmp_path, env=env)
    shown = {line.split(":")[0].strip() for line in listing.splitlines() if line.startswith("  ")}
    assert {"http", "https", "rest"} <= shown, listing
    located = run(python, "-c", "import borgstore.server.rest as r; print(r.serve.__module__)", cwd=tmp_path, env=env)
    assert located.strip() == "borgstore_backend_rest.server"
    password = tmp_path / "password"
    password.write_text("s3cret-for-check\n")
    args = ["--backend", f"file://{tmp_path / 'served'}", "--username", "borg", "--password-file", str(password)]
    server = ServerProcess(args, command=[str(bin_dir / "borgstore-server-rest")], log_path=str(tmp_path / "log"))
    with server:
        url = f"http://borg:s3cret-for-check@127.0.0.1:{server.port}/"
        report = run(python, "-m", "borgstore", "check", url, cwd=tmp_path, env=env)
        assert "FAIL" not in report and "PASS  backend state-machine" in report, report
        assert "s3cret-for-check" not in report
        assert not (tmp_path / "served").exists()  # each check destroyed the store it made
        run(python, "-m", "borgstore", "demo", url.rstrip("/"), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
        run(python, "-c", f"import borgstore; b = borgstore.get_backend({url!r}); b.create()", cwd=tmp_path, env=env)
        refused = run(python, "-m", "borgstore", "check", url, cwd=tmp_path, env=env, expect=2)
        assert "holds a store" in refused and "s3cret-for-check" not in refused, refused
        assert (tmp_path / "served").is_dir()  # the refusal touched nothing
    assert "s3cret-for-check" not in server.log()
