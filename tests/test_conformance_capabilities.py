"""Capabilities are the opened backend's: the kit and `python -m borgstore check` read them after
open(), and every capability flag is checked by a named kit rule."""

import dataclasses
import io
import types
import uuid

import pytest

from borgstore import _check, _plugins, hookimpl
from borgstore._plugins import BackendSpec
from borgstore.backends._base import Capabilities
from borgstore.backends.memory import MemoryBackend
from borgstore.testing import BackendTests, StoreTests
from borgstore.testing._backend_capabilities import CAPABILITY_RULES
from borgstore.testing._backend_checks import BACKEND_CHECKS
from borgstore.testing._backend_machine import MACHINE_RULES

#: the algorithms hash() was asked for, by any LearnsAtOpen backend
HASHED = set()


class LearnsAtOpen(MemoryBackend):
    """Knows what its storage can do only once connected, as a backend asking its server would.
    Before open() it declares the most careful answers, which would turn many checks off."""

    BEFORE = Capabilities(write=False, list=False, needs_mkdir=False)
    OPENED = Capabilities(
        hash_algorithms=frozenset({"md5", "sha256", "sha512"}), thread_safe=True, list_tree=True, store_new=True
    )

    def __init__(self, name=""):
        super().__init__(name, list_tree=True)
        self.capabilities = self.BEFORE

    def __getattribute__(self, name):
        # list_tree is always there; the flag, learned at open(), says whether it may be used
        return object.__getattribute__(self, name)

    def open(self):
        super().open()
        self.capabilities = self.OPENED

    def hash(self, name, algorithm="sha256"):
        HASHED.add(algorithm)
        return super().hash(name, algorithm)


def test_every_capability_flag_has_named_rules():
    """Each field of Capabilities is checked by at least one rule, and each named rule exists."""
    assert set(CAPABILITY_RULES) == {field.name for field in dataclasses.fields(Capabilities)}
    known = set(BACKEND_CHECKS) | set(MACHINE_RULES)
    for flag, rules in CAPABILITY_RULES.items():
        assert rules and set(rules) <= known, (flag, rules)


def _outcomes(test_class, arguments):
    """Run every test_* method of a kit test class directly: {test name: "passed" or the skip reason}."""
    outcomes = {}
    for name in sorted(dir(test_class)):
        if name.startswith("test_"):
            try:
                getattr(test_class(), name)(*arguments())
                outcomes[name] = "passed"
            except pytest.skip.Exception as skip:
                outcomes[name] = str(skip)
    return outcomes


def test_backend_tests_use_the_opened_capabilities():
    """BackendTests on a backend that learns its capabilities in open() runs the checks those
    capabilities call for (threads, list_tree, each hash algorithm), and skips only the ones for
    read-only backends and for storage that reserves name suffixes."""
    HASHED.clear()

    class Kit(BackendTests):
        quick_overrides = {"max_examples": 15}

    outcomes = _outcomes(Kit, lambda: (LearnsAtOpen(),))
    skipped = {name: reason for name, reason in outcomes.items() if reason != "passed"}
    assert set(skipped) == {"test_read_only_refuses_writes", "test_reserved_suffixes_refused"}, skipped
    assert "declares write=True" in skipped["test_read_only_refuses_writes"]
    for rule in ("threads", "concurrent_writers", "store_atomic", "list_tree_agrees", "state_machine"):
        assert outcomes["test_" + rule] == "passed"
    assert {"md5", "sha256", "sha512"} <= HASHED


def test_store_tests_use_the_opened_capabilities():
    """StoreTests on such a backend passes: the Store lists through list_tree, learned at open()."""
    location = f"learns-{uuid.uuid4().hex}"

    class Kit(StoreTests):
        quick_overrides = {"max_examples": 15}

    outcomes = _outcomes(Kit, lambda: (lambda: LearnsAtOpen(location), {}))
    assert set(outcomes.values()) == {"passed"}, outcomes


@pytest.fixture
def learns_at_open_scheme():
    """The URL scheme learnsatopen: serving LearnsAtOpen; its spec shows the careful capabilities."""
    plugin = types.ModuleType("borgstore_test_learnsatopen")

    @hookimpl
    def borgstore_backends():
        return [
            BackendSpec(
                schemes=("learnsatopen",),
                factory=lambda url: LearnsAtOpen(url.partition(":")[2]),
                capabilities=LearnsAtOpen.BEFORE,
            )
        ]

    plugin.borgstore_backends = borgstore_backends
    _plugins.plugin_manager().register(plugin, name="borgstore-test-learnsatopen")
    yield "learnsatopen:"
    _plugins.plugin_manager().unregister(name="borgstore-test-learnsatopen")


def test_check_uses_the_opened_capabilities(learns_at_open_scheme):
    """`check` prints the capabilities of an opened scratch location and runs every check they
    call for: only the read-only and the reserved-suffix rules are not applicable."""
    HASHED.clear()
    out = io.StringIO()
    failed = _check.run(learns_at_open_scheme, out=out)
    report = out.getvalue()
    assert failed == 0, report
    assert "capabilities once open: read, write, list, hash_algorithms=md5,sha256,sha512, needs_mkdir" in report
    assert "thread_safe, list_tree" in report
    assert ", 0 failed, 2 not applicable" in report
    assert "N/A   backend read-only-refuses-writes" in report
    assert "N/A   backend reserved-suffixes-refused" in report
    for rule in ("threads", "concurrent-writers", "store-atomic", "list-tree-agrees", "hash-matches-hashlib"):
        assert f"PASS  backend {rule} " in report
    assert {"md5", "sha256", "sha512"} <= HASHED
