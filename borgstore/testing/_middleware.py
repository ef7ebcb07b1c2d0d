"""Every shipped middleware set up so that it must be invisible to the contract, for running the
kit on a backend with each middleware around it."""

from typing import Any, Iterable

from .._chain import MiddlewareEntry

TRANSPARENT_MIDDLEWARE: dict[str, dict[str, Any]] = {
    "stats": {},
    "emulate": {"latency": 0, "bandwidth": 0},
    "permissions": {"permissions": {"": "lrwWD"}},
    "quota": {"limit": 10**15},
    # with no fault to retry it passes every call on; the faults profile checks it under faults
    "retry": {"seed": 1},
    # not "readonly": it refuses every change, which the kit's checks of a writable store would
    # all report; tests/test_middleware_readonly.py checks it instead
}


def store_chain_holding(middleware: Iterable[tuple[str, dict[str, Any]]]) -> list[MiddlewareEntry]:
    """A Store's middleware list holding *middleware* (``[(name, options)]``, outermost first)
    inside ``stats`` (outermost), where the default chain puts its optional links."""
    return ["stats"] + [entry for entry in middleware if entry[0] != "stats"]


def store_chain_with(name: str, options: dict[str, Any]) -> list[MiddlewareEntry]:
    """A Store's middleware list with *name* inside ``stats`` (outermost)."""
    return store_chain_holding([(name, options)])
