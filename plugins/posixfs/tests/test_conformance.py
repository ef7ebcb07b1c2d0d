"""The core's conformance kit, run on this backend with its default options (durability "close"),
once more resolving names by the portable walk instead of openat2, and its state machines under
the faults profile."""

import pytest
from borgstore_backend_posixfs import PosixFSBackend

from borgstore.testing import (
    BackendTests,
    kit_settings,
    run_backend_machine_under_faults,
    run_store_machine_under_faults,
)


class TestPosixFSConformance(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        return PosixFSBackend(str(tmp_path / "store"))


class TestPosixFSConformanceWalkingNames(BackendTests):
    """Where openat2 is missing (old kernels, some containers), names are resolved one component
    at a time: the same contract holds."""

    # the full budget runs above; this is the same backend with another name resolution
    quick_overrides = {"max_examples": 15}

    @pytest.fixture
    def backend(self, tmp_path):
        backend = PosixFSBackend(str(tmp_path / "store"))
        backend.walk_names = True
        return backend


def test_state_machines_under_faults(tmp_path):
    """The backend and Store state machines pass with the backend below the retry middleware
    and injected faults (lost replies, torn listings, failed calls): every acknowledged write
    there, no partial value, no temp item left after a clean close."""
    settings = kit_settings("faults", max_examples=25)
    run_backend_machine_under_faults(PosixFSBackend(str(tmp_path / "machine")), settings)
    run_store_machine_under_faults(f"file://{tmp_path}/store", settings)


def test_kit_hostile_names_rule_through_get_backend(tmp_path):
    """The kit's names-stay-inside-root rule holds for the raw backend get_backend() returns."""
    from borgstore.store import get_backend
    from borgstore.testing._backend_checks import BACKEND_CHECKS

    BACKEND_CHECKS["names-stay-inside-root"](get_backend(f"file://{tmp_path}/store"), None)
