"""Fixtures: moto's standalone S3 server as a process on 127.0.0.1, and unique store URLs in it.

With ``BORGSTORE_TEST_S3_URL`` set (``s3:KEY:SECRET@https://host/bucket/prefix``), the tests
marked ``any_endpoint`` run against that real endpoint instead, below the given prefix; tests
that kill or disturb the server always use a moto server of their own.  Without moto the tests
skip, except in CI (env CI set), where a missing server is a failure.
"""

import itertools
import os
import uuid

import pytest
from borgstore_backend_s3.testserver import MotoServer, moto_available

ENV_URL = "BORGSTORE_TEST_S3_URL"
BUCKET = "borgstore-tests"
_counter = itertools.count()


def skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _no_user_aws_files(monkeypatch, tmp_path):
    """The user's ~/.aws files and AWS_* variables take no part unless a test sets them."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def start_moto(path) -> MotoServer:
    if not moto_available():
        skip_or_fail("moto's S3 server is not installed (pip install 'moto[server]')")
    server = MotoServer(log_path=str(path / "moto.log"))
    server.start()
    return server


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """One moto server shared by the tests that do not disturb it, with the bucket BUCKET."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def own_moto(tmp_path):
    """A private moto server (with the bucket BUCKET) for a test that kills or restarts it."""
    server = start_moto(tmp_path)
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_url(moto):
    """s3_url(scheme="s3"): a new, unused store URL in the shared moto server's bucket."""

    def make(scheme: str = "s3") -> str:
        return moto.url(BUCKET, f"t{next(_counter)}-{uuid.uuid4().hex[:8]}", scheme)

    return make


@pytest.fixture
def any_s3_url(request):
    """Like s3_url, but below BORGSTORE_TEST_S3_URL when it is set (a real endpoint)."""
    base = os.environ.get(ENV_URL)
    if not base:
        return request.getfixturevalue("s3_url")
    return lambda scheme=None: f"{base.rstrip('/')}/t{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def real_s3_url():
    """A new store URL below BORGSTORE_TEST_S3_URL; skipped when it is unset (also in CI)."""
    base = os.environ.get(ENV_URL)
    if not base:
        pytest.skip(f"{ENV_URL} is not set: this test needs a real S3 endpoint")
    return lambda: f"{base.rstrip('/')}/t{next(_counter)}-{uuid.uuid4().hex[:8]}"
