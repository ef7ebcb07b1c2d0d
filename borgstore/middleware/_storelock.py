"""A lock kept in the store itself, for a read-modify-write of a small shared item (the quota's
``quota.hid``) by sessions in different processes or on different machines.

Taking the lock is a ``store_new`` of the lock item: of sessions racing for it exactly one
succeeds, where the backend declares ``Capabilities(store_new=True)`` (an exclusive create, a
rename that refuses an existing target, a conditional PUT).  The item holds a token new at every
acquisition; releasing deletes it, after checking it still holds this session's token.

A session that dies while holding the lock leaves the item behind.  A waiter breaks it once it
has seen the same token there for ``stale`` seconds, timed with its own monotonic clock (no
comparison of clocks between machines).  Holders keep it for two or three storage calls, so a
token that stays unchanged for that long belongs to a dead session, unless its holder was paused
(a suspended process, a frozen connection) for longer than ``stale``: then two sessions may hold
the lock at once and one read-modify-write may overwrite the other's.
"""

import logging
import os
import random
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Optional

from ..backends.errors import (
    BackendError,
    BackendUnavailable,
    ObjectAlreadyExists,
    ObjectNotFound,
    may_have_been_applied,
)

if TYPE_CHECKING:
    from ._base import Link

logger = logging.getLogger(__name__)

#: seconds a waiter keeps trying for a lock that live sessions keep taking, beyond ``stale``
PATIENCE = 60.0

_jitter = random.SystemRandom()  # not the random module's state: an application may seed it


class StoreLock:
    """``with StoreLock(link, name, stale):`` holds the lock item *name* in the store that *link*
    leads to (a chain link with ``store_new``, ``load`` and ``delete``)."""

    def __init__(self, link: "Link", name: str, stale: float):
        self.link = link
        self.name = name
        self.stale = stale
        self._token: Optional[bytes] = None

    def __enter__(self) -> "StoreLock":
        self._token = self._acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> Literal[False]:
        token, self._token = self._token, None
        self._release(token)
        return False

    def _acquire(self) -> bytes:
        token = f"{os.getpid()} {uuid.uuid4().hex}".encode("ascii")
        started = time.monotonic()
        seen: dict[bytes, float] = {}  # a holder's token -> when this waiter first saw it
        pause = 0.0005
        while True:
            try:
                self.link.store_new(self.name, token)
                return token
            except ObjectAlreadyExists:
                pass
            except BackendError as exc:
                # a lost reply: the lock may be this session's already, and nobody else would free it
                if may_have_been_applied(exc) and self._holds(token):
                    return token
                raise
            try:
                holder = self.link.load(self.name)
            except ObjectNotFound:
                continue  # released meanwhile
            now = time.monotonic()
            if now - seen.setdefault(holder, now) >= self.stale:
                self._break(holder)
                continue
            if now - started >= self.stale + PATIENCE:
                raise BackendUnavailable(
                    f"the lock {self.name!r} in the store stayed taken by other sessions for {now - started:.0f} s"
                )
            time.sleep(pause * _jitter.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.05)

    def _holds(self, token: Optional[bytes]) -> bool:
        try:
            return self.link.load(self.name) == token
        except ObjectNotFound:
            return False

    def _break(self, holder: bytes) -> None:
        logger.warning(
            "%s held by %r unchanged for %.1f s: its session is gone, removing it",
            self.name,
            holder.decode("ascii", "replace"),
            self.stale,
        )
        try:
            # only the item judged stale: a new holder's token differs
            if self.link.load(self.name) == holder:
                self.link.delete(self.name)
        except ObjectNotFound:
            pass

    def _release(self, token: Optional[bytes]) -> None:
        try:
            if self._holds(token):
                self.link.delete(self.name)
                return
        except ObjectNotFound:
            pass
        logger.warning(
            "%s was taken from this session while it held it (it paused longer than %.1f s): "
            "another session's update may have been overwritten",
            self.name,
            self.stale,
        )
