"""The core's conformance kit (borgstore.testing) against a real rclone serving a local directory,
and its state machines under the faults profile.

Server-side hashing (``server_hash="always"``) is checked in test_backend.py; running the whole
kit with it too would double the time for one operation's sake (each `rclone hashsum` is a process).
"""

import pytest

from borgstore.testing import (
    BackendTests,
    kit_settings,
    run_backend_machine_under_faults,
    run_store_machine_under_faults,
)


class TestRcloneLocalConformance(BackendTests):
    @pytest.fixture
    def backend(self, make_backend):
        return make_backend()


def test_state_machines_under_faults(make_backend, store_path):
    """The backend and Store state machines pass with the backend below the retry middleware and
    injected faults (a small budget: every call is a request to rclone rcd)."""
    settings = kit_settings("faults", max_examples=10, stateful_step_count=20)
    run_backend_machine_under_faults(make_backend(), settings)
    run_store_machine_under_faults(lambda: make_backend(f"rclone:{store_path}-store"), settings)


def test_kit_hostile_names_rule_through_get_backend(rclone_binary, store_path):
    """The kit's names-stay-inside-root rule holds for the raw backend get_backend() returns."""
    from borgstore.store import get_backend
    from borgstore.testing._backend_checks import BACKEND_CHECKS

    BACKEND_CHECKS["names-stay-inside-root"](get_backend(f"rclone:{store_path}"), None)
