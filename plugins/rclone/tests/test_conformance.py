"""The core's conformance kit (borgstore.testing) against a real rclone serving a local directory.

Server-side hashing (``server_hash="always"``) is checked in test_backend.py; running the whole
kit with it too would double the time for one operation's sake (each `rclone hashsum` is a process).
"""

import pytest

from borgstore.testing import BackendTests


class TestRcloneLocalConformance(BackendTests):
    @pytest.fixture
    def backend(self, make_backend):
        return make_backend()
