"""The worked example of docs/writing-a-backend.md, run as what it is: a separate distribution,
installed (not imported from the source tree), found by borgstore through its entry point, passing
its own conformance test and `python -m borgstore check`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "borgstore-backend-sqlitefile"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example built and installed into a directory of its own; returns (source copy, env)."""
    try:
        import setuptools  # noqa: F401  (the build runs without isolation: no index needed)
    except ImportError:
        pytest.fail("setuptools is needed to build the example distribution (pip install 'setuptools>=61')")
    work = tmp_path_factory.mktemp("example")
    source = work / "source"
    # a copy, so that the build leaves nothing in the repository
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return work, source, env


def _run(args, env, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_example_is_found_through_its_entry_point(installed):
    """The installed example registers the sqlitefile: scheme through the `borgstore` entry-point group."""
    work, _, env = installed
    result = _run(
        [
            "-c",
            "from borgstore import _plugins; p = _plugins.backends()['sqlitefile']; "
            "print(p.distribution, p.version, type(_plugins.backend_for_url('sqlitefile:///x/s')).__name__)",
        ],
        env,
        work,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["borgstore-backend-sqlitefile", "0.1.0", "SQLiteFileBackend"]


def test_example_passes_its_own_conformance_test(installed):
    """The example's tests (BackendTests and StoreTests with one fixture each) pass against the installed copy."""
    work, source, env = installed
    result = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")], env, work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" not in result.stdout
    assert " passed" in result.stdout


def test_example_passes_the_check_command(installed, tmp_path):
    """`python -m borgstore check sqlitefile:///DIR` passes, leaving DIR empty; what the example's
    capabilities rule out is named as not applicable: the thread checks (thread_safe=False), the
    conflicts that implied directories do not have, the read-only rule, the reserved-suffix rule,
    and store_new and list_temp, which the example does not have."""
    work, _, env = installed
    result = _run(["-m", "borgstore", "check", f"sqlitefile://{tmp_path}"], env, work)
    assert result.returncode == 0, result.stdout + result.stderr
    not_applicable = [
        "read-only-refuses-writes",
        "reserved-suffixes-refused",
        "conflict-store-onto-directory",
        "conflict-mkdir-over-item",
        "conflict-move-onto-directory",
        "threads",
        "concurrent-writers",
        "store-atomic",
        "store-new-creates",
        "store-new-races",
        "list-temp-shows-temps",
    ]
    assert f", 0 failed, {len(not_applicable)} not applicable" in result.stdout
    for rule in not_applicable:
        assert f"N/A   backend {rule} " in result.stdout
    assert "PASS  backend list-tree-agrees" in result.stdout
    assert "capabilities once open: read, write, list, atomic_store, list_tree;" in result.stdout
    assert list(tmp_path.iterdir()) == []
