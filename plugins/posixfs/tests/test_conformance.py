"""The core's conformance kit, run on this backend with its default options (durability "close")."""

import pytest

from borgstore.testing import BackendTests
from borgstore_backend_posixfs import PosixFSBackend


class TestPosixFSConformance(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        return PosixFSBackend(str(tmp_path / "store"))
