"""The faults profile has teeth: a retry layer with one naive habit, put in the profile instead of
the real ``retry`` middleware, is caught by the rule of its bug under every seed, by the backend
state machine and by the Store state machine; the real ``retry`` passes the same runs.

"Every run" is measured as in test_conformance_teeth.py: the faults profile's quick budget without
shrinking, under each of borgstore.testing._teeth.SEEDS.
"""

import uuid

import pytest

from borgstore.backends.memory import MemoryBackend
from borgstore.middleware.retry import RetryMiddleware
from borgstore.store import build_chain
from borgstore.testing import _faults_profile as faults_profile
from borgstore.testing._faults_profile import (
    FaultsBackendMachine,
    expect_no_temp_left,
    run_backend_machine_under_faults,
    run_store_machine_under_faults,
)
from borgstore.testing._teeth import (
    SEEDS,
    BlindMoveRetry,
    RestartingListRetry,
    SwallowsPermanentErrors,
    caught,
    caught_in_every_run,
    quick_settings,
)

FAULTS = quick_settings("faults")
#: the Store machine spends more steps per example on setting up namespaces than the backend
#: machine: a lost reply on a move comes later in its runs (with 50 examples, seed 2 missed
#: BlindMoveRetry in full fresh-clone runs, though not alone)
STORE_FAULTS = quick_settings("faults", max_examples=100)

#: broken retry layer -> (rules of its bug in the backend machine, in the Store machine)
BROKEN_RETRY = [
    (BlindMoveRetry, {"move", "move-replaces-target"}, {"store-rename", "store-soft-delete", "store-undelete"}),
    (SwallowsPermanentErrors, {"delete-missing", "move-missing"}, {"store-missing"}),
    (
        RestartingListRetry,
        {"list-sorted", "list-entries", "list-walk", "list-tree-agrees"},
        {"store-list", "store-list-deleted"},
    ),
]


def _memory_location(list_tree=True):
    name = f"faults-teeth-{uuid.uuid4().hex}"
    return lambda: MemoryBackend(name, list_tree=list_tree)


@pytest.mark.parametrize("retry, rules, _", BROKEN_RETRY, ids=[entry[0].__name__ for entry in BROKEN_RETRY])
def test_backend_machine_catches_a_broken_retry_in_every_run(retry, rules, _):
    """The backend state machine under faults catches the broken retry layer under every seed."""

    def run(seed):
        run_backend_machine_under_faults(MemoryBackend(), FAULTS, seed=seed, retry=retry)

    caught_in_every_run(run, rules, retry.__name__)


@pytest.mark.parametrize("retry, _, rules", BROKEN_RETRY, ids=[entry[0].__name__ for entry in BROKEN_RETRY])
def test_store_machine_catches_a_broken_retry_in_every_run(retry, _, rules):
    """The Store state machine under faults catches the broken retry layer under every seed."""

    def run(seed):
        run_store_machine_under_faults(_memory_location(), STORE_FAULTS, seed=seed, retry=retry)

    caught_in_every_run(run, rules, retry.__name__)


def test_blind_move_failure_names_the_lost_reply():
    """The failure of a blindly retried move says what happened: the move reported a missing
    source for an item that the lost attempt had moved."""
    failure = caught(
        lambda: run_backend_machine_under_faults(MemoryBackend(), FAULTS, seed=0, retry=BlindMoveRetry),
        "BlindMoveRetry",
    )
    assert "ObjectNotFound" in failure.message and "move(" in failure.message


def test_real_retry_passes_the_same_runs():
    """The real retry middleware passes every run the broken ones fail (the memory backend both
    ways of listing under faults: tests/test_conformance_memory.py)."""
    for seed in SEEDS:
        run_backend_machine_under_faults(MemoryBackend(), FAULTS, seed=seed)
        run_store_machine_under_faults(_memory_location(), FAULTS, seed=seed, retry=RetryMiddleware)


class TempLeavingMemory(MemoryBackend):
    """Stores through a temp item and forgets to remove it when the store succeeded, as a
    writer whose clean-up runs only on failure would."""

    def store(self, name, value):
        super().store(name + ".tmp", value)
        super().store(name, value)


class TempLeavingWithoutListTemp(TempLeavingMemory):
    """The same, on a backend that has no list_temp (as a backend of the PyPI package)."""

    def __getattribute__(self, name):
        if name == "list_temp":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_left_temp_item_is_caught_at_teardown():
    """A backend that leaves .tmp items behind fails the faults profile by faults-no-temp-left
    (found by its list_temp; without one, the machine's rmdir rule already trips over them)."""
    failure = caught(
        lambda: run_backend_machine_under_faults(TempLeavingMemory(list_tree=False), FAULTS, seed=0),
        "TempLeavingMemory",
    )
    assert failure.rule == "faults-no-temp-left"
    assert ".tmp" in failure.message


@pytest.mark.parametrize("backend_class", [MemoryBackend, TempLeavingWithoutListTemp])
def test_temp_items_the_machine_stored_itself_are_not_counted(backend_class):
    """expect_no_temp_left passes over the .tmp items named as expected and finds the others,
    with list_temp, and without it by a directory that stays non-empty once emptied."""
    link = build_chain(backend_class(list_tree=False))
    link.create()
    link.open()
    MemoryBackend.store(link.backend, "a/b/kept.tmp", b"x")
    MemoryBackend.store(link.backend, "a/item", b"y")
    link.close()
    expect_no_temp_left(link, {"a/b/kept.tmp"})
    link.open()
    MemoryBackend.store(link.backend, "c/stray.tmp", b"x")
    link.close()
    failure = caught(lambda: expect_no_temp_left(link, {"a/b/kept.tmp"}), "a stray temp item")
    assert failure.rule == "faults-no-temp-left" and "c/" in failure.message and "a/b" not in failure.message


def test_a_run_repeats_exactly_from_its_seed(monkeypatch):
    """Each example's injector seed is drawn by Hypothesis, so one Hypothesis seed gives the same
    faults: two runs from one seed inject the same faults, call for call, in every example."""
    histories = []

    class Recording(FaultsBackendMachine):
        def teardown(self):
            histories.append((self.injector.seed, list(self.injector.history)))
            super().teardown()

    monkeypatch.setattr(faults_profile, "FaultsBackendMachine", Recording)
    for _ in range(2):
        run_backend_machine_under_faults(MemoryBackend(), quick_settings("faults", max_examples=5), seed=3)
    assert len(histories) == 10 and histories[:5] == histories[5:]
    assert len({seed for seed, _ in histories[:5]}) > 1, "every example got the same fault seed"
    assert sum(len(history) for _, history in histories) > 0
