"""Descriptors of the directories a store works in, kept open between operations.

Resolving ``data/01/0123...`` below the root without following a symbolic link costs an
``openat2`` (or a walk) per operation; on a RAM-backed file system that doubled the cost of a
small store.  Most operations of a store happen in a few hundred directories (a namespace and
its first nesting level), so their descriptors are kept: a store, load, info, delete or move
then acts on one name inside a directory it holds, as cheap as the plain path calls were.

Why a kept descriptor stays safe and correct:

* It was opened beneath the root without following a link (``_beneath``), and a name inside it
  is one component used with ``O_NOFOLLOW`` or as an entry to create, rename or unlink: no
  symbolic link is ever followed through it.
* A directory removed since (by another Store or process) is dead: the kernel refuses to create
  anything in it (ENOENT) and it has no entries.  Every ENOENT from a kept descriptor is checked
  with one ``fstat`` (a dead directory has no links) and the operation is repeated with a fresh
  descriptor, so a directory removed and made again is found, never mistaken for "missing".
* A directory *moved* elsewhere keeps its descriptor; only someone with write permission on the
  destination can move it there, so nothing is reached that the mover could not reach already.
  A symbolic link, which needs no permission on its target, is what must never be followed.

Descriptors are never closed while the store is open (another thread may be using one); a
dead one is set aside and closed with the store.  The number kept is bounded (a fraction of the
process's descriptor limit); past it, directories are opened and closed per operation.
"""

import os
import resource
import threading
from typing import Callable

# at most this many, and at most this share of the descriptor limit
MAX_KEPT = 1024
LIMIT_SHARE = 4


def kept_limit() -> int:
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return MAX_KEPT
    return max(0, min(MAX_KEPT, soft // LIMIT_SHARE))


class DirectoryCache:
    """``fd, kept = cache.acquire(directory)``: a descriptor of *directory* (below the root); if
    not *kept*, the caller closes it.  ``open_directory(name) -> fd`` opens one (raising
    OSError); ``open_child(parent_fd, component, name) -> fd`` opens one component inside a held
    directory, never following a link."""

    def __init__(self, open_directory: Callable[[str], int], open_child: Callable[[int, str, str], int]):
        self._open_directory = open_directory
        self._open_child = open_child
        #: directory name -> descriptor; read it without the lock (a dict lookup is atomic)
        self.kept: dict = {}
        self._dead: list = []
        self._limit = kept_limit()
        self._lock = threading.Lock()

    def acquire(self, directory: str):
        fd = self.kept.get(directory)
        if fd is not None:
            return fd, True
        parent, _, last = directory.rpartition("/")
        parent_fd = self.kept.get(parent) if parent else None
        fd = self._open_child(parent_fd, last, directory) if parent_fd is not None else self._open_directory(directory)
        return self.adopt(directory, fd)

    def adopt(self, directory: str, fd: int):
        """Like :meth:`acquire`, for a descriptor of *directory* the caller just opened (a
        directory it made): ``(fd, kept)``, *fd* closed if one is kept already."""
        with self._lock:
            if directory in self.kept:  # another thread kept one meanwhile
                os.close(fd)
                return self.kept[directory], True
            if len(self.kept) < self._limit:
                self.kept[directory] = fd
                return fd, True
        return fd, False

    def is_dead(self, directory: str, fd: int) -> bool:
        """True (and *fd* set aside) if the kept *fd* is a directory removed since it was opened."""
        if not directory:
            return False  # the root: a removed store is the backend's own error
        try:
            dead = os.fstat(fd).st_nlink == 0
        except OSError:
            dead = True
        if dead:
            self.forget(directory)
        return dead

    def forget(self, directory: str) -> None:
        """Stop using the kept descriptor of *directory* (and of every directory below it)."""
        below = directory + "/"
        with self._lock:
            for name in [name for name in self.kept if name == directory or name.startswith(below)]:
                self._dead.append(self.kept.pop(name))

    def close(self) -> None:
        with self._lock:
            fds = list(self.kept.values()) + self._dead
            self.kept.clear()
            self._dead.clear()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
