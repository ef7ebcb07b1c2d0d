"""The test classes a backend's own test suite subclasses: one fixture, and every check comes with it."""

import pytest

from ._backend_checks import BACKEND_CHECKS
from ._backend_machine import run_backend_machine
from ._rules import NotApplicable
from ._settings import kit_settings


def run_check(check, *args):
    """Run one kit check; a check that does not apply to the backend becomes a visible skip."""
    try:
        check(*args)
    except NotApplicable as exc:
        pytest.skip(f"not applicable: {exc}")


class BackendTests:
    """Conformance tests for a backend (or a middleware chain around one).

    Subclass it and provide the ``backend`` fixture: it returns (or yields) a fresh, unopened
    backend object whose location does not exist yet (an existing empty location is fine too).
    The kit calls ``create()``, ``open()``, ``close()`` and ``destroy()`` itself, many times on the
    same object, and leaves the location destroyed; a fixture may still clean up after it.

    Set ``conformance_profile`` to ``"quick"`` or ``"deep"`` to pin the budget; by default the
    environment variable ``BORGSTORE_CONFORMANCE_PROFILE`` (or ``--borgstore-profile``) decides.
    """

    conformance_profile = None

    @pytest.fixture
    def backend(self):
        pytest.fail(f"{type(self).__name__} must define a `backend` fixture returning a fresh, unopened backend")

    def test_state_machine(self, backend):
        """Random sequences of store, load, info, delete, move, mkdir, rmdir, list, hash and gather match a plain model."""
        run_check(run_backend_machine, backend, kit_settings(self.conformance_profile))


def _backend_test(check):
    def test(self, backend):
        run_check(check, backend, self.conformance_profile)

    test.__name__ = test.__qualname__ = "test_" + check.rule.replace("-", "_")
    test.__doc__ = check.__doc__
    return test


for _check in BACKEND_CHECKS.values():
    setattr(BackendTests, "test_" + _check.rule.replace("-", "_"), _backend_test(_check))
del _check
