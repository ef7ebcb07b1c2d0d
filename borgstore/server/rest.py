"""``from borgstore.server.rest import serve, main`` (as BorgBackup does with the PyPI borgstore):
the REST server of the ``borgstore-backend-rest`` distribution, re-exported."""

try:
    from borgstore_backend_rest.server import PERMISSION_SHORTCUTS, main, resolve_permissions, serve
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "the borgstore REST server is in the borgstore-backend-rest distribution, which is not installed: "
        "pip install borgstore-backend-rest (from a clone of borgstore: pip install plugins/rest)"
    ) from exc

__all__ = ["PERMISSION_SHORTCUTS", "main", "resolve_permissions", "serve"]
