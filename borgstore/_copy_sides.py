"""The two ends of ``borgstore copy`` (borgstore._copy): a backend's chain for each thread that
uses it, and the walk that lists every item below the root.

The walk works on backend names (``data/01/23/0123abcd.del``), below any namespace config, and
never lists a temp item; the rules are in docs/cli.md, section "copy".
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional

from . import _plugins
from ._chain import build_chain
from .backends._base import Capabilities, ItemInfo
from .backends.errors import BackendDoesNotExist, ObjectNotFound
from .constants import TMP_SUFFIX
from .middleware._base import Link


class Stopped(Exception):
    """A stop was asked for while listing."""


class Side:
    """One end of a copy: its URL, the chain the copying thread uses, and where the backend is
    not thread-safe, one more backend object per worker thread (each opened on first use)."""

    def __init__(self, url: str, role: str):
        self.url = url
        self.role = role
        self.shown = _plugins.redact_url(url)
        self._main = self._build()
        # read before open(): the adapter decides at construction whether to serialize
        self.thread_safe = bool(getattr(self._main.capabilities, "thread_safe", False))
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._opened: list[Link] = []
        self._lock = threading.Lock()

    def _build(self) -> Link:
        backend = _plugins.backend_for_url(self.url)
        # a network backend's chain retries temporary failures, as a Store's default chain does
        transient = getattr(getattr(backend, "capabilities", None), "transient_errors", False)
        return build_chain(backend, ["retry"] if transient else [], name=_plugins.url_scheme(self.url))

    @property
    def capabilities(self) -> Capabilities:
        return self._main.capabilities

    @property
    def opened(self) -> bool:
        return bool(self._opened)

    def open(self, create: bool) -> bool:
        """Open the store; if it does not exist, create it with *create* (True returned), else
        raise BackendDoesNotExist."""
        created = False
        try:
            self._main.open()
        except BackendDoesNotExist as exc:
            if not create:
                raise type(exc)(f"the {self.role} {self.shown} does not exist: {exc}") from None
            self._main.create()
            self._main.open()
            created = True
        self._opened.append(self._main)
        return created

    def link(self) -> Link:
        """The chain for the calling thread."""
        if self.thread_safe or threading.get_ident() == self._owner:
            return self._main
        link: Optional[Link] = getattr(self._local, "link", None)
        if link is None:
            link = self._build()
            link.open()
            with self._lock:
                self._opened.append(link)
            self._local.link = link
        return link

    def close(self) -> None:
        """Close every chain opened; the first error is raised after all were tried."""
        error = None
        with self._lock:
            opened, self._opened = self._opened, []
        for link in opened:
            try:
                link.close()
            except Exception as exc:  # the others still get closed
                error = error or exc
        if error is not None:
            raise error


def walk(side: Side, with_dirs: bool, stop: threading.Event, threads: int) -> tuple[dict[str, int], set[str]]:
    """``({name: size}, {directory})`` of every item (never a temp item) below the root."""
    link = side.link()
    if not with_dirs and link.capabilities.list_tree:
        items = {}
        for info in link.list_tree(""):
            if stop.is_set():
                raise Stopped
            if not info.name.endswith(TMP_SUFFIX):
                items[info.name] = info.size
        return items, set()
    return _walk_directories(side, stop, threads)


def _walk_directories(side: Side, stop: threading.Event, threads: int) -> tuple[dict[str, int], set[str]]:
    """The walk with one ``list`` per directory, level by level, the directories of a level
    listed concurrently where the backend is thread-safe (a remote store has thousands)."""
    items: dict[str, int] = {}
    dirs: set[str] = set()
    level = [""]

    def entries(directory: str) -> list[ItemInfo]:
        if stop.is_set():
            return []
        try:
            return list(side.link().list(directory))
        except ObjectNotFound:  # removed meanwhile by a writer of a live store
            return []

    pool = ThreadPoolExecutor(threads, thread_name_prefix="borgstore-copy-list") if side.thread_safe else None
    try:
        while level:
            listed = pool.map(entries, level) if pool is not None else map(entries, level)
            following = []
            for directory, infos in zip(level, listed, strict=True):
                for info in infos:
                    path = f"{directory}/{info.name}" if directory else info.name
                    if info.directory:
                        dirs.add(path)
                        following.append(path)
                    elif not path.endswith(TMP_SUFFIX):
                        items[path] = info.size
            if stop.is_set():
                raise Stopped
            level = following
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return items, dirs


def empty_leaves(dirs: set[str], items: Iterable[str]) -> set[str]:
    """The directories in *dirs* with nothing below them (mkdir makes the parents)."""
    parents = set()
    for path in list(items) + list(dirs):
        parts = path.split("/")[:-1]
        for end in range(1, len(parts) + 1):
            parents.add("/".join(parts[:end]))
    return dirs - parents
