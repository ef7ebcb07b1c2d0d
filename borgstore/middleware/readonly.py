"""The ``readonly`` middleware: every operation that would change the store is refused.

A refused operation raises PermissionDenied naming the operation and the name(s) it was given,
before anything is passed on, so no link inside this one and no storage is reached.  Reading
operations go through untouched.

Both lists below are written out on purpose (as kopia's read-only storage does) instead of
deriving one from the other: an operation added to the link contract later is in neither, and
``tests/test_middleware_readonly.py`` fails until someone decides which one it belongs to.  A
default either way would be wrong sooner or later: letting a new mutation through breaks the
promise, refusing a new read breaks read-only clients.
"""

import dataclasses

from .._plugins import MiddlewareSpec, hookimpl
from ..backends._base import Capabilities, Value
from ..backends.errors import PermissionDenied
from ._base import Middleware

#: the operations of the link contract that change the store: each is refused below
REFUSED = ("create", "destroy", "mkdir", "rmdir", "store", "store_new", "delete", "move")

#: the operations that only read (or only concern this client's session): bound to the next link
PASSED_THROUGH = (
    "open",
    "close",
    "flush",
    "info",
    "load",
    "list",
    "list_tree",
    "list_temp",
    "hash",
    "gather",
    "quota",
)


def _refuse(op: str, *names: str) -> PermissionDenied:
    shown = " -> ".join(repr(name) for name in names)
    target = f" {shown}" if names else ""
    return PermissionDenied(f"{op}{target}: refused, the store is opened read-only")


class ReadOnlyMiddleware(Middleware):
    """Refuses create, destroy, mkdir, rmdir, store, store_new, delete and move with PermissionDenied."""

    name = "readonly"
    enforces_limits = True

    @property
    def capabilities(self) -> Capabilities:
        # what the chain can do from here: read and list as the backend does, never write
        return dataclasses.replace(self.inner.capabilities, write=False, store_new=False)

    # The passed-through operations are not defined here: Middleware binds them straight to the
    # next link, so reading through this layer costs nothing.

    def create(self) -> None:
        raise _refuse("create")

    def destroy(self) -> None:
        raise _refuse("destroy")

    def mkdir(self, name: str) -> None:
        raise _refuse("mkdir", name)

    def rmdir(self, name: str) -> None:
        raise _refuse("rmdir", name)

    def store(self, name: str, value: Value) -> None:
        raise _refuse("store", name)

    def store_new(self, name: str, value: Value) -> None:
        raise _refuse("store_new", name)

    def delete(self, name: str) -> None:
        raise _refuse("delete", name)

    def move(self, curr_name: str, new_name: str) -> None:
        # a soft deletion or undeletion arrives here too, as the move it is
        raise _refuse("move", curr_name, new_name)


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    return [MiddlewareSpec("readonly", ReadOnlyMiddleware, "refuses every operation that changes the store")]
