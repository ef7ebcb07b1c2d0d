"""borgstore backend for a directory tree on a local file system: ``file:///absolute/path``.

Options (``Store(url, backend_options={...})``): ``durability`` (``"none"``, ``"close"``, the
default, or ``"always"``) and ``precreate_dirs`` (bool).  See README.md.
"""

from urllib.parse import unquote

from borgstore import BackendSpec, hookimpl
from borgstore.backends.errors import BackendURLInvalid

from ._backend import CAPABILITIES, DEFAULT_DURABILITY, DURABILITY_MODES, PosixFSBackend

__version__ = "1.0.0.dev0"

ACCEPTED_FORM = "file:///absolute/path"
OPTIONS = ("durability", "precreate_dirs")


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


def backend_from_url(url: str, **options) -> PosixFSBackend:
    """The factory of the ``file`` scheme: an unopened :class:`PosixFSBackend` for *url*."""
    path = parse_url(url)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown posixfs backend option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    return PosixFSBackend(path, **options)


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("file",),
            factory=backend_from_url,
            capabilities=CAPABILITIES,
            description="a directory tree on a local file system: " + ACCEPTED_FORM,
        )
    ]


__all__ = [
    "ACCEPTED_FORM",
    "DEFAULT_DURABILITY",
    "DURABILITY_MODES",
    "PosixFSBackend",
    "backend_from_url",
    "parse_url",
]
