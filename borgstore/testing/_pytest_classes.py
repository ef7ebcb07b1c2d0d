"""The test classes a backend's own test suite subclasses: one fixture, and every check comes with it."""

from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import pytest

from ..backends._base import BackendBase
from ._backend_checks import BACKEND_CHECKS
from ._backend_machine import run_backend_machine
from ._rules import KitCheck, NotApplicable
from ._settings import example_profile, kit_settings, profile_name
from ._store_checks import STORE_CHECKS, StoreLocation, store_factory
from ._store_machine import run_store_machine

if TYPE_CHECKING:
    import hypothesis

    from ..store import Store


def _settings_for(test_class: Union["BackendTests", "StoreTests"]) -> "hypothesis.settings":
    # quick_overrides trims a secondary run (the same middleware again on a slower backend);
    # a deep run keeps its full budget, a faults run is quick-sized
    profile = profile_name(test_class.conformance_profile)
    return kit_settings(profile, **(test_class.quick_overrides if profile != "deep" else {}))


def _under_faults(test_class: Union["BackendTests", "StoreTests"]) -> bool:
    return profile_name(test_class.conformance_profile) == "faults"


def run_check(check: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Run one kit check; a check that does not apply to the backend becomes a visible skip."""
    try:
        check(*args, **kwargs)
    except NotApplicable as exc:
        pytest.skip(f"not applicable: {exc}")


# a check that needs what another rule promises is waived with it
_WAIVED_WITH = {"store-two-writers": "store-two-instances"}


def _skip_if_waived(test_class: Union["BackendTests", "StoreTests"], rule: str) -> None:
    reason = test_class.waived_rules.get(rule) or test_class.waived_rules.get(_WAIVED_WITH.get(rule))
    if reason:
        pytest.skip(f"waived by {type(test_class).__name__}.waived_rules: {reason}")


class BackendTests:
    """Conformance tests for a backend (or a middleware chain around one).

    Subclass it and provide the ``backend`` fixture: it returns (or yields) a fresh, unopened
    backend object whose location does not exist yet (an existing empty location is fine too).
    The kit calls ``create()``, ``open()``, ``close()`` and ``destroy()`` itself, many times on the
    same object, and leaves the location destroyed; a fixture may still clean up after it.

    Set ``conformance_profile`` to ``"quick"`` or ``"deep"`` to pin the budget; by default the
    environment variable ``BORGSTORE_CONFORMANCE_PROFILE`` (or ``--borgstore-profile``) decides.
    ``quick_overrides`` (Hypothesis settings, e.g. ``{"max_examples": 15}``) trims the quick
    profile for a secondary run; the deep profile ignores it.  ``waived_rules``
    (``{rule id: reason}``) turns the checks of promises the backend does not keep on purpose
    into skips that show the reason.  See :mod:`borgstore.testing._settings`.

    Capabilities are read from the backend once it is open, so a backend may learn them in open().
    In the ``faults`` profile the state machine runs the backend below ``retry`` and a
    :class:`~borgstore.testing.FaultInjector`; the example checks run as in the quick profile.
    """

    conformance_profile: Optional[str] = None
    quick_overrides: dict = {}
    waived_rules: dict = {}

    @pytest.fixture
    def backend(self) -> BackendBase:
        pytest.fail(f"{type(self).__name__} must define a `backend` fixture returning a fresh, unopened backend")

    def test_state_machine(self, backend: BackendBase) -> None:
        """Random sequences of store, load, info, delete, move, mkdir, rmdir, list, hash, gather match a model."""
        _skip_if_waived(self, "state-machine")
        if _under_faults(self):
            from ._faults_profile import run_backend_machine_under_faults

            run_check(run_backend_machine_under_faults, backend, _settings_for(self))
        else:
            run_check(run_backend_machine, backend, _settings_for(self))


def _backend_test(check: KitCheck) -> Callable[[BackendTests, BackendBase], None]:
    def test(self: BackendTests, backend: BackendBase) -> None:
        _skip_if_waived(self, check.rule)
        run_check(check, backend, example_profile(self.conformance_profile))

    test.__name__ = test.__qualname__ = "test_" + check.rule.replace("-", "_")
    test.__doc__ = check.__doc__
    return test


class StoreTests:
    """Conformance tests of the Store API on a backend (and the middleware chain in front of it).

    Subclass it and provide the ``store_location`` fixture: a URL at a scratch location that does
    not exist yet (``memory:scratch-1``, ``file:///tmp/x/store``), or a callable that returns a new,
    unopened backend object for one such location on every call (two calls: two objects on the
    same location).  ``store_options`` are further Store arguments (``{"middleware": [...]}``);
    override the ``store_kwargs`` fixture instead when they depend on other fixtures.  The key
    ``namespace_options`` adds keys to every namespace's config (``{"cache": "mirror"}``).
    ``store_class`` lets a Store subclass be checked.  ``conformance_profile``,
    ``quick_overrides`` and ``waived_rules`` work as in :class:`BackendTests`; waiving
    ``store-two-instances`` (a chain with a private cache, say) also waives ``store-two-writers``
    and keeps the state machine to one Store object per example.  In the ``faults`` profile each
    Store's backend sits below ``retry`` and a :class:`~borgstore.testing.FaultInjector`.
    """

    conformance_profile: Optional[str] = None
    quick_overrides: dict = {}
    waived_rules: dict = {}
    store_options: dict = {}
    store_class: Optional[type["Store"]] = None

    @pytest.fixture
    def store_location(self) -> StoreLocation:
        pytest.fail(f"{type(self).__name__} must define a `store_location` fixture: a URL or a backend factory")

    @pytest.fixture
    def store_kwargs(self) -> dict[str, Any]:
        return dict(self.store_options)

    def make_store_factory(self, store_location: StoreLocation, store_kwargs: dict[str, Any]) -> Callable[..., "Store"]:
        """A callable that builds a fresh, unopened Store at *store_location* with *store_kwargs*;
        override it to build the Store another way."""
        return store_factory(store_location, self.store_class, **store_kwargs)

    def test_store_state_machine(self, store_location: StoreLocation, store_kwargs: dict[str, Any]) -> None:
        """Random sequences of Store calls over several namespaces and levels match a plain model."""
        _skip_if_waived(self, "store-state-machine")
        two_stores = "store-two-instances" not in self.waived_rules
        settings = _settings_for(self)
        if _under_faults(self):
            from ._faults_profile import run_store_machine_under_faults

            options = dict(store_kwargs, store_class=self.store_class)
            run_check(run_store_machine_under_faults, store_location, settings, two_stores=two_stores, **options)
        else:
            factory = self.make_store_factory(store_location, store_kwargs)
            run_check(run_store_machine, factory, settings, two_stores=two_stores)


def _store_test(check: KitCheck) -> Callable[[StoreTests, StoreLocation, dict[str, Any]], None]:
    def test(self: StoreTests, store_location: StoreLocation, store_kwargs: dict[str, Any]) -> None:
        _skip_if_waived(self, check.rule)
        make_store = self.make_store_factory(store_location, store_kwargs)
        run_check(check, make_store, example_profile(self.conformance_profile))

    test.__name__ = test.__qualname__ = "test_" + check.rule.replace("-", "_")
    test.__doc__ = check.__doc__
    return test


for _check in BACKEND_CHECKS.values():
    setattr(BackendTests, "test_" + _check.rule.replace("-", "_"), _backend_test(_check))
for _check in STORE_CHECKS.values():
    setattr(StoreTests, "test_" + _check.rule.replace("-", "_"), _store_test(_check))
del _check
