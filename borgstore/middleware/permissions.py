"""The ``permissions`` middleware: which operations a client may do on which part of a store.

Option ``permissions``: a dict mapping a name prefix to the letters granted there:

* ``l`` list directories, ``r`` read items (and their info),
* ``w`` write new items, ``W`` write and overwrite items,
* ``D`` delete items (a move or soft deletion deletes its source name).

The rules are those of the PyPI borgstore's posixfs backend, so a permissions dict written for it
means the same here, on every backend.  A prefix is matched against the nested backend name
(``data/01/0123...``), component by component: the full name first, then each parent, up to
``""`` (the root).  The first prefix found decides, with no fallback to the ones above it; a name
under no prefix is denied.  An empty dict (or None) grants everything.

An operation needs any one of the letters listed for it (see docs/middleware.md).  A denied
operation raises PermissionDenied before anything is changed.

"Write new, never overwrite" (``w`` without ``W``) is atomic where the chain has ``store_new``
(``capabilities.store_new``): a store is then a ``store_new``, so of writers racing on one new
name exactly one succeeds.  Elsewhere it is a look (``info``) followed by a store, and two
writers racing on one new name may both succeed.
"""

from typing import Callable, Iterator, Optional

from .._plugins import MiddlewareSpec, hookimpl
from ..backends._base import ItemInfo, Ranges, Value
from ..backends.errors import ObjectAlreadyExists, PermissionDenied
from ._base import Link, Middleware
from ._optional import optional_operation

LETTERS = "lrwWD"


def check_permissions(permissions: object) -> dict[str, str]:
    """Return a copy of *permissions*, raising ValueError naming the first bad key or letter."""
    if permissions is None:
        return {}
    if not isinstance(permissions, dict):
        raise ValueError(f"permissions must be a dict {{name prefix: letters}}, not {type(permissions).__name__}")
    checked: dict[str, str] = {}
    for prefix, letters in permissions.items():
        if not isinstance(prefix, str):
            raise ValueError(f"invalid permissions key {prefix!r}: a name prefix (str), '' for the root")
        # such a key would never match, since names are compared component by component
        if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            raise ValueError(
                f"invalid permissions key {prefix!r}: no leading, trailing or double '/' "
                f"(use e.g. 'data' or 'data/01'; '' is the root)"
            )
        if not isinstance(letters, str):
            raise ValueError(
                f"invalid permissions for {prefix!r}: {letters!r} is not a str of letters from {LETTERS!r}"
            )
        bad = sorted(set(letters) - set(LETTERS))
        if bad:
            raise ValueError(
                f"invalid permission letter(s) {''.join(bad)!r} for {prefix!r}: "
                f"allowed are l (list), r (read), w (write new), W (overwrite), D (delete)"
            )
        checked[prefix] = letters
    return checked


class PermissionsMiddleware(Middleware):
    name = "permissions"
    enforces_limits = True

    def __init__(self, inner: Link, *, permissions: Optional[dict[str, str]] = None):
        super().__init__(inner)
        self.permissions = check_permissions(permissions)

    # --- the rule ---
    def _granted(self, name: str) -> str:
        """The letters granted on *name*: those of the most specific prefix that has an entry."""
        parts = name.split("/") if name else []
        for i in range(len(parts), -1, -1):
            letters = self.permissions.get("/".join(parts[:i]))
            if letters is not None:
                return letters
        return ""

    def _allows(self, name: str, letters: str) -> bool:
        if not self.permissions:
            return True
        granted = self._granted(name)
        return any(letter in granted for letter in letters)

    def _require(self, op: str, name: str, letters: str) -> None:
        if not self._allows(name, letters):
            raise _denied(op, name, letters)

    def _require_write(self, op: str, name: str, exists: Callable[[], bool]) -> None:
        """Check writing *name*: 'W' allows any write, 'w' only a new item.  *exists* is only
        called when the answer matters, so a client with 'W' pays no extra look-up."""
        if self._allows(name, "W"):
            return
        self._require(op, name, "wW")
        if exists():
            self._require(op, name, "W")

    # --- lifecycle ---
    def create(self) -> None:
        self._require("create", "", "wW")
        return self.inner.create()

    def destroy(self) -> None:
        self._require("destroy", "", "D")
        return self.inner.destroy()

    # --- directories ---
    def mkdir(self, name: str) -> None:
        self._require("mkdir", name, "w")
        return self.inner.mkdir(name)

    def rmdir(self, name: str) -> None:
        self._require("rmdir", name, "wD")
        return self.inner.rmdir(name)

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._require("list", name, "l")
        return self.inner.list(name)

    def _require_below(self, name: str) -> None:
        # one stream covers every directory below: each prefix there must grant listing too
        self._require("list", name, "l")
        below = name + "/" if name else ""
        for prefix in self.permissions:
            if prefix.startswith(below) and prefix != name:
                self._require("list", prefix, "l")

    @optional_operation
    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        self._require_below(name)
        return self.inner.list_tree(name)

    @optional_operation
    def list_temp(self, name: str) -> Iterator[ItemInfo]:
        self._require_below(name)
        return self.inner.list_temp(name)

    # --- reading ---
    def info(self, name: str) -> ItemInfo:
        self._require("info", name, "lr")
        return self.inner.info(name)

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        self._require("load", name, "r")
        return self.inner.load(name, size=size, offset=offset)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        self._require("hash", name, "r")
        return self.inner.hash(name, algorithm)

    def gather(self, sources: Ranges) -> bytes:
        sources = list(sources)
        # all of them before reading any, so a denial costs no transfer
        for name in dict.fromkeys(name for name, _, _ in sources):
            self._require("gather", name, "r")
        return self.inner.gather(sources)

    # --- writing ---
    def store(self, name: str, value: Value) -> None:
        if self._allows(name, "W"):
            return self.inner.store(name, value)
        self._require("store", name, "wW")
        if not self.inner.capabilities.store_new:
            # not atomic: a writer racing on the same new name may store between look and store
            if self.inner.info(name).exists:
                raise _denied("store", name, "W")
            return self.inner.store(name, value)
        try:
            return self.inner.store_new(name, value)
        except ObjectAlreadyExists:
            raise _denied("store", name, "W") from None

    @optional_operation
    def store_new(self, name: str, value: Value) -> None:
        self._require("store_new", name, "wW")
        return self.inner.store_new(name, value)

    def delete(self, name: str) -> None:
        self._require("delete", name, "D")
        return self.inner.delete(name)

    def move(self, curr_name: str, new_name: str) -> None:
        # a soft deletion is the move name -> name.del, and is checked as that (as the PyPI posixfs)
        self._require("move", curr_name, "D")
        self._require_write("move", new_name, lambda: self.inner.info(new_name).exists)
        return self.inner.move(curr_name, new_name)


def _denied(op: str, name: str, letters: str) -> PermissionDenied:
    needed = " or ".join(repr(letter) for letter in letters)
    return PermissionDenied(f"{op}: permission {needed} required for {name!r}, not granted")


@hookimpl
def borgstore_middleware() -> list[MiddlewareSpec]:
    return [
        MiddlewareSpec(
            "permissions",
            PermissionsMiddleware,
            "grants l/r/w/W/D per name prefix, as the PyPI posixfs permissions",
        )
    ]
