"""The conformance kit at the Store level on posixfs, and every shipped middleware around posixfs
(the plain backend-level run is in test_conformance.py)."""

import pytest
from borgstore.store import build_chain
from borgstore.testing import TRANSPARENT_MIDDLEWARE, BackendTests, StoreTests, store_chain_with

from borgstore_backend_posixfs import PosixFSBackend



@pytest.fixture(params=sorted(TRANSPARENT_MIDDLEWARE))
def middleware(request):
    return request.param, TRANSPARENT_MIDDLEWARE[request.param]


class TestPosixFSStore(StoreTests):
    @pytest.fixture
    def store_location(self, tmp_path):
        return f"file://{tmp_path}/store"


class TestMiddlewareOnPosixFSBackend(BackendTests):
    # the full budget runs on memory (tests/test_conformance_memory.py); this is the second backend
    quick_overrides = {"max_examples": 15}

    @pytest.fixture
    def backend(self, tmp_path, middleware):
        return build_chain(PosixFSBackend(str(tmp_path / "store")), [middleware])


class TestMiddlewareOnPosixFSStore(StoreTests):
    quick_overrides = {"max_examples": 15}

    @pytest.fixture
    def store_location(self, tmp_path):
        return f"file://{tmp_path}/store"

    @pytest.fixture
    def store_kwargs(self, middleware):
        return {"middleware": store_chain_with(*middleware)}


@pytest.mark.parametrize("mode", ["mirror", "writethrough"])
class TestCacheOnPosixFSStore(StoreTests):
    """Every namespace cached in a second posixfs store: the cache middleware keeps the Store contract."""

    quick_overrides = {"max_examples": 15}

    @pytest.fixture
    def store_location(self, tmp_path):
        return f"file://{tmp_path}/store"

    @pytest.fixture
    def store_kwargs(self, tmp_path, mode):
        return {"namespace_options": {"cache": mode}, "cache_url": f"file://{tmp_path}/cache"}
