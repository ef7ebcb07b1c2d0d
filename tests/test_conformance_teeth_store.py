"""The Store-level kit has teeth: a broken Store, chain link or backend (one realistic bug each) is
caught by the Store state machine, by the rule that describes its bug, under every seed of the
quick profile, and the correct Store passes the same runs.

Soft deletion is the Store's own job now: its bugs are Store bugs (a Store subclass) or bugs of a
link that mishandles the move to ``<name>.del`` that a soft deletion is.
"""

import uuid

import pytest

from borgstore.backends.memory import MemoryBackend
from borgstore.middleware import Middleware
from borgstore.middleware.stats import StatsMiddleware
from borgstore.store import Store, build_chain
from borgstore.testing._store_checks import STORE_CHECKS, store_factory
from borgstore.testing._store_machine import run_store_machine
from borgstore.testing._teeth import StaleLoadCache, caught, caught_in_every_run, quick_settings

QUICK = quick_settings()


class LaxNamesStore(Store):
    """Lowercases names instead of rejecting them, so 'Data/ABCD' silently becomes 'data/abcd'."""

    def _namespace_of(self, name):
        return super()._namespace_of(name.lower() if isinstance(name, str) else name)


class DeletedListKeepsSuffix(Store):
    """Lists soft-deleted items with their '.del' suffix still on."""

    def list(self, name, deleted=False):
        for info in super().list(name, deleted=deleted):
            yield info._replace(name=info.name + ".del") if deleted else info


class StatsMissesSoftDelete(StatsMiddleware):
    """Does not count soft deletions (moves to '<name>.del') as moves."""

    def move(self, curr_name, new_name):
        if new_name.endswith(".del"):
            return self.inner.move(curr_name, new_name)
        return super().move(curr_name, new_name)


class DelMoveCopies(Middleware):
    """Turns a move to a '.del' name into a copy (to keep the data safe), leaving the live item."""

    def move(self, curr_name, new_name):
        if not new_name.endswith(".del"):
            return self.inner.move(curr_name, new_name)
        self.inner.store(new_name, self.inner.load(curr_name))


class CacheMissesMoves(StaleLoadCache):
    """A read cache that forgets a name on store and delete, but not when a move takes the item
    away: a soft-deleted or renamed item is still served under its old name."""

    def delete(self, name):
        self._values.pop(name, None)
        return self.inner.delete(name)


class ListNewestFirst(MemoryBackend):
    """A posix-like backend whose directory listing comes newest name first, as some server APIs do."""

    def __init__(self, name=""):
        super().__init__(name, list_tree=False)

    def list(self, name):
        return iter(sorted(super().list(name), key=lambda info: info.name, reverse=True))


class ListingCachedPerConnection(MemoryBackend):
    """Caches directory listings per backend object and forgets them only on its own writes, so a
    second client's changes stay invisible (fine alone, wrong with two Store objects)."""

    def __init__(self, name=""):
        super().__init__(name, list_tree=False)
        self._listings = {}

    def list(self, name):
        if name not in self._listings:
            self._listings[name] = list(super().list(name))
        return iter(self._listings[name])

    def store(self, name, value):
        self._listings.clear()
        return super().store(name, value)

    def delete(self, name):
        self._listings.clear()
        return super().delete(name)

    def move(self, curr_name, new_name):
        self._listings.clear()
        return super().move(curr_name, new_name)


def _memory_factory(make_chain=lambda backend: backend, backend_class=MemoryBackend):
    """A location for StoreTests: each call gives a new backend object on one named memory store."""
    name = f"teeth-{uuid.uuid4().hex}"
    return lambda: make_chain(backend_class(name))


def test_store_check_catches_names_accepted_after_folding():
    """A Store that folds uppercase names instead of rejecting them is caught by names-invalid-rejected."""
    make_store = store_factory(f"memory:teeth-{uuid.uuid4().hex}", LaxNamesStore)
    failure = caught(lambda: STORE_CHECKS["names-invalid-rejected"](make_store, "quick"), "LaxNamesStore")
    assert failure.rule == "names-invalid-rejected"
    assert "Data/abcd" in str(failure)


def _chained(link_class):
    return dict(make_chain=lambda backend: link_class(build_chain(backend)))


STORE_MACHINE_CAUGHT = [
    ("backend listing newest first", dict(backend_class=ListNewestFirst), ["stats"], None, {"store-list"}),
    ("deleted list keeps .del", {}, ["stats"], DeletedListKeepsSuffix, {"store-list-deleted"}),
    # middleware=[]: the chain given as the backend holds the broken link and a Store adds nothing
    ("stats misses soft deletions", _chained(StatsMissesSoftDelete), [], None, {"store-stats"}),
    ("soft deletion copies", _chained(DelMoveCopies), ["stats"], None, {"store-soft-delete"}),
    (
        "cache misses moves",
        _chained(CacheMissesMoves),
        ["stats"],
        None,
        {"store-soft-delete", "store-undelete", "store-rename", "store-change-level"},
    ),
]


@pytest.mark.parametrize(
    "what, location, middleware, store_class, rules", STORE_MACHINE_CAUGHT, ids=[c[0] for c in STORE_MACHINE_CAUGHT]
)
def test_store_machine_catches_in_every_run(what, location, middleware, store_class, rules):
    """The Store state machine catches a broken backend, link or Store under every seed, by the rule of its bug."""

    def run(seed):
        make_store = store_factory(_memory_factory(**location), store_class, middleware=middleware)
        run_store_machine(make_store, QUICK, seed=seed)

    caught_in_every_run(run, rules, what)


def test_store_two_instances_catches_a_listing_cache():
    """A backend caching listings per connection is caught by store-two-instances (no randomness in it)."""
    make_store = store_factory(_memory_factory(backend_class=ListingCachedPerConnection))
    failure = caught(lambda: STORE_CHECKS["store-two-instances"](make_store, "quick"), "ListingCachedPerConnection")
    assert failure.rule == "store-two-instances"


def test_soft_deletion_bug_names_the_old_name():
    """A soft deletion that leaves the live item is reported with the load() of the old name."""
    make_store = store_factory(_memory_factory(**_chained(DelMoveCopies)), middleware=["stats"])
    failure = caught(lambda: run_store_machine(make_store, QUICK, seed=0), "DelMoveCopies")
    assert "of the old name" in failure.message and "delete=True" in failure.message


@pytest.mark.parametrize("list_tree", [True, False], ids=["list_tree", "per-directory"])
def test_correct_store_passes_the_teeth_runs(list_tree):
    """The correct Store on the memory backend (listing both ways) passes the same seeded runs."""
    for seed in range(5):
        make_store = store_factory(_memory_factory(backend_class=lambda name: MemoryBackend(name, list_tree=list_tree)))
        run_store_machine(make_store, QUICK, seed=seed)
