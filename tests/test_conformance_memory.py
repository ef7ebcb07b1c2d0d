"""The memory backend, alone and inside every shipped middleware, passes the conformance kit."""

import uuid

import pytest

from borgstore.backends.memory import MemoryBackend
from borgstore.testing import BackendTests, StoreTests


class TestMemoryBackend(BackendTests):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()


class TestMemoryStore(StoreTests):
    @pytest.fixture
    def store_location(self):
        return f"memory:conformance-{uuid.uuid4().hex}"
