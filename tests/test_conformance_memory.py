"""The memory backend, alone and inside every shipped middleware, passes the conformance kit."""

import pytest

from borgstore.backends.memory import MemoryBackend
from borgstore.testing import BackendTests


class TestMemoryBackend(BackendTests):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()
