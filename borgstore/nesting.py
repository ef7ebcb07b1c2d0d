"""Nesting strategies: where under a namespace a key is stored.

Many file systems and servers slow down with millions of entries in one directory, so a key is
stored under ``level`` directories of two characters each.  The strategy decides which:

* ``hex`` (the default, compatible with the PyPI borgstore): the key's own first ``2 * level``
  characters, so ``data/0123abcd`` at level 2 is ``data/01/23/0123abcd``.  Meant for keys that are
  hex digests; a listing walks the directories in order and is sorted without extra work.
* ``hash``: the first ``2 * level`` hex digits of the key's SHA-256, so any key (``config``,
  ``archive-2026-11-27``) spreads evenly.  A listing must be sorted after the walk.

Either way the last path element is the full key, and a soft-deleted item (``key.del``) sits in
the same directory as its key.
"""

import hashlib
from typing import Callable, Iterator

from ._plugins import NestingSpec, hookimpl


class NestingStrategy:
    """Base of all nesting strategies.  Subclasses implement :meth:`directories_for`."""

    #: the strategy's name in a namespace config: ``{"nesting": name}``
    name = ""
    #: True if walking the sorted nesting directories yields keys in sorted order
    order_preserving = False

    def directories_for(self, key: str, level: int) -> str:
        """Return the ``level`` nesting directories for *key*, e.g. ``"01/23"``."""
        raise NotImplementedError

    def nest(self, name: str, level: int) -> str:
        """Return the backend name of *name* (``namespace/key``) at *level*."""
        if level == 0:
            return name
        namespace, slash, key = name.rpartition("/")
        return f"{namespace}{slash}{self.directories_for(key, level)}/{key}"

    def nester(self, level: int) -> Callable[[str], str]:
        """Return a function ``name -> backend name`` for *level*; the Store calls it for every
        operation, so strategies may return something faster than :meth:`nest`."""
        if level == 0:
            return _unchanged
        return lambda name: self.nest(name, level)

    def all_directories(self, level: int) -> Iterator[str]:
        """Yield every nesting directory of *level* (``"00/00"`` ... ``"ff/ff"``) in sorted order."""
        width = 2 * level
        for i in range(256**level):
            digits = format(i, f"0{width}x")
            yield "/".join(digits[j : j + 2] for j in range(0, width, 2))


class HexNesting(NestingStrategy):
    name = "hex"
    order_preserving = True

    def nester(self, level: int) -> Callable[[str], str]:
        if level != 1:
            return super().nester(level)
        directories_for = self.directories_for

        def nest_level_1(name: str) -> str:  # the common case, without the generic split and join
            slash = name.rfind("/") + 1
            if len(name) - slash < 2:
                directories_for(name[slash:], 1)  # raises the error naming the key
            return f"{name[:slash]}{name[slash:slash + 2]}/{name[slash:]}"

        return nest_level_1

    def directories_for(self, key: str, level: int) -> str:
        width = 2 * level
        if len(key) < width:
            raise ValueError(
                f"key {key!r} is too short for nesting level {level} (needs {width} characters); "
                f"use a lower level or the 'hash' nesting strategy"
            )
        if level == 1:
            return key[:2]
        return "/".join(key[j : j + 2] for j in range(0, width, 2))


class HashNesting(NestingStrategy):
    name = "hash"
    order_preserving = False

    def directories_for(self, key: str, level: int) -> str:
        digits = hashlib.sha256(key.encode("ascii")).hexdigest()
        return "/".join(digits[j : j + 2] for j in range(0, 2 * level, 2))


def _unchanged(name: str) -> str:
    return name


DEFAULT_NESTING = HexNesting.name


@hookimpl
def borgstore_nesting_strategies() -> list[NestingSpec]:
    return [
        NestingSpec(HexNesting.name, HexNesting, "the key's own leading characters (borgstore-compatible)"),
        NestingSpec(HashNesting.name, HashNesting, "leading hex digits of the key's SHA-256; any key"),
    ]
