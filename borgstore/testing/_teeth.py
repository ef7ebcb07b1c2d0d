"""Measuring the kit's teeth: does a check catch a deliberately broken backend in every run?

A broken variant (one realistic bug) must be caught by the rule that describes its bug under each
of several seeds of the quick profile, not only under a lucky one.  Used by the project's teeth
tests; a middleware or backend author can use it the same way for variants of their own.

The broken retry layers below (for the faults profile) are the real ``retry`` middleware with
one operation done the naive way, so that each is caught for its own bug and nothing else.
"""

from ..backends.errors import BackendError
from ..middleware import Middleware
from ..middleware.retry import RetryMiddleware
from ._rules import ConformanceFailure
from ._settings import kit_settings

#: the seeds a variant must be caught under
SEEDS = range(5)


def quick_settings(profile="quick", **overrides):
    """The quick (or faults) profile without shrinking and without an example database: each
    run must find the bug on its own (not replay an earlier failure), and shrinking changes the
    sequence, not whether and by which rule a bug is caught."""
    from hypothesis import Phase

    values = dict(phases=[Phase.explicit, Phase.generate], database=None, print_blob=False)
    values.update(overrides)
    return kit_settings(profile, **values)


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


class BlindMoveRetry(RetryMiddleware):
    """Retries a failed move by moving again, as if a move were idempotent: after a lost reply
    the source is already gone, and the repeat reports ObjectNotFound for a move that happened."""

    def move(self, curr_name, new_name):
        for _ in range(self.attempts - 1):
            try:
                return self.inner.move(curr_name, new_name)
            except BackendError as exc:
                if not exc.temporary:
                    raise
        return self.inner.move(curr_name, new_name)


class SwallowsPermanentErrors(RetryMiddleware):
    """Treats an error no retry can fix as nothing left to do: a delete or move of a missing
    item returns None instead of raising ObjectNotFound."""

    def delete(self, name):
        try:
            return super().delete(name)
        except BackendError as exc:
            if exc.temporary:
                raise
            return None

    def move(self, curr_name, new_name):
        try:
            return super().move(curr_name, new_name)
        except BackendError as exc:
            if exc.temporary:
                raise
            return None


class RestartingListRetry(RetryMiddleware):
    """Restarts a torn listing from the beginning and yields everything again, so the items
    yielded before the tear come twice."""

    def __init__(self, inner, **options):
        super().__init__(inner, **options)
        if hasattr(inner, "list_tree"):
            self.list_tree = lambda name: self._restarting(self.inner.list_tree, name)

    def list(self, name):
        return self._restarting(self.inner.list, name)

    def _restarting(self, list_method, name):
        for _ in range(self.attempts - 1):
            try:
                yield from list_method(name)
                return
            except BackendError as exc:
                if not exc.temporary:
                    raise
        yield from list_method(name)
