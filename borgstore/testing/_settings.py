"""Hypothesis budgets of the kit: "quick" for every test run, "deep" for nightly or manual runs.

The profile is chosen by ``BORGSTORE_CONFORMANCE_PROFILE`` (or the pytest option
``--borgstore-profile``, which sets it).  The kit passes these settings to each state machine it
runs instead of loading a global Hypothesis profile, so it never changes the settings of the
project's other Hypothesis tests.
"""

import os

from hypothesis import HealthCheck, Phase, settings

PROFILE_VARIABLE = "BORGSTORE_CONFORMANCE_PROFILE"

# deadline=None: a remote backend's call time says nothing about its correctness
# no "explain" phase: it reruns the failure many times to list code lines, which says little
# about a backend and slows every failing run down
_COMMON = dict(
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

PROFILES = {
    "quick": dict(max_examples=50, stateful_step_count=30, **_COMMON),
    "deep": dict(max_examples=400, stateful_step_count=80, **_COMMON),
}

#: the sizes of the values in the example checks; "large" is what a chunked upload must survive
LARGE_VALUE = {"quick": 6 * 1024 * 1024, "deep": 48 * 1024 * 1024}


def profile_name(name=None) -> str:
    name = name or os.environ.get(PROFILE_VARIABLE) or "quick"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={name!r}: unknown profile, use one of {', '.join(PROFILES)}")
    return name


def kit_settings(profile=None, **overrides) -> settings:
    """The Hypothesis settings of *profile* (default: from the environment), with *overrides*."""
    values = dict(PROFILES[profile_name(profile)])
    values.update(overrides)
    return settings(**values)
