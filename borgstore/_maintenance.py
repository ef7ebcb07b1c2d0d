"""Maintenance of a store: the clean-up of stale temp items (``Store.remove_stale_temps``).

A write goes to a ``.tmp`` item first and is renamed into place when complete, so a writer that
dies (a crash, SIGKILL, a lost machine) leaves its temp behind, and nothing else ever removes it.
Such a temp is told from one being written by its age: a live writer's temp is young, its mtime
moves while it is written.  The age is this machine's clock minus the storage's mtime (a remote
server's clock), so a skew between them shifts it; the default of an hour is far above any sane
skew and any single write.  Removing the temp of a live but stalled writer makes that writer's
final rename fail: the write is reported as failed, never acknowledged and lost.
"""

import math
import time
from typing import TYPE_CHECKING, Callable, Optional

from .backends.errors import BackendError, ObjectNotFound, PermissionDenied
from .constants import TMP_SUFFIX

if TYPE_CHECKING:
    from .backends._base import ItemInfo
    from .middleware._base import Link


def check_age(older_than: float) -> None:
    """Raise ValueError unless *older_than* is a finite number of seconds >= 0."""
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not 0 <= older_than < math.inf:
        raise ValueError(f"older_than must be a finite number of seconds >= 0, not {older_than!r}")


def is_stale_temp(info: "ItemInfo", cutoff: float) -> bool:
    """True for a listed temp item last changed at or before *cutoff* (a POSIX time).  An unknown
    mtime (0) is never stale: its age cannot be told, and a live writer's temp must not be taken."""
    return info.name.endswith(TMP_SUFFIX) and not info.directory and 0 < info.mtime <= cutoff


def remove_stale_temps(chain: "Link", older_than: float, on_removed: Optional[Callable[[], None]] = None) -> int:
    """Delete, through *chain*, every temp item below the root older than *older_than* seconds;
    return how many were deleted, calling *on_removed()* after each.

    A temp gone meanwhile (renamed into place by its writer, or removed by another cleaner) is
    skipped.  A deletion the permissions refuse does not stop the others: ``PermissionDenied``
    names the refused ones afterwards, with the count removed as its ``removed`` attribute.  Any
    other error stops the clean-up at once (what was removed until then stays counted)."""
    check_age(older_than)
    list_temp = getattr(chain, "list_temp", None)
    if list_temp is None:
        raise BackendError(
            f"remove_stale_temps: the {type(chain.backend).__name__} backend cannot list its temp items (no list_temp)"
        )
    cutoff = time.time() - older_than
    try:
        # collected before any deletion: a listing changed while it is read may skip items
        stale = [info.name for info in list_temp("") if is_stale_temp(info, cutoff)]
    except PermissionDenied as exc:
        exc.removed = 0  # the permissions do not let it list the store: nothing was touched
        raise
    removed = 0
    refused: list[PermissionDenied] = []
    for name in stale:
        try:
            chain.delete(name)
        except ObjectNotFound:
            continue
        except PermissionDenied as exc:
            refused.append(exc)
            continue
        removed += 1
        if on_removed is not None:
            on_removed()
    if refused:
        error = PermissionDenied(
            f"remove_stale_temps: removed {removed} stale temp item(s); the permissions refused "
            f"{len(refused)}, the first: {refused[0]}"
        )
        error.removed = removed
        raise error from refused[0]
    return removed
