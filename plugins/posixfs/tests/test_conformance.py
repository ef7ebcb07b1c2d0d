"""The core's conformance kit, run on this backend with its default options (durability "close"),
and once more resolving names by the portable walk instead of openat2."""

import pytest

from borgstore.testing import BackendTests
from borgstore_backend_posixfs import PosixFSBackend


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


def test_kit_hostile_names_rule_through_get_backend(tmp_path):
    """The kit's names-stay-inside-root rule holds for the raw backend get_backend() returns."""
    from borgstore.store import get_backend
    from borgstore.testing._backend_checks import BACKEND_CHECKS

    BACKEND_CHECKS["names-stay-inside-root"](get_backend(f"file://{tmp_path}/store"), None)
