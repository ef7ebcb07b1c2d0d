"""The kit under faults: the state machines drive ``retry`` around a :class:`FaultInjector` around
the backend, and check against the model as always.

What the faults profile proves about the chain ``retry -> faults -> backend``:

* every acknowledged write is there and no failed operation reported success: the machines'
  own rules, unchanged (a retried delete whose first attempt removed the item must not report
  ObjectNotFound, a retried move must not report a missing source, a repeated or shortened
  listing is a wrong listing);
* nothing partial is visible: every load equals the model;
* no temp item is left after a clean close (rule ``faults-no-temp-left``): the backend's
  ``list_temp`` where it has one, else every directory must be removable once the items a
  listing shows are deleted (a directory that stays "not empty" holds a hidden temp item).

The fault sequence is reproducible: Hypothesis starts from the profile's seed
(``FAULTS["seed"]``, or the *seed* given), and each example draws its injectors' seeds.
"""

import sys
from typing import Any, Callable, Iterable, Optional, Union

import hypothesis
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import initialize, run_state_machine_as_test

from ..backends._base import BackendBase
from ..backends.errors import BackendError, ObjectNotFound
from ..constants import TMP_SUFFIX
from ..middleware._base import Link
from ._backend_base import opened_capabilities, show_names
from ._backend_machine import BackendMachine
from ._model import join
from ._rules import capabilities_of, expect, no_error, require
from ._settings import FAULTS, kit_settings
from ._store_checks import StoreLocation, store_factory
from ._store_machine import STORE_SETUP, StoreMachine, opened_store_capabilities
from .faults import FaultInjector

#: rule id -> promise, for the rules only the faults profile checks
FAULTS_RULES = {
    "faults-no-temp-left": "after a clean close, no .tmp item is left, however many calls failed or lost "
    "their replies (list_temp, or directories that stay non-empty once their listed items are deleted)",
}

_SEEDS = st.integers(0, 2**32 - 1)

#: a stand-in for the retry layer, called like RetryMiddleware (the kit's teeth pass broken ones)
RetryFactory = Callable[..., Link]


def _no_wait(seconds: float) -> None:
    """The retry layer's sleep in the profile: backoff says nothing about correctness."""


def retry_chain(injector: Link, seed: int, retry: Optional[RetryFactory] = None) -> Link:
    """The retry link of the profile around *injector*.  *retry* (default: the ``retry``
    middleware's class) is called like RetryMiddleware; the kit's teeth pass broken ones."""
    if retry is None:
        from ..middleware.retry import RetryMiddleware

        retry = RetryMiddleware
    return retry(
        injector,
        attempts=FAULTS["attempts"],
        # a slow remote must not run out of time: every attempt of a call counts, no backoff does
        budget=3600.0,
        breaker_failures=0,
        sleep=_no_wait,
        seed=seed,
    )


def faulty_chain(
    link: Link, seed: int, retry: Optional[RetryFactory] = None, rate: Optional[float] = None
) -> tuple[Link, FaultInjector]:
    """``(retry link, injector)``: *link* inside a FaultInjector inside the retry layer."""
    injector = FaultInjector(link, seed=seed, rate=FAULTS["rate"] if rate is None else rate)
    return retry_chain(injector, seed, retry), injector


# --- no temp item left ---


def expect_no_temp_left(link: Link, expected: Iterable[str] = (), rule: str = "faults-no-temp-left") -> None:
    """Open *link* (the backend below the faults, closed), look for ``.tmp`` items other than
    *expected*, close it again."""
    with no_error(rule, "open() after a clean close, to look for temp items"):
        link.open()
    try:
        with no_error(rule, "looking for temp items after a clean close"):
            left = _temp_items(link, set(expected))
    finally:
        link.close()
    expect(rule, not left, f"after a clean close, temporary items are left: {show_names(left)}")


def _temp_items(link: Link, expected: set[str]) -> set[str]:
    if hasattr(link, "list_temp"):
        return {info.name for info in link.list_temp("")} - expected
    caps = capabilities_of(link)
    if not (caps.list and caps.write and caps.needs_mkdir):
        return set()  # nothing can show a hidden item: the machines' own rules must do
    for name in expected:
        try:
            link.delete(name)
        except ObjectNotFound:
            pass  # its directory went away with it
    return _directories_holding_hidden_items(link)


def _directories_holding_hidden_items(link: Link) -> set[str]:
    """Delete every listed item, then remove the directories deepest first: one that stays
    "not empty" holds an item no listing shows, a temp item."""
    directories: list[str] = []
    pending = [""]
    while pending:
        directory = pending.pop()
        for info in list(link.list(directory)):
            path = join(directory, info.name)
            if info.directory:
                directories.append(path)
                pending.append(path)
            else:
                link.delete(path)
    left: set[str] = set()
    for directory in sorted(directories, key=lambda name: name.count("/"), reverse=True):
        try:
            link.rmdir(directory)
        except ObjectNotFound:
            pass
        except BackendError as exc:
            left.add(f"{directory}/*{TMP_SUFFIX} ({type(exc).__name__}: {exc})")
    return left


def _failing() -> bool:
    # a failing example keeps its own failure: the temp check runs only after a clean example
    return sys.exc_info()[0] is not None


# --- the backend state machine ---


class FaultsBackendMachine(BackendMachine):
    """The backend state machine on ``retry -> faults -> backend``."""

    def __init__(self, raw: Link, big: int, retry: Optional[RetryFactory] = None, rate: Optional[float] = None):
        self.raw = raw
        chain, self.injector = faulty_chain(raw, FAULTS["seed"], retry, rate)
        super().__init__(chain, big)

    @initialize(data=st.data())
    def populate(self, data: st.DataObject) -> None:
        self.injector.reseed(data.draw(_SEEDS, label="fault seed"))
        super().populate(data)

    def _store(self, data: st.DataObject, name: str) -> None:
        # under faults, half the stored items also move away and back: a lost move is where a
        # retry layer must look instead of guessing, and the plain machine's move rule is rare
        super()._store(data, name)
        if name in self.model.items and data.draw(st.booleans(), label="move it away and back"):
            target = self._names(data, "moved to", existing=False)
            self._move(name, target)
            if target in self.model.items:
                self._move(target, name)

    def teardown(self) -> None:
        try:
            if not _failing():
                if self.is_open:
                    with no_error("close", "close() at the end of an example"):
                        self.backend.close()
                    self.is_open = False
                expect_no_temp_left(self.raw, self.model.hidden)
        finally:
            super().teardown()


def run_backend_machine_under_faults(
    backend: Union[BackendBase, Link],
    settings: Optional[hypothesis.settings] = None,
    big: int = 3 * 1024 * 1024,
    seed: Optional[int] = None,
    retry: Optional[RetryFactory] = None,
    rate: Optional[float] = None,
) -> None:
    """Run the backend state machine with *backend* (fresh, location not created yet) below
    ``retry`` and a FaultInjector.  *retry* replaces the retry layer (called like
    RetryMiddleware); *rate* the profile's share of failing calls; *seed* its Hypothesis seed."""
    from ..store import build_chain

    caps = opened_capabilities(backend)
    require(caps.write, "the state machine writes: the backend declares write=False")
    raw = build_chain(backend)

    def machine() -> FaultsBackendMachine:
        return FaultsBackendMachine(raw, big, retry, rate)

    machine = hypothesis_seed(FAULTS["seed"] if seed is None else seed)(machine)
    # any factory of machines works (as hypothesis documents), though its hint names a class
    run_state_machine_as_test(machine, settings=settings or kit_settings("faults"))  # type: ignore[arg-type]


# --- the Store state machine ---


class FaultsStoreMachine(StoreMachine):
    """The Store state machine; each Store's backend is ``retry -> faults -> backend``."""

    def __init__(
        self,
        location: StoreLocation,
        store_options: dict[str, Any],
        retry: Optional[RetryFactory] = None,
        rate: Optional[float] = None,
        two_stores: bool = True,
    ):
        self.location, self.retry, self.rate = location, retry, rate
        self.fault_seed: int = FAULTS["seed"]
        self.raw_links: list[Link] = []
        self.injectors: list[FaultInjector] = []
        super().__init__(store_factory(self._faulty_backend, **store_options), two_stores)

    def _faulty_backend(self) -> Link:
        from .._plugins import backend_for_url
        from ..store import build_chain

        backend = backend_for_url(self.location) if isinstance(self.location, str) else self.location()
        raw = build_chain(backend)
        chain, injector = faulty_chain(raw, self.fault_seed + len(self.injectors), self.retry, self.rate)
        self.raw_links.append(raw)
        self.injectors.append(injector)
        return chain

    def _store_item(self, data: st.DataObject, ns: str, key: str, value: bytes) -> None:
        # under faults, half the stored items are also soft-deleted and undeleted, and half
        # the namespaces stored into are listed: lost moves and torn listings are where a retry
        # layer must look or resume instead of guessing, and the plain rules for them are rarer
        super()._store_item(data, ns, key, value)
        if data.draw(st.booleans(), label="soft-delete and undelete it"):
            self._soft_delete(ns, key)
            self._undelete(ns, key)
        if capabilities_of(self.store.chain).list and data.draw(st.booleans(), label="list the namespace"):
            self._check_listing(ns, False)

    @initialize(fault_seed=_SEEDS, **STORE_SETUP)
    def create_store(self, fault_seed: int, **setup: Any) -> None:
        self.fault_seed = fault_seed
        super().create_store(**setup)

    def teardown(self) -> None:
        try:
            if self.store is not None and not _failing():
                for index, store in enumerate(self.stores):
                    if self.opened[index]:
                        with no_error("store-lifecycle", "Store.close() at the end of an example"):
                            store.close()
                        self.opened[index] = False
                expect_no_temp_left(self.raw_links[0])
        finally:
            super().teardown()


def run_store_machine_under_faults(
    location: StoreLocation,
    settings: Optional[hypothesis.settings] = None,
    seed: Optional[int] = None,
    retry: Optional[RetryFactory] = None,
    rate: Optional[float] = None,
    two_stores: bool = True,
    **store_options: Any,
) -> None:
    """Run the Store state machine with each Store's backend below ``retry`` and a FaultInjector.

    *location*: a URL at a scratch location that does not exist yet, or a callable returning a
    new backend object for one such location on every call.  *store_options* go to
    store_factory (``store_class``, ``namespace_options``, ``middleware``, ...); the rest as in
    :func:`run_backend_machine_under_faults`."""
    caps = opened_store_capabilities(store_factory(location, **store_options))
    require(
        caps.read and caps.write, "the Store state machine reads and writes: the backend declares read or write False"
    )

    def machine() -> FaultsStoreMachine:
        return FaultsStoreMachine(location, store_options, retry, rate, two_stores)

    machine = hypothesis_seed(FAULTS["seed"] if seed is None else seed)(machine)
    # any factory of machines works (as hypothesis documents), though its hint names a class
    run_state_machine_as_test(machine, settings=settings or kit_settings("faults"))  # type: ignore[arg-type]
