import pytest

import borgstore
from borgstore.testing import BackendTests, StoreTests


class TestSQLiteFileBackend(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        # fresh and unopened; the file does not exist yet: the kit creates and destroys it
        backend = borgstore.get_backend(f"sqlitefile://{tmp_path}/store.sqlite")
        assert backend is not None, "the sqlitefile: backend is not installed (pip install -e .)"
        return backend


class TestSQLiteFileStore(StoreTests):
    @pytest.fixture
    def store_location(self, tmp_path):
        # a URL, so this also proves that borgstore finds the backend through its entry point
        return f"sqlitefile://{tmp_path}/store.sqlite"
