"""The conformance kit (borgstore.testing) against the real sshd, in both URL forms.

Every connection to sshd costs about 0.1 s (most of it the server setting up the session after
authentication), and the kit's state machines close and reopen the backend often.  The
absolute-path form therefore gets the full budget of the profile; the relative form, whose only
difference is how the store path is resolved, and the Store-level kit run every example check
but smaller state machines, so that this file stays within the test suite's time budget.
"""

import pytest

from borgstore.testing import BackendTests, StoreTests, kit_settings, run_store_machine
from borgstore.testing._backend_machine import run_backend_machine
from borgstore.testing._pytest_classes import run_check


class TestSftpAbsoluteURL(BackendTests):
    @pytest.fixture
    def backend(self, absolute_location):
        backend = absolute_location.backend()
        yield backend
        backend.close()


class TestSftpRelativeURL(BackendTests):
    @pytest.fixture
    def backend(self, relative_location):
        backend = relative_location.backend()
        yield backend
        backend.close()

    def test_state_machine(self, backend):
        """Random sequences of operations match a plain model (a smaller budget, see the module docstring)."""
        run_check(run_backend_machine, backend, kit_settings(self.conformance_profile, max_examples=12))


class TestSftpStore(StoreTests):
    """The Store API with its default middleware chain on sftp.  The Store's own logic is the same
    for every backend (the kit runs it in full on memory and posixfs); here it checks the
    integration, with a smaller state machine budget."""

    @pytest.fixture
    def store_location(self, absolute_location):
        return absolute_location.backend

    def test_store_state_machine(self, store_location, store_kwargs):
        """Random sequences of Store calls match a plain model (a smaller budget, see the class docstring)."""
        factory = self.make_store_factory(store_location, store_kwargs)
        run_check(run_store_machine, factory, kit_settings(self.conformance_profile, max_examples=15))
