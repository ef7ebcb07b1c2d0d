"""Middleware: links of a store's chain that add behaviour around a backend.

Each middleware lives in its own module here and is registered as a plugin under its name:

* ``stats``: counts calls, time and volume per operation (``Store.stats``).
* ``softdelete``: soft deletion by renaming items to ``<name>.del``.
* ``emulate``: makes a fast backend as slow as a given latency and bandwidth.
* ``permissions``: grants list/read/write/overwrite/delete per name prefix.
* ``quota``: limits the bytes a store may hold.
"""

from ._base import OPERATIONS, BackendAdapter, Link, Middleware

__all__ = ["OPERATIONS", "BackendAdapter", "Link", "Middleware"]
