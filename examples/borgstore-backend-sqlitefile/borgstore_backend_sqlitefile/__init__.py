"""borgstore backend ``sqlitefile:``: a whole store in one SQLite file (the worked example of
docs/writing-a-backend.md).

This module is what the entry point names: it holds the ``@hookimpl`` that tells borgstore which
URL scheme the backend serves and how to build one.
"""

from borgstore import BackendSpec, hookimpl
from borgstore.backends.errors import BackendURLInvalid

from ._backend import SQLiteFileBackend

__all__ = ["SQLiteFileBackend"]

SCHEME = "sqlitefile"


def backend_from_url(url: str, **options) -> SQLiteFileBackend:
    """Build an unopened backend for ``sqlitefile:///absolute/path``; no I/O happens here."""
    if options:
        raise ValueError(f"the sqlitefile backend takes no options, got: {', '.join(sorted(options))}")
    prefix = SCHEME + "://"
    if not url.startswith(prefix) or not url[len(prefix) :].startswith("/"):
        raise BackendURLInvalid(f"invalid sqlitefile URL {url!r}: use sqlitefile:///absolute/path/store.sqlite")
    path = url[len(prefix) :]
    if path.endswith("/"):
        raise BackendURLInvalid(f"invalid sqlitefile URL {url!r}: it must name a file, not a directory")
    return SQLiteFileBackend(path)


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=(SCHEME,),
            factory=backend_from_url,
            capabilities=SQLiteFileBackend.capabilities,
            description="example: a whole store in one SQLite file",
        )
    ]
