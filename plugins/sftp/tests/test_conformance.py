"""The conformance kit (borgstore.testing) against the real sshd, in both URL forms.

The backend kit runs in full for both URL forms.  The Store-level kit runs every example check
with a smaller state machine: the Store's logic is the same for every backend (the kit runs it in
full on memory and posixfs), here it checks the integration, and every reconnect to sshd costs
real time.
"""

import contextlib

import pytest

from borgstore.backends.errors import BackendMustBeOpen
from borgstore.testing import (
    BackendTests,
    StoreTests,
    kit_settings,
    run_backend_machine_under_faults,
    run_store_machine,
    run_store_machine_under_faults,
)
from borgstore.testing._pytest_classes import run_check

TRANSPORTS = ("paramiko", "openssh")


class TestSftpAbsoluteURL(BackendTests):
    @pytest.fixture
    def backend(self, absolute_location):
        backend = absolute_location.backend()
        yield backend
        with contextlib.suppress(BackendMustBeOpen):
            backend.close()  # ends a connection the kit left, open or not


class TestSftpRelativeURL(BackendTests):
    @pytest.fixture
    def backend(self, relative_location):
        backend = relative_location.backend()
        yield backend
        with contextlib.suppress(BackendMustBeOpen):
            backend.close()  # ends a connection the kit left, open or not


class TestSftpStore(StoreTests):
    """The Store API with its default middleware chain on sftp."""

    @pytest.fixture
    def store_location(self, absolute_location):
        return absolute_location.backend

    def test_store_state_machine(self, store_location, store_kwargs):
        """Random sequences of Store calls match a plain model (a smaller budget, see the module docstring)."""
        factory = self.make_store_factory(store_location, store_kwargs)
        run_check(run_store_machine, factory, kit_settings(self.conformance_profile, max_examples=20))


def test_state_machines_under_faults(absolute_location):
    """The backend and Store state machines pass with the backend below the retry middleware and
    injected faults (a small budget: every call is a round trip to sshd)."""
    settings = kit_settings("faults", max_examples=10, stateful_step_count=20)
    backend = absolute_location.backend()
    try:
        run_backend_machine_under_faults(backend, settings)
    finally:
        with contextlib.suppress(BackendMustBeOpen):
            backend.close()
    run_store_machine_under_faults(absolute_location.backend, settings)


def test_kit_hostile_names_rule_through_get_backend(absolute_location):
    """The kit's names-stay-inside-root rule holds for the raw backend get_backend() returns."""
    from borgstore.store import get_backend
    from borgstore.testing._backend_checks import BACKEND_CHECKS

    backend = get_backend(absolute_location.url, **absolute_location.server.backend_options())
    try:
        BACKEND_CHECKS["names-stay-inside-root"](backend, None)
    finally:
        with contextlib.suppress(BackendMustBeOpen):
            backend.close()
