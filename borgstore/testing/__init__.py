"""The conformance kit: proves that a backend or a middleware keeps the store contract.

Use it from a backend's test suite::

    from borgstore.testing import BackendTests, StoreTests

    class TestMyBackend(BackendTests):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(tmp_path / "store")   # fresh, unopened, location not created yet

or against a live store without writing code: ``pytest --pyargs borgstore.testing --borgstore-url URL``
or ``python -m borgstore check URL``.  See docs/writing-a-backend.md.

Under injected faults: :class:`FaultInjector` (a seeded middleware that fails calls the way
networks do), and the ``faults`` profile (``run_backend_machine_under_faults``,
``run_store_machine_under_faults``, ``--borgstore-profile faults``, ``check URL --profile faults``),
which runs the state machines through ``retry`` around it.

The test classes need pytest; everything else needs only Hypothesis (the ``testing`` extra).
"""

from typing import Any

from ._middleware import TRANSPARENT_MIDDLEWARE, store_chain_with
from ._rules import ConformanceFailure, NotApplicable
from ._settings import PROFILES, kit_settings
from .faults import FaultInjector

__all__ = [
    "BackendTests",
    "StoreTests",
    "ConformanceFailure",
    "FaultInjector",
    "NotApplicable",
    "PROFILES",
    "TRANSPARENT_MIDDLEWARE",
    "kit_settings",
    "store_chain_with",
    "run_backend_machine",
    "run_store_machine",
    "run_backend_machine_under_faults",
    "run_store_machine_under_faults",
]


def __getattr__(name: str) -> Any:
    # imported on first use so that `python -m borgstore check` works without pytest
    if name in ("BackendTests", "StoreTests"):
        from . import _pytest_classes

        return getattr(_pytest_classes, name)
    if name == "run_backend_machine":
        from ._backend_machine import run_backend_machine

        return run_backend_machine
    if name == "run_store_machine":
        from ._store_machine import run_store_machine

        return run_store_machine
    if name in ("run_backend_machine_under_faults", "run_store_machine_under_faults"):
        from . import _faults_profile

        return getattr(_faults_profile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
