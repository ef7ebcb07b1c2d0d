"""The keys of ``Store.stats``: every one is always there (docs/compatibility.md: the PyPI 0.7 release's keys)."""

from typing import Any

#: operations whose calls and time [s] are counted (``<op>_calls``, ``<op>_time``)
COUNTED_OPS = ("info", "load", "store", "delete", "move", "list", "gather", "hash")
#: operations whose volume [bytes] and throughput [bytes/s] are counted
VOLUME_OPS = ("load", "store", "gather")
#: what reached the backend: ``backend_<op>_calls`` ...
BACKEND_CALL_OPS = ("load", "gather", "store", "delete")
#: ... and ``backend_<op>_volume``
BACKEND_VOLUME_OPS = ("load", "gather", "store")
CACHE_COUNTERS = (
    "cache_hits",
    "cache_misses",
    "cache_errors",
    "cache_load_calls",
    "cache_store_calls",
    "cache_delete_calls",
    "cache_load_volume",
    "cache_store_volume",
)

#: the ``retry`` middleware's counters: retries made (first tries not counted), calls that gave
#: up, lost replies resolved by looking, times the circuit breaker opened, calls it refused
RETRY_COUNTERS = ("retry_attempts", "retry_giveups", "retry_resolved", "retry_breaker_opened", "retry_fast_failures")


def empty_stats() -> dict[str, Any]:
    """Every key of ``Store.stats`` with the value it has when nothing happened."""
    stats: dict[str, Any] = {}
    for op in COUNTED_OPS:
        stats[f"{op}_calls"] = 0
        stats[f"{op}_time"] = 0.0
    for op in VOLUME_OPS:
        stats[f"{op}_volume"] = 0
        stats[f"{op}_throughput"] = 0
    for op in BACKEND_CALL_OPS:
        stats[f"backend_{op}_calls"] = 0
    for op in BACKEND_VOLUME_OPS:
        stats[f"backend_{op}_volume"] = 0
    stats.update(dict.fromkeys(CACHE_COUNTERS, 0))
    stats["cache_hit_ratio"] = 0.0
    stats["cache_disabled"] = False
    stats.update(dict.fromkeys(RETRY_COUNTERS, 0))
    stats["stale_temps_removed"] = 0  # by Store.remove_stale_temps(), since the Store was made
    return stats
