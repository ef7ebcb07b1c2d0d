"""Opening and reading a store for the browsing commands: the namespace config a user of ``ls``
does not have, and one walk of a namespace for ``du``.

A Store maps application names onto backend names through each namespace's nesting levels, and
nothing in a store records them (the application passes them to ``Store()`` every time).  So the
command takes ``--levels NS=N[,N...]`` and ``--nesting NS=NAME`` and, for every namespace the user
did not describe, reads the levels off the tree (:func:`discover`, explained in docs/cli.md).
"""

import argparse
import dataclasses
import hashlib
import re
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Optional

from .._config import MAX_LEVEL, _check_levels
from .._names import check_namespace, is_valid_key
from ..backends.errors import BackendError, ObjectNotFound
from ..constants import DEL_SUFFIX, HID_SUFFIX

if TYPE_CHECKING:
    from ..backends._base import ItemInfo
    from ..middleware._base import Link
    from ..store import Store

#: ``list(directory)`` of a chain: the entries of one directory
ListDir = Callable[[str], Iterable["ItemInfo"]]

#: the name of a nesting directory: two lowercase hex digits (both shipped strategies use them)
NESTING_DIRECTORY = re.compile(r"[0-9a-f]{2}")
#: how many directories of one depth discovery lists before it decides (first, last, between)
SAMPLE = 4


def levels_option(text: str) -> tuple[str, tuple[int, ...]]:
    """argparse type of ``--levels``: ``data/=2`` or ``data=0,2`` -> ``("data", (0, 2))``."""
    namespace, equals, value = text.partition("=")
    try:
        if not equals:
            raise ValueError("no '='")
        name = check_namespace(namespace)
        levels = _check_levels(name + "/", [int(part) for part in value.split(",")])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid --levels {text!r} ({exc}): use NAMESPACE=LEVEL[,LEVEL...], e.g. data/=2"
        ) from None
    return name, levels


def nesting_option(text: str) -> tuple[str, str]:
    """argparse type of ``--nesting``: ``data/=hash`` -> ``("data", "hash")``."""
    from .. import _plugins

    namespace, equals, value = text.partition("=")
    try:
        if not equals:
            raise ValueError("no '='")
        name = check_namespace(namespace)
        _plugins.nesting_strategy(value)
    except (ValueError, BackendError) as exc:  # an unknown strategy is a PluginError
        raise argparse.ArgumentTypeError(
            f"invalid --nesting {text!r} ({exc}): use NAMESPACE=STRATEGY, e.g. data/=hash"
        ) from None
    return name, value


@dataclass(frozen=True)
class Layout:
    """How one namespace is nested: what the user said, or what :func:`discover` found."""

    levels: tuple[int, ...]
    #: None: not known (no item seen where it tells); the Store then uses "hex"
    nesting: Optional[str] = "hex"
    note: Optional[str] = None


def discover(list_dir: ListDir, namespace: str) -> Layout:
    """The layout of *namespace* read off its tree through ``list_dir(directory)``.

    A directory whose entries are all nesting directories (two hex digits) is nested one level
    deeper; a sample of those is listed to look further, until a depth holds anything else
    (items, other names) or nothing at all.  That depth is the level."""
    entries = _listed(list_dir, [namespace])
    depth = 0
    while depth < MAX_LEVEL and entries and all(_is_nesting_directory(info) for _, info in entries):
        entries = _listed(list_dir, _sample([f"{parent}/{info.name}" for parent, info in entries]))
        depth += 1
    items = [(parent, info) for parent, info in entries if not info.directory]
    note = None
    if items and any(_is_nesting_directory(info) for _, info in entries):
        note = (
            f"{namespace}/ holds items beside nesting directories (depth {depth}): read as level {depth}; "
            f"a store being converted needs --levels {namespace}/=LEVEL,LEVEL"
        )
    return Layout((depth,), _nesting_of(namespace, depth, items), note)


def _is_nesting_directory(info: "ItemInfo") -> bool:
    return info.directory and NESTING_DIRECTORY.fullmatch(info.name) is not None


def _listed(list_dir: ListDir, directories: Iterable[str]) -> list[tuple[str, "ItemInfo"]]:
    """(directory, entry) for every entry of *directories*; one that vanished meanwhile is empty."""
    entries: list[tuple[str, ItemInfo]] = []
    for directory in directories:
        try:
            entries.extend((directory, info) for info in list_dir(directory))
        except ObjectNotFound:
            continue
    return entries


def _sample(paths: Iterable[str]) -> list[str]:
    """At most SAMPLE of *paths*, spread evenly from the first to the last."""
    paths = sorted(paths)
    if len(paths) <= SAMPLE:
        return paths
    last = len(paths) - 1
    return [paths[round(i * last / (SAMPLE - 1))] for i in range(SAMPLE)]


def _nesting_of(namespace: str, depth: int, items: Iterable[tuple[str, "ItemInfo"]]) -> Optional[str]:
    """The nesting strategy that put the first listed item where it is (None if none tells)."""
    for parent, info in items:
        key = info.name.removesuffix(DEL_SUFFIX)
        if depth == 0 or key.endswith(HID_SUFFIX):
            continue
        directories = parent[len(namespace) + 1 :]
        if _pairs(key, depth) == directories:
            return "hex"
        if _pairs(hashlib.sha256(key.encode("ascii", "replace")).hexdigest(), depth) == directories:
            return "hash"
    return "hex" if depth == 0 else None


def _probe(chain: "Link", name: str, levels: Iterable[int]) -> Optional[str]:
    """The strategy under which *name* (live or soft-deleted) is found on the storage, or None."""
    from .. import _plugins

    for strategy_name in ("hex", "hash"):
        strategy = _plugins.nesting_strategy(strategy_name)
        for level in levels:
            try:
                nested = strategy.nest(name, level)
            except ValueError:  # a key too short for hex nesting at this level
                continue
            if chain.info(nested).exists or chain.info(nested + DEL_SUFFIX).exists:
                return strategy_name
    return None


def _pairs(text: str, depth: int) -> str:
    return "/".join(text[i : i + 2] for i in range(0, 2 * depth, 2))


class Session:
    """An open Store on *url* with a config for the namespaces asked for: ``with Session(...) as s``.

    :param levels: ``{namespace: levels}`` the user gave (``--levels``), never discovered.
    :param nesting: ``{namespace: strategy}`` the user gave (``--nesting``).
    :param read_only: put the ``readonly`` middleware outermost (ls, stat, cat, du write nothing).
    """

    #: the open Store (from the start of the with block)
    store: "Store"

    def __init__(
        self,
        url: str,
        levels: Optional[dict[str, tuple[int, ...]]] = None,
        nesting: Optional[dict[str, str]] = None,
        *,
        read_only: bool,
    ):
        from .. import _plugins

        self.url = url
        self.shown_url = _plugins.redact_url(url)
        self.given_levels = dict(levels or {})
        self.given_nesting = dict(nesting or {})
        self.read_only = read_only
        self.layouts: dict[str, Layout] = {}
        self.namespaces: tuple[str, ...] = ()  # the namespace directories in the store's root, sorted

    def __enter__(self) -> "Session":
        from ..backends.errors import BackendDoesNotExist

        self.store = self._new_store({"": self.root_layout()})
        try:
            self.store.open()
        except BackendDoesNotExist as exc:
            raise CommandFailed(f"no store at {self.shown_url}: {exc}") from None
        root_nested = max(self.root_layout().levels) > 0
        self.namespaces = tuple(
            info.name
            for info in self.store.chain.list("")
            if info.directory
            and _is_namespace(info.name)
            and not (root_nested and NESTING_DIRECTORY.fullmatch(info.name))
        )
        self.layouts = {"": self.root_layout()}
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> Literal[False]:
        self.store.close()
        return False

    def root_layout(self) -> Layout:
        """The root namespace holds its items directly unless ``--levels =N`` says otherwise."""
        levels = self.given_levels.get("", (0,))
        return Layout(levels, self.given_nesting.get("", "hex" if levels == (0,) else None))

    def configure(self, namespaces: Iterable[str], names: Iterable[str] = ()) -> None:
        """Find the layout of each of *namespaces* (given, or discovered from the tree; a namespace
        not in the tree is flat: a put creates it so) and make the Store use them.  Where the
        nesting strategy is not known, the first of *names* found on the storage decides it."""
        for name in namespaces:
            if name not in self.layouts:
                self.layouts[name] = self._layout(name)
        for name in names:
            namespace = name.partition("/")[0] if "/" in name else ""
            layout = self.layouts[namespace]
            if layout.nesting is None:
                found = _probe(self.store.chain, name, layout.levels)
                if found is not None:
                    self.layouts[namespace] = dataclasses.replace(layout, nesting=found)
        # the Store keeps a namespace's strategy through set_levels(), but cannot learn a new
        # one: a strategy other than the default needs a Store built with it (rare: hash nesting)
        if any(layout.nesting not in ("hex", None) for layout in self.layouts.values()):
            self.store.close()
            self.store = self._new_store(self.layouts)
            self.store.open()
        else:
            self.store.set_levels({_config_key(name): list(layout.levels) for name, layout in self.layouts.items()})

    def _layout(self, name: str) -> Layout:
        given = self.given_nesting.get(name)
        if name in self.given_levels:
            levels = self.given_levels[name]
            return Layout(levels, given or ("hex" if levels == (0,) else None))
        if name in self.namespaces:
            layout = discover(self.store.chain.list, name)
            return dataclasses.replace(layout, nesting=given) if given else layout
        return Layout((0,), given or "hex")

    def notes(self) -> list[str]:
        """What discovery found doubtful, one line each."""
        return [layout.note for layout in self.layouts.values() if layout.note]

    def _new_store(self, layouts: dict[str, Layout]) -> "Store":
        from .. import _plugins
        from .._chain import default_middleware
        from ..store import Store

        backend = _plugins.backend_for_url(self.url)
        middleware = default_middleware(backend=backend)
        if self.read_only:
            middleware.insert(0, "readonly")
        config = {
            _config_key(name): {"levels": list(layout.levels), "nesting": layout.nesting or "hex"}
            for name, layout in layouts.items()
        }
        return Store(self.url, backend=backend, config=config, middleware=middleware)


class CommandFailed(Exception):
    """A browsing command cannot do what was asked: printed as ``error: ...``, exit *status*."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def _config_key(namespace: str) -> str:
    return f"{namespace}/" if namespace else ""


def _is_namespace(name: str) -> bool:
    try:
        return check_namespace(name) == name
    except ValueError:
        return False


USAGE_FIELDS = ("items", "bytes", "deleted_items", "deleted_bytes")


def usage(chain: "Link", namespace: str, layout: Layout) -> list[int]:
    """[live items, live bytes, soft-deleted items, soft-deleted bytes] of one namespace: one walk
    of the nesting directories (or one list_tree stream), nothing held in memory."""
    counts = [0, 0, 0, 0]
    for key, size in _walk(chain, namespace, layout):
        deleted = key.endswith(DEL_SUFFIX)
        if not is_valid_key(key[: -len(DEL_SUFFIX)] if deleted else key):
            continue  # .hid and other internal names are no items
        counts[2 if deleted else 0] += 1
        counts[3 if deleted else 1] += size
    return counts


def _walk(chain: "Link", directory: str, layout: Layout, depth: int = 0) -> Iterator[tuple[str, int]]:
    """(leaf name, size) of every item at the namespace's levels below *directory*."""
    deepest, levels = max(layout.levels), set(layout.levels)
    if depth == 0 and deepest and chain.capabilities.list_tree:
        for info in chain.list_tree(directory):
            if info.name.count("/") in levels:
                yield info.name.rpartition("/")[2], info.size
        return
    for info in chain.list(directory):
        if info.directory:
            if depth < deepest:
                yield from _walk(chain, f"{directory}/{info.name}" if directory else info.name, layout, depth + 1)
        elif depth in levels:
            yield info.name, info.size
