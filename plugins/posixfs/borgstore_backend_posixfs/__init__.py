"""borgstore backend for a directory tree on a local file system: ``file:///absolute/path``.

Options (``Store(url, backend_options={...})``): ``durability`` (``"none"``, ``"close"``, the
default, or ``"always"``) and ``precreate_dirs`` (bool).  See README.md.

This module is what borgstore imports to learn about the plugin, so it stays light: the backend
itself (``_backend``) is imported when a ``file:`` URL is first used.
"""

import hashlib
from urllib.parse import unquote

from borgstore import BackendSpec, Capabilities, hookimpl
from borgstore.backends.errors import BackendURLInvalid

__version__ = "1.0.0.dev0"

ACCEPTED_FORM = "file:///absolute/path"
OPTIONS = ("durability", "precreate_dirs")
DURABILITY_MODES = ("none", "close", "always")
#: a careful user's choice: a finished backup survives a power loss, at the cost of one syncfs per
#: flush/close rather than two fsyncs per item (see README.md for the measured costs)
DEFAULT_DURABILITY = "close"

CAPABILITIES = Capabilities(
    read=True,
    write=True,
    list=True,
    # hashing happens next to the data, streamed, so every fixed-length hashlib algorithm qualifies
    hash_algorithms=frozenset(name for name in hashlib.algorithms_guaranteed if not name.startswith("shake_")),
    needs_mkdir=True,
    atomic_store=True,
    thread_safe=True,
    list_tree=True,
    # an exclusive rename (renameat2 RENAME_NOREPLACE, else link(2)): see _writing
    store_new=True,
)


def parse_url(url: str) -> str:
    """Return the absolute path a ``file:`` URL names, raising BackendURLInvalid for any other form."""
    scheme, colon, rest = url.partition(":") if isinstance(url, str) else ("", "", "")
    if not colon or scheme.lower() != "file":
        raise BackendURLInvalid(f"invalid posixfs URL {url!r}: use {ACCEPTED_FORM}")
    if not rest.startswith("///"):
        if rest.startswith("//"):
            problem = "a host name is not supported (only local paths)"
        else:
            problem = "the path must follow 'file://' and be absolute"
        raise BackendURLInvalid(f"invalid posixfs URL {url!r}: {problem}; use {ACCEPTED_FORM}")
    # percent-escapes may encode any byte of a POSIX path, even one that is not UTF-8
    path = unquote(rest[2:], errors="surrogateescape")
    if "\0" in path:
        raise BackendURLInvalid(f"invalid posixfs URL {url!r}: the path contains a NUL character; use {ACCEPTED_FORM}")
    return path


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("file",),
            factory="borgstore_backend_posixfs._backend:backend_from_url",
            capabilities=CAPABILITIES,
            description="a directory tree on a local file system: " + ACCEPTED_FORM,
            options=OPTIONS,
        )
    ]


_LAZY = ("PosixFSBackend", "backend_from_url")


def __getattr__(name):
    # the backend module is imported on first use, not when borgstore loads its plugins
    if name in _LAZY:
        from . import _backend

        return getattr(_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCEPTED_FORM",
    "CAPABILITIES",
    "DEFAULT_DURABILITY",
    "DURABILITY_MODES",
    "OPTIONS",
    "PosixFSBackend",
    "backend_from_url",
    "parse_url",
]
