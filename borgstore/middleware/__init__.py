"""Middleware: links of a store's chain that add behaviour around a backend.

Each middleware lives in its own module here and is registered as a plugin under its name:

* ``stats``: counts calls, time and volume per operation (``Store.stats``).
* ``emulate``: makes a fast backend as slow as a given latency and bandwidth.
* ``permissions``: grants list/read/write/overwrite/delete per name prefix.
* ``quota``: limits the bytes a store may hold.
* ``cache``: keeps copies of items in a second backend.
* ``readonly``: refuses every change before any I/O.
* ``retry``: retries temporary errors (backoff, a time budget, a circuit breaker); in the default
  chain of a backend declaring ``transient_errors``.

Every middleware speaks the backend contract on backend names; soft deletion is the Store's own
(a move to ``<name>.del`` that each layer sees as a move).
"""

from ._base import OPERATIONS, OPTIONAL_OPERATIONS, BackendAdapter, Link, Middleware
from ._optional import optional_operation

__all__ = ["OPERATIONS", "OPTIONAL_OPERATIONS", "BackendAdapter", "Link", "Middleware", "optional_operation"]
