"""borgstore: a key/value store framework with pluggable backends, nesting and middleware.

The public API is what this module exports, plus the import paths docs/compatibility.md lists
(``borgstore.store``, ``borgstore.backends.errors``, ``borgstore.constants``,
``borgstore.backends._base``).
"""

__version__ = "1.0.0.dev0"

from ._plugins import (  # noqa: E402
    BackendSpec,
    LoadFailure,
    MiddlewareSpec,
    NestingSpec,
    hookimpl,
    load_failures,
    plugin_manager,
    redact_url,
)
from .backends._base import BackendBase, Capabilities, ItemInfo  # noqa: E402
from .middleware import Link, Middleware  # noqa: E402
from .nesting import NestingStrategy  # noqa: E402
from .store import Store, build_chain, default_middleware, get_backend  # noqa: E402

version = __version__

__all__ = [
    "BackendBase",
    "BackendSpec",
    "Capabilities",
    "ItemInfo",
    "Link",
    "LoadFailure",
    "Middleware",
    "MiddlewareSpec",
    "NestingSpec",
    "NestingStrategy",
    "Store",
    "__version__",
    "build_chain",
    "default_middleware",
    "get_backend",
    "hookimpl",
    "load_failures",
    "plugin_manager",
    "redact_url",
]
