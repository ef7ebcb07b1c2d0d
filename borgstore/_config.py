"""Parsing and checking a store's namespace config."""

from dataclasses import dataclass
from typing import Iterator

from . import _plugins
from ._names import check_namespace
from .nesting import DEFAULT_NESTING, NestingStrategy

CACHE_MODES = ("off", "mirror", "writethrough")
CONFIG_KEYS = {"levels", "nesting", "cache", "max_age", "size"}
MAX_LEVEL = 8  # 256**8 directories is far beyond any file system already


@dataclass(frozen=True)
class CachePolicy:
    mode: str
    max_age: float
    size: int


class Namespace:
    """One namespace's nesting: its levels (the last is written) and its strategy."""

    __slots__ = ("name", "levels", "strategy", "write_level", "single", "deepest", "level_set", "nest", "nest_write")

    def __init__(self, name: str, levels: tuple, strategy: NestingStrategy):
        self.name = name
        self.levels = levels
        self.strategy = strategy
        self.write_level = levels[-1]
        self.single = len(levels) == 1
        self.deepest = max(levels)
        self.level_set = frozenset(levels)
        self.nest = strategy.nest
        self.nest_write = strategy.nester(self.write_level)

    def __repr__(self):
        return f"<Namespace {self.name!r} levels={list(self.levels)} nesting={self.strategy.name!r}>"


def parse_levels(levels) -> dict:
    """Turn the older ``{"namespace/": [levels]}`` form into a config."""
    if not levels or not isinstance(levels, dict):
        raise ValueError(f"no or invalid levels configuration given: {levels!r}")
    return {namespace: {"levels": value} for namespace, value in levels.items()}


def _check_levels(namespace, levels) -> tuple:
    if (
        not isinstance(levels, (list, tuple))
        or not levels
        or not all(type(level) is int and 0 <= level <= MAX_LEVEL for level in levels)
    ):
        raise ValueError(
            f"invalid levels {levels!r} for namespace {namespace!r}: a non-empty list of ints from 0 to {MAX_LEVEL}"
        )
    if len(set(levels)) != len(levels):
        raise ValueError(f"invalid levels {levels!r} for namespace {namespace!r}: a level is listed twice")
    return tuple(levels)


def _check_cache(namespace, entry):
    mode = entry.get("cache")
    if mode is None:
        return None
    mode = getattr(mode, "value", mode)  # an enum member works as well as its value
    if not isinstance(mode, str) or mode.lower() not in CACHE_MODES:
        raise ValueError(f"invalid cache mode {mode!r} for namespace {namespace!r}: one of {', '.join(CACHE_MODES)}")
    mode = mode.lower()
    max_age = entry.get("max_age", 0)
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0:
        raise ValueError(f"invalid cache max_age {max_age!r} for namespace {namespace!r}: seconds >= 0 (0: no limit)")
    size = entry.get("size", 0)
    if type(size) is not int or size < 0:
        raise ValueError(f"invalid cache size {size!r} for namespace {namespace!r}: bytes >= 0 (0: no limit)")
    if mode == "off":
        return None
    return CachePolicy(mode, float(max_age), size)


def parse_config(config):
    """Return ({namespace name: Namespace}, {namespace name: CachePolicy}) for *config*."""
    if not config or not isinstance(config, dict):
        raise ValueError(f"no or invalid config given: {config!r}")
    namespaces, cached = {}, {}
    for key, entry in config.items():
        if not isinstance(key, str) or (key and not key.endswith("/")):
            raise ValueError(f"invalid namespace {key!r} in config: use 'name/' (or '' for the root)")
        name = check_namespace(key)
        if not isinstance(entry, dict):
            raise ValueError(f"invalid config for namespace {key!r}: expected a dict, got {type(entry).__name__}")
        unknown = set(entry) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown config keys for namespace {key!r}: {sorted(unknown)}")
        if "levels" not in entry:
            raise ValueError(f"config for namespace {key!r} lacks 'levels'")
        levels = _check_levels(key, entry["levels"])
        strategy_name = entry.get("nesting", DEFAULT_NESTING)
        if not isinstance(strategy_name, str):
            raise ValueError(f"invalid nesting {strategy_name!r} for namespace {key!r}: a strategy name")
        namespaces[name] = Namespace(name, levels, _plugins.nesting_strategy(strategy_name))
        policy = _check_cache(key, entry)
        if policy is not None:
            cached[name] = policy
    return namespaces, cached


def replace_levels(namespaces: dict, levels: dict) -> dict:
    """The namespaces of ``Store.set_levels(levels)``: *levels* parsed, each namespace known in
    *namespaces* keeping its nesting strategy."""
    if not levels or not isinstance(levels, dict):
        raise ValueError(f"no or invalid levels configuration given: {levels!r}")
    config = parse_levels(levels)
    for key, entry in config.items():
        known = namespaces.get(key[:-1] if key.endswith("/") else key)
        if known is not None:
            entry["nesting"] = known.strategy.name
    return parse_config(config)[0]


def level_directories(namespaces: dict) -> Iterator[str]:
    """Every directory ``Store.create_levels()`` makes: each namespace's own, then all nesting
    directories of its write level."""
    for namespace in namespaces.values():
        if namespace.name:
            yield namespace.name
        prefix = f"{namespace.name}/" if namespace.name else ""
        if namespace.write_level > 0:
            for directory in namespace.strategy.all_directories(namespace.write_level):
                yield prefix + directory
