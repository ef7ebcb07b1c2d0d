"""Budgets of the kit: "quick" for every test run, "deep" for nightly or manual runs, "faults" for
the state machines under injected faults, and the knobs that adjust them.

Choosing the profile
    ``BORGSTORE_CONFORMANCE_PROFILE=quick|deep|faults`` in the environment, or the pytest option
    ``--borgstore-profile quick|deep|faults`` (which sets it), or ``--profile`` of
    ``python -m borgstore check``.  A test class may pin one with ``conformance_profile``.

The faults profile
    The backend and Store state machines run their backend through the ``retry`` middleware
    around a :class:`~borgstore.testing.FaultInjector` (borgstore.testing._faults_profile), with
    the quick budget and the settings in :data:`FAULTS`: the share of calls that fail, the
    attempts of the retry layer (enough that a run never gives up at that rate) and the seed
    every run starts from, so that a run is reproducible.  The example checks run as in the
    quick profile (the test classes give them "quick").

What a profile sets
    :data:`PROFILES`: the Hypothesis budget of each state machine (``max_examples`` generated
    operation sequences, each at most ``stateful_step_count`` steps long);
    :data:`LARGE_VALUE`: the size of the values of the ``large-value``, ``hash-matches-hashlib``
    and ``gather-large`` checks; :data:`LIST_TREE_ITEMS`: the items ``list-tree-agrees`` stores
    (more than one 1000-item page of an object store's listing).  The thread checks run more
    rounds in the deep profile.

Knobs of the test classes (:class:`~borgstore.testing.BackendTests`, ``StoreTests``)
    ``quick_overrides``: Hypothesis settings applied on top of the *quick* (and the quick-sized
    *faults*) profile only, e.g. ``{"max_examples": 15}`` for a secondary run (the same backend
    inside one more middleware, a slow remote); the deep profile ignores them, so a nightly run
    keeps its full budget.
    ``waived_rules``: ``{rule id: reason}`` for promises a backend or chain does not keep on
    purpose; each such check is reported as skipped with the reason instead of failing (waiving
    ``store-two-instances``, as a chain with a private cache must, also waives
    ``store-two-writers`` and keeps the Store state machine to one Store object).  A waived rule
    is a documented limitation, not a pass: ``check`` has no such knob.

Reproducing a run
    ``run_backend_machine(..., seed=N)`` and ``run_store_machine(..., seed=N)`` fix the random
    seed; a failure also prints a ``@reproduce_failure`` blob.

The kit passes these settings to each state machine it runs instead of loading a global
Hypothesis profile, so it never changes the settings of the project's other Hypothesis tests.
Hypothesis is imported only when settings are built: the pytest plugin imports this module in
every pytest run of a project that has borgstore installed, with or without ``borgstore[testing]``.
"""

import os
from typing import TYPE_CHECKING, Any, Optional, TypedDict

if TYPE_CHECKING:
    from hypothesis import settings as HypothesisSettings

PROFILE_VARIABLE = "BORGSTORE_CONFORMANCE_PROFILE"

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"max_examples": 50, "stateful_step_count": 30},
    "deep": {"max_examples": 400, "stateful_step_count": 80},
    # no example database: a run starts from FAULTS["seed"] and nothing else, so it repeats exactly
    "faults": {"max_examples": 50, "stateful_step_count": 30, "database": None},
}


class FaultsSettings(TypedDict):
    """The settings of the faults profile (:data:`FAULTS`)."""

    rate: float
    attempts: int
    seed: int


#: the faults profile: *rate* is the share of calls that get a fault; the retry layer makes up to
#: *attempts* tries per call (at rate 0.2, 40 failures in a row come once in 10**28 calls);
#: *seed* is Hypothesis' seed and, through it, every fault injector's
FAULTS: FaultsSettings = {"rate": 0.2, "attempts": 40, "seed": 9}

#: the sizes of the large values in the example checks; what a chunked upload and any read
#: buffer must survive
LARGE_VALUE: dict[str, int] = {"quick": 6 * 1024 * 1024, "deep": 48 * 1024 * 1024, "faults": 6 * 1024 * 1024}

#: items stored by the list-tree-agrees check: more than one page of a paginated listing
LIST_TREE_ITEMS: dict[str, int] = {"quick": 1100, "deep": 5000, "faults": 1100}


def profile_name(name: Optional[str] = None) -> str:
    """*name*, or the profile the environment chooses (default quick), checked."""
    name = name or os.environ.get(PROFILE_VARIABLE) or "quick"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={name!r}: unknown profile, use one of {', '.join(PROFILES)}")
    return name


def kit_settings(profile: Optional[str] = None, **overrides: Any) -> "HypothesisSettings":
    """The Hypothesis settings of *profile* (default: from the environment), with *overrides*."""
    from hypothesis import HealthCheck, Phase, settings

    values: dict[str, Any] = dict(
        # no "explain" phase: it reruns a failure many times to list code lines, which says
        # little about a backend and slows every failing run down
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        # a remote backend's call time says nothing about its correctness
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    values.update(PROFILES[profile_name(profile)])
    values.update(overrides)
    return settings(**values)


def example_profile(profile: Optional[str] = None) -> str:
    """The profile an example check runs with: the faults profile runs them as quick does."""
    name = profile_name(profile)
    return "quick" if name == "faults" else name
