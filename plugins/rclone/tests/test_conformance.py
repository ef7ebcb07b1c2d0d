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


def test_kit_hostile_names_rule_through_get_backend(rclone_binary, store_path):
    """The kit's names-stay-inside-root rule holds for the raw backend get_backend() returns."""
    from borgstore.store import get_backend
    from borgstore.testing._backend_checks import BACKEND_CHECKS

    BACKEND_CHECKS["names-stay-inside-root"](get_backend(f"rclone:{store_path}"), None)
