"""Hypothesis strategies for the names and values the kit throws at a store.

Names cover the valid name space of docs/compatibility.md: hex keys (the usual case), every other printable
lowercase ASCII character, namespaces, and nested directories as the Store produces them.  Names
at the edges of that space are drawn often, not by luck: leading dots, the longest names a Store
produces (MAX_NAME_LENGTH), the ``.del`` and ``.hid`` suffixes.  Values run from empty (drawn
often) to several MiB; the big ones are rare so that a quick run stays quick (the example checks
cover values larger than any read buffer every time).
"""

import random
import string

from hypothesis import strategies as st

from ..constants import MAX_NAME_LENGTH, TMP_SUFFIX

#: the characters a name may contain: printable ASCII without blanks, uppercase, "/" and "\"
NAME_CHARS = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "/\\" and c not in string.ascii_uppercase)
HEX = "0123456789abcdef"


def _good_component(s: str) -> bool:
    return s not in (".",) and ".." not in s and not s.endswith(TMP_SUFFIX)


hex_keys = st.text(HEX, min_size=4, max_size=64)
ascii_components = st.text(NAME_CHARS, min_size=1, max_size=12).filter(_good_component)

#: keys at the edges of the name space: a leading dot, and the longest keys a Store hands on
edge_keys = st.one_of(
    st.builds(lambda rest: "." + rest, st.text(NAME_CHARS.replace(".", ""), min_size=1, max_size=8)),
    st.text(HEX, min_size=MAX_NAME_LENGTH - 8, max_size=MAX_NAME_LENGTH),
    st.text(NAME_CHARS.replace(".", ""), min_size=MAX_NAME_LENGTH - 3, max_size=MAX_NAME_LENGTH),
)
# what the Store's soft deletion and the quota file add to a key at the backend level
_backend_suffixes = st.sampled_from(["", "", "", ".del", ".hid"])

#: a leaf name as a backend sees it: a hex key, another ASCII key or one at the edges, maybe
#: soft-deleted or hidden
backend_leaves = st.builds(
    lambda key, suffix: key + suffix, st.one_of(hex_keys, ascii_components, edge_keys), _backend_suffixes
)

#: a directory path of 1 to 3 components, like ``data`` or ``data/01/23``
directory_paths = st.lists(
    st.one_of(st.text(HEX, min_size=2, max_size=2), ascii_components), min_size=1, max_size=3
).map("/".join)


@st.composite
def values(draw, big: int = 3 * 1024 * 1024):
    """Bytes from empty to *big*: mostly tiny, sometimes a few KiB, rarely (about 1 in 40) big."""
    kind = draw(st.integers(0, 39))
    if kind == 17:
        size = draw(st.integers(big // 2, big))
        seed = draw(st.integers(0, 2**32 - 1))
        return random.Random(seed).randbytes(size)
    if kind in (5, 23, 31):
        size = draw(st.integers(1000, 70000))
        seed = draw(st.integers(0, 2**32 - 1))
        return random.Random(seed).randbytes(size)
    if kind in (3, 11, 19, 29, 37):
        return b""
    # at least a few bytes: ranges, offsets and overwrites only show their bugs on real content
    return draw(st.binary(min_size=3, max_size=80))


@st.composite
def buffers(draw, big: int = 3 * 1024 * 1024):
    """A value as bytes, bytearray or a 1-D memoryview: every type a backend's store() accepts."""
    value = draw(values(big))
    kind = draw(st.sampled_from(["bytes", "bytes", "bytearray", "memoryview"]))
    if kind == "bytearray":
        return value, bytearray(value)
    if kind == "memoryview":
        return value, memoryview(value)
    return value, value
