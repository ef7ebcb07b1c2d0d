"""Hypothesis budgets of the kit: "quick" for every test run, "deep" for nightly or manual runs.

The profile is chosen by ``BORGSTORE_CONFORMANCE_PROFILE`` (or the pytest option
``--borgstore-profile``, which sets it).  The kit passes these settings to each state machine it
runs instead of loading a global Hypothesis profile, so it never changes the settings of the
project's other Hypothesis tests.

Hypothesis is imported only when settings are built: the pytest plugin imports this module in
every pytest run of a project that has borgstore installed, with or without ``borgstore[testing]``.
"""

import os

PROFILE_VARIABLE = "BORGSTORE_CONFORMANCE_PROFILE"

PROFILES = {
    "quick": {"max_examples": 50, "stateful_step_count": 30},
    "deep": {"max_examples": 400, "stateful_step_count": 80},
}

#: the sizes of the values in the example checks; "large" is what a chunked upload must survive
LARGE_VALUE = {"quick": 6 * 1024 * 1024, "deep": 48 * 1024 * 1024}


def profile_name(name=None) -> str:
    name = name or os.environ.get(PROFILE_VARIABLE) or "quick"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={name!r}: unknown profile, use one of {', '.join(PROFILES)}")
    return name


def kit_settings(profile=None, **overrides):
    """The Hypothesis settings of *profile* (default: from the environment), with *overrides*."""
    from hypothesis import HealthCheck, Phase, settings

    values = dict(
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
