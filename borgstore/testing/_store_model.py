"""The Store state machine's model and its names: per namespace, the live and the soft-deleted
items *per nesting level*, because that is what a store being converted between levels really
holds: reads look at the configured levels in order, writes go to the last one, and
``change_level`` moves an item there."""

from typing import Any

from hypothesis import strategies as st

from .._names import check_name
from ..backends.errors import ObjectNotFound
from ..constants import MAX_NAME_LENGTH
from ._rules import ConformanceFailure, expect_raises
from ._strategies import HEX, NAME_CHARS

# namespace -> how its keys look
HEX_NAMESPACES = ("data", "index")
ASCII_NAMESPACES = ("", "config")

# a root key named like a namespace would be that namespace's directory
ascii_keys = st.text(NAME_CHARS, min_size=1, max_size=93).filter(
    lambda key: _valid(key) and _valid("config/" + key) and key not in HEX_NAMESPACES + ASCII_NAMESPACES
)
hex_keys = st.text(HEX, min_size=8, max_size=90)  # "index/" + 90 is still a valid name


def _edge_keys(ns):
    """Keys at the edges of *ns*'s name space: the longest valid ones, and leading dots."""
    room = MAX_NAME_LENGTH - (len(ns) + 1 if ns else 0)
    if ns in HEX_NAMESPACES:
        return st.text(HEX, min_size=room - 2, max_size=room)
    no_dot = NAME_CHARS.replace(".", "")
    return st.one_of(
        st.text(no_dot, min_size=1, max_size=6).map(lambda rest: "." + rest),
        st.text(no_dot, min_size=room - 2, max_size=room),
    ).filter(lambda key: _valid(full_name(ns, key)) and key not in HEX_NAMESPACES + ASCII_NAMESPACES)


invalid_names = st.one_of(
    st.sampled_from(
        [
            "Data/abcd",
            "data/ABCD",
            "data/ab cd",
            "data\\abcd",
            "data/../x",
            "/data",
            "data/",
            "",
            "data/x.tmp",
            "data/x.del",
            "data/x.hid",
            "a/b/c",
            "data/" + "a" * 96,
            "data/\u00e4",
        ]
    ),
    st.text(min_size=1, max_size=12).filter(lambda s: not _valid(s)),
)


def _valid(name) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def full_name(namespace, key):
    """The Store name of *key* in *namespace*."""
    return f"{namespace}/{key}" if namespace else key


EDGE_KEYS = {ns: _edge_keys(ns) for ns in HEX_NAMESPACES + ASCII_NAMESPACES}


def config_key(ns):
    """The key of *ns* in a Store config: ``"data/"``, or ``""`` for the root namespace."""
    return f"{ns}/" if ns else ""


class StoreModel:
    """What the Store machine expects, and how it draws names: mixed into the machine, which sets
    ``levels``, ``live``, ``deleted``, ``expected``, ``current`` and ``store``."""

    #: namespace -> its configured levels, the last one written
    levels: dict[str, list[int]]
    #: namespace -> key -> {level: value}, of the live and of the soft-deleted items
    live: dict[str, dict[str, dict[int, bytes]]]
    deleted: dict[str, dict[str, dict[int, bytes]]]
    #: per Store object: the calls and the volume its stats must show
    expected: list[tuple[dict[str, int], dict[str, int]]]
    current: int
    store: Any  # the Store the rules use now

    @property
    def expected_calls(self):
        return self.expected[self.current][0]

    @property
    def expected_volume(self):
        return self.expected[self.current][1]

    def _table(self, deleted):
        return self.deleted if deleted else self.live

    def _find(self, ns, key, deleted):
        """The level the Store resolves *key* to: the first configured one holding it, else the last."""
        levels = self.levels[ns]
        held = self._table(deleted)[ns].get(key, {})
        for level in levels:
            if level in held:
                return level
        return levels[-1]

    def _value(self, ns, key, deleted=False):
        return self._table(deleted)[ns].get(key, {}).get(self._find(ns, key, deleted))

    def _put(self, ns, key, level, value, deleted=False):
        self._table(deleted)[ns].setdefault(key, {})[level] = value

    def _take(self, ns, key, level, deleted=False):
        held = self._table(deleted)[ns][key]
        value = held.pop(level)
        if not held:
            del self._table(deleted)[ns][key]
        return value

    def _visible(self, ns, deleted):
        """(key, size) of every item a listing shows, sorted."""
        levels = set(self.levels[ns])
        return sorted(
            (key, len(value))
            for key, held in self._table(deleted)[ns].items()
            for level, value in held.items()
            if level in levels
        )

    def _draw_key(self, data, ns, label, deleted=False, existing_only=False):
        keys = sorted(self._table(deleted)[ns])
        if keys and (existing_only or data.draw(st.sampled_from([True, True, True, False]), label=f"{label} exists")):
            return data.draw(st.sampled_from(keys), label=label)
        if existing_only:
            return None
        if data.draw(st.sampled_from([False, False, True]), label=f"{label} at the edge"):
            return data.draw(EDGE_KEYS[ns], label=label)
        new = hex_keys if ns in HEX_NAMESPACES else ascii_keys
        return data.draw(new, label=label)

    def _expect_gone(self, rule_id, name, deleted, what):
        """After *what*, *name* holds nothing: load() raises ObjectNotFound (a cache may not serve it)."""
        message = f"after {what}, load({name!r}, deleted={deleted}) of the old name"
        with expect_raises(rule_id, ObjectNotFound, message):
            got = self.store.load(name, deleted=deleted)
            raise ConformanceFailure(rule_id, f"{message} gave {len(got)} bytes")

    def _draw_ns(self, data, label="namespace"):
        # mostly a namespace that holds something, so that reads find what they look for
        used = sorted(ns for ns in self.levels if self.live[ns] or self.deleted[ns])
        return data.draw(st.sampled_from(used * 3 + sorted(self.levels)), label=label)

    def _draw_sources(self, data, ns):
        keys = sorted(key for key in self.live[ns] if self._value(ns, key) is not None)
        if not keys:
            return None, None
        sources, expected = [], b""
        for _ in range(data.draw(st.integers(1, 3), label="ranges")):
            key = data.draw(st.sampled_from(keys), label="source")
            value = self._value(ns, key)
            # a negative offset counts from the end, as in load()
            offset = data.draw(st.integers(-len(value), len(value)), label="offset")
            start = len(value) + offset if offset < 0 else offset
            size = data.draw(st.integers(0, len(value) - start), label="size")
            sources.append((key, offset, size))
            expected += value[start : start + size]
        return sources, expected
