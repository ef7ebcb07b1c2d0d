import os
import uuid

import pytest

from borgstore import _plugins

def skip_or_fail(reason: str):
    """Skip a test whose requirement is missing, but fail in CI, where nothing may be skipped."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(params=["memory", "file"])
def url(request, tmp_path):
    """A URL for a store that does not exist yet, on each backend the core tests run on."""
    if request.param == "memory":
        return f"memory:test-{uuid.uuid4().hex}"
    if "file" not in _plugins.backends():
        skip_or_fail("the posixfs plugin (borgstore-backend-posixfs) is not installed")
    return f"file://{tmp_path}/store"


@pytest.fixture
def file_backend():
    """Requires the posixfs plugin (fails in CI when it is missing)."""
    if "file" not in _plugins.backends():
        skip_or_fail("the posixfs plugin (borgstore-backend-posixfs) is not installed")


@pytest.fixture(scope="session")
def skip_or_fail_ci():
    return skip_or_fail
