"""The kit against a live store: ``pytest --pyargs borgstore.testing --borgstore-url URL``.

Every test gets its own scratch location below URL (see the pytest plugin); without
``--borgstore-url`` these tests are skipped.
"""

import pytest

from borgstore.testing import BackendTests, StoreTests


class TestLiveBackend(BackendTests):
    @pytest.fixture
    def backend(self, borgstore_scratch_url):
        from borgstore._plugins import backend_for_url

        return backend_for_url(borgstore_scratch_url)


class TestLiveStore(StoreTests):
    @pytest.fixture
    def store_location(self, borgstore_scratch_url):
        return borgstore_scratch_url
