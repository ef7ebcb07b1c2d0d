"""Fixtures shared by the REST tests: the PyPI borgstore 0.7 (client and server) in a venv of
its own, and the CI rule that a missing part fails instead of skipping."""

import os
import subprocess
import sys

import pytest

PYPI_VERSION = "0.7.0"


def skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pypi_venv(tmp_path_factory):
    """The bin/ folder of a venv with the PyPI borgstore 0.7.0 and its rest extra (requests):
    ``pypi_venv / "python"``, ``pypi_venv / "borgstore-server-rest"``."""
    venv = tmp_path_factory.mktemp("pypi-borgstore-rest") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", f"borgstore[rest]=={PYPI_VERSION}"],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        skip_or_fail(f"cannot install the PyPI borgstore[rest] {PYPI_VERSION}: {result.stderr[-500:]}")
    return bin_dir


# --- server fixtures (below this line: owned by the server's tests) ---
