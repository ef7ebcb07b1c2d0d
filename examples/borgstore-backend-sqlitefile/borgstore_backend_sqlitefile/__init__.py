"""borgstore backend ``sqlitefile:``: a whole store in one SQLite file.

The entry point names this module: it only declares the backend.  The backend's own module is
imported when a ``sqlitefile:`` URL is first used, not when borgstore starts.
"""

from borgstore import BackendSpec, Capabilities, hookimpl


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("sqlitefile",),
            factory="borgstore_backend_sqlitefile._backend:backend_from_url",
            options=(),  # no options: the core refuses any with a ValueError naming it
            capabilities=Capabilities(needs_mkdir=False, list_tree=True),  # shown by `plugins`
            description="example: a whole store in one SQLite file",
        )
    ]
