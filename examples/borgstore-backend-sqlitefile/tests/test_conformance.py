"""The whole conformance test of the example backend: the kit does the rest."""

import pytest
from borgstore.testing import BackendTests, StoreTests

from borgstore_backend_sqlitefile import SQLiteFileBackend


class TestSQLiteFileBackend(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        # fresh and unopened; the file does not exist yet: the kit creates and destroys it
        return SQLiteFileBackend(str(tmp_path / "store.sqlite"))


class TestSQLiteFileStore(StoreTests):
    @pytest.fixture
    def store_location(self, tmp_path):
        # a URL, so this also proves that borgstore finds the backend through its entry point
        return f"sqlitefile://{tmp_path}/store.sqlite"
