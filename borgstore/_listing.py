"""How the Store lists a namespace (a walk directory by directory, or one ``list_tree`` stream),
and the checks of the sources ``Store.gather`` reads."""

from typing import Any, Iterable, Iterator, Optional

from ._config import Namespace
from ._names import is_valid_key
from .backends._base import ItemInfo
from .constants import DEL_SUFFIX
from .middleware._base import Link


def walk(chain: Link, directory: str, namespace: Namespace, depth: int, deleted: bool) -> Iterator[ItemInfo]:
    """The namespace's items, one ``list`` call per directory."""
    deepest = namespace.deepest
    for info in chain.list(directory):
        if info.directory:
            if depth < deepest:
                subdirectory = f"{directory}/{info.name}" if directory else info.name
                yield from walk(chain, subdirectory, namespace, depth + 1, deleted)
        elif depth in namespace.level_set:
            item = _listed(info, info.name, deleted)
            if item is not None:
                yield item


def walk_tree(chain: Link, directory: str, namespace: Namespace, deleted: bool) -> Iterator[ItemInfo]:
    """The namespace's items from one ``list_tree`` stream (an object store's prefix listing)."""
    level_set = namespace.level_set
    for info in chain.list_tree(directory):
        path = info.name
        depth = path.count("/")
        if depth in level_set:
            key = path[path.rfind("/") + 1 :]
            item = _listed(info, key, deleted)
            if item is not None:
                yield item


def _listed(info: ItemInfo, key: str, deleted: bool) -> Optional[ItemInfo]:
    """The ItemInfo the Store lists for a backend item whose leaf name is *key*, or None: live
    items without *deleted*, soft-deleted ones (their ``.del`` taken off) with it."""
    if key.endswith(DEL_SUFFIX):
        if not deleted:
            return None
        key = key[: -len(DEL_SUFFIX)]
    elif deleted:
        return None
    if not is_valid_key(key):
        return None
    # ItemInfo._replace costs three times a bare tuple construction; listings are hot
    return info if info.name == key else _tuple_new(ItemInfo, (key, *info[1:]))


_tuple_new = tuple.__new__


def sorted_lazily(items: Iterable[ItemInfo]) -> Iterator[ItemInfo]:
    """*items* sorted by name, sorted only when the first one is asked for."""
    yield from sorted(items, key=lambda info: info.name)


def check_sources(sources: Iterable[Any], namespace_name: Optional[str]) -> list[tuple[str, int, int]]:
    """The ``(name, offset, size)`` sources of ``Store.gather``, all checked before any is looked
    up; with *namespace_name*, the names are keys in that namespace."""
    checked = []
    for source in sources:
        try:
            name, offset, size = source
        except (TypeError, ValueError):
            raise ValueError(f"a source is a (name, offset, size) tuple, not {source!r}") from None
        if type(offset) is not int or type(size) is not int or size < 0:
            raise ValueError(f"invalid range in source {source!r}: offset is an int, size an int >= 0")
        if namespace_name is not None:
            if not isinstance(name, str) or "/" in name:
                raise ValueError(f"source name {name!r} must be a key without '/' when a namespace is given")
            name = f"{namespace_name}/{name}" if namespace_name else name
        checked.append((name, offset, size))
    return checked
