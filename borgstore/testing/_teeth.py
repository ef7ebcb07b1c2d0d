"""Measuring the kit's teeth: does a check catch a deliberately broken backend in every run?

A broken variant (one realistic bug) must be caught by the rule that describes its bug under each
of several seeds of the quick profile, not only under a lucky one.  Used by the project's teeth
tests; a middleware or backend author can use it the same way for variants of their own.
"""

from ..middleware import Middleware
from ._rules import ConformanceFailure
from ._settings import kit_settings

#: the seeds a variant must be caught under
SEEDS = range(5)


def quick_settings(**overrides):
    """The quick profile without shrinking and without an example database: each run must find
    the bug on its own (not replay an earlier failure), and shrinking changes the sequence, not
    whether and by which rule a bug is caught."""
    from hypothesis import Phase

    values = dict(phases=[Phase.explicit, Phase.generate], database=None, print_blob=False)
    values.update(overrides)
    return kit_settings("quick", **values)


def caught(run, what: str) -> ConformanceFailure:
    """The ConformanceFailure *run()* raises; an AssertionError saying so if it raises none."""
    try:
        run()
    except ConformanceFailure as failure:
        return failure
    raise AssertionError(f"{what} was not caught")


def caught_in_every_run(run, rules, what: str, seeds=SEEDS) -> None:
    """*run(seed)* must raise a ConformanceFailure naming one of *rules* for every seed."""
    for seed in seeds:
        failure = caught(lambda: run(seed), f"{what} (seed {seed})")
        if failure.rule not in rules:
            raise AssertionError(
                f"{what} (seed {seed}) was caught by {failure.rule!r}, expected one of {sorted(rules)}: {failure}"
            )


class StaleLoadCache(Middleware):
    """A broken read cache, for teeth tests: it forgets a value only when this link stores the
    name again, so a delete, or a move from or onto the name, leaves the old value to be
    served.  Subclasses forget on more operations to break in narrower ways."""

    def __init__(self, inner):
        super().__init__(inner)
        self._values = {}

    def load(self, name, *, size=None, offset=0):
        if name not in self._values:
            self._values[name] = self.inner.load(name)
        data = self._values[name]
        start = max(len(data) + offset, 0) if offset < 0 else offset
        return data[start:] if size is None else data[start : start + size]

    def store(self, name, value):
        self._values.pop(name, None)
        return self.inner.store(name, value)
