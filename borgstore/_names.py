"""Validation of item names and namespaces (COMPAT.md, "Names")."""

import re
from typing import TYPE_CHECKING, Iterable

from .constants import DEL_SUFFIX, HID_SUFFIX, MAX_NAME_LENGTH, TMP_SUFFIX

# printable ASCII without "/", uppercase letters and backslash; "/" separates the namespace
_PART = r"[!-.0-@\[\]-~]+"
_NAME_RE = re.compile(rf"(?:{_PART}/)?{_PART}")
_NAMESPACE_RE = re.compile(_PART)
RESERVED_SUFFIXES = (TMP_SUFFIX, DEL_SUFFIX, HID_SUFFIX)

if TYPE_CHECKING:
    from ._config import Namespace


def check_name(name: object) -> None:
    """Raise ValueError naming *name* unless it is a valid item name."""
    if type(name) is str and len(name) <= MAX_NAME_LENGTH:
        # fast path for the common names (hex keys, plain words): lowercase letters and digits
        # around at most one inner "/" are always valid; anything else takes the full check
        # (bytes methods: several times faster than their str twins)
        flat = name.replace("/", "", 1).encode()
        if flat.isalnum() and flat.lower() == flat and name[0] != "/" and name[-1] != "/":
            return
    if (
        type(name) is str
        and len(name) <= MAX_NAME_LENGTH
        and _NAME_RE.fullmatch(name)
        and ".." not in name
        and not name.endswith(RESERVED_SUFFIXES)
        and not name.startswith("./")
        and not name.endswith("/.")
        and name != "."
    ):
        return
    raise ValueError(f"invalid name {name!r}: {_name_problem(name)}")


def _name_problem(name: object) -> str:
    if not isinstance(name, str):
        return f"names are str, not {type(name).__name__}"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it has {len(name)} characters, at most {MAX_NAME_LENGTH} are allowed"
    if not name.isascii():
        return "only ASCII characters are allowed"
    if name != name.lower():
        return "uppercase letters are not allowed"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "blanks and control characters are not allowed"
    if "\\" in name:
        return "backslashes are not allowed"
    if name.startswith("/") or name.endswith("/"):
        return "it must not start or end with '/'"
    if "//" in name:
        return "it has an empty component ('//')"
    if name.count("/") > 1:
        return "only one level of namespace ('namespace/key') is allowed"
    if ".." in name:
        return "'..' is not allowed"
    if name.endswith(RESERVED_SUFFIXES):
        return f"the suffixes {', '.join(RESERVED_SUFFIXES)} are reserved"
    return "'.' is not a valid namespace or key"


def check_namespace(namespace: object) -> str:
    """Return *namespace* without a trailing '/', raising ValueError if it is not valid."""
    if type(namespace) is not str:
        raise ValueError(f"invalid namespace {namespace!r}: namespaces are str")
    ns = namespace[:-1] if namespace.endswith("/") else namespace
    if ns == "":
        return ns
    if _NAMESPACE_RE.fullmatch(ns) and ".." not in ns and ns != "." and len(ns) < MAX_NAME_LENGTH:
        if not ns.endswith(RESERVED_SUFFIXES):
            return ns
    raise ValueError(f"invalid namespace {namespace!r}: {_name_problem(ns + '/x') if ns else 'empty'}")


def is_valid_key(key: str) -> bool:
    """True if *key*, as listed in a directory, is an item the Store may show."""
    return not key.endswith(RESERVED_SUFFIXES)


# --- messages -------------------------------------------------------------------------------
# The chain below the Store speaks backend names (data/01/23/0123abcd).  An error it raises is
# re-worded where the Store catches it, so that the message names the item as the application
# did; nothing of this runs on a call that succeeds.


def reword(exc: Exception, items: Iterable[tuple["Namespace", str, bool]]) -> None:
    """Let *exc*'s message name items as the application did: every backend name of *items*
    (``(namespace, name, deleted)`` triples) that the message shows becomes *name*, and a note
    says where it is stored: ``data/0123abcd (stored as data/01/23/0123abcd)``."""
    if len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return
    stored: dict[str, tuple[str, bool]] = {}  # backend name -> (name, deleted)
    for namespace, name, deleted in items:
        suffix = DEL_SUFFIX if deleted else ""
        for level in namespace.levels:
            try:
                backend_name = namespace.nest(name, level) + suffix
            except ValueError:  # a key too short for this level is never stored there
                continue
            if backend_name != name:
                stored.setdefault(backend_name, (name, deleted))
    if not stored:
        return
    # a whole name only: not data/01/23/x inside data/01/23/x.del or inside an absolute path
    alternatives = "|".join(re.escape(backend_name) for backend_name in sorted(stored, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w/.-])(?:{alternatives})(?![\w/-]|\.[\w-])")
    shown: list[str] = []

    def replace(match: "re.Match[str]") -> str:
        if match.group() not in shown:
            shown.append(match.group())
        return stored[match.group()][0]

    text = pattern.sub(replace, exc.args[0])
    if not shown:
        return
    notes = []
    for backend_name in shown:
        name, deleted = stored[backend_name]
        where = f"soft-deleted, stored as {backend_name}" if deleted else f"stored as {backend_name}"
        notes.append(where if len(shown) == 1 else f"{name} {where}")
    exc.args = (f"{text} ({'; '.join(notes)})",)


def missing_at_every_level(namespace: "Namespace", name: str, deleted: bool) -> str:
    """The message for an item of a namespace with several levels that is at none of them."""
    suffix = DEL_SUFFIX if deleted else ""
    where = ", ".join(namespace.nest(name, level) + suffix for level in namespace.levels)
    return f"{name} ({'soft-deleted, ' if deleted else ''}at none of {where})"
