"""The storage behind the REST server: one chain, opened once and shared by every connection.

Requests use the chain in parallel where the backend says it is thread safe, one at a time
otherwise.  ``create`` and ``destroy`` need the backend closed, so they take it exclusively (a
readers-writer scheme that prefers the writer, so that a stream of requests cannot starve it),
close it, and leave it to be opened again by the next request that needs it.  A store that does
not exist (yet) is opened lazily, by the first request that needs it.
"""

import contextlib
import logging
import threading
from typing import Any, Callable, Iterator, Optional

from borgstore.backends.errors import BackendMustBeOpen

log = logging.getLogger("borgstore.server.rest")


class SharedBackend:
    """A chain made by *factory* (unopened), opened on first use and kept open.

    ``with shared() as chain`` for the operations on items; ``with exclusive() as chain`` for
    create and destroy (the chain is closed then)."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._chain = factory()
        self._opened = False
        self._open_lock = threading.Lock()
        self._state = threading.Condition()
        self._sharers = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        thread_safe = getattr(getattr(self._chain, "capabilities", None), "thread_safe", False)
        # a backend that is not thread safe serves one request at a time
        self._operation_lock: Optional[threading.Lock] = None if thread_safe else threading.Lock()
        #: the chain has store_new (an optional operation exists on a link only where the backend has it)
        self.has_store_new = hasattr(self._chain, "store_new")

    def shared(self) -> "_SharedUse":
        """``with shared() as chain``: the opened chain, for one operation (opened now if need be)."""
        return _SharedUse(self)

    def _enter_shared(self) -> Any:
        with self._state:
            while self._exclusive or self._exclusive_waiting:
                self._state.wait()
            self._sharers += 1
        try:
            chain = self._opened_chain()
            if self._operation_lock is not None:
                self._operation_lock.acquire()
        except BaseException:
            self._exit_shared(locked=False)
            raise
        return chain

    def _exit_shared(self, locked: bool = True) -> None:
        if locked and self._operation_lock is not None:
            self._operation_lock.release()
        with self._state:
            self._sharers -= 1
            if not self._sharers and self._exclusive_waiting:
                self._state.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        """The closed chain, while no other request uses it."""
        self._take_exclusive(None)
        try:
            self._close_chain()
            yield self._chain
        finally:
            with self._state:
                self._exclusive = False
                self._state.notify_all()

    def _take_exclusive(self, timeout: Optional[float]) -> bool:
        with self._state:
            self._exclusive_waiting += 1
            try:
                if not self._state.wait_for(lambda: not (self._exclusive or self._sharers), timeout):
                    return False
            finally:
                self._exclusive_waiting -= 1
                if timeout is not None:
                    self._state.notify_all()  # sharers held back by our waiting may go on
            self._exclusive = True
            return True

    def _opened_chain(self) -> Any:
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self._chain.open()
                    self._opened = True
        return self._chain

    def _close_chain(self) -> None:
        """Close the chain if open; a fresh one replaces it (a middleware's state starts anew)."""
        if not self._opened:
            return
        self._opened = False
        try:
            self._chain.close()
        except BackendMustBeOpen:
            pass
        finally:
            self._chain = self._factory()

    def flush(self) -> None:
        """Make what was stored durable (if the store is open); errors are logged."""
        if not self._opened:
            return
        try:
            with self.shared() as chain:
                chain.flush()
        except Exception as exc:  # noqa: BLE001 (a failed flush must not take the server down)
            log.warning("flushing the store failed: %s", type(exc).__name__)

    def close(self, timeout: Optional[float] = None) -> None:
        """Close the chain when the server stops, once the requests using it are done; after
        *timeout* seconds without that, leave it open (the process is about to end anyway)."""
        if not self._take_exclusive(timeout):
            log.warning("the store is still in use after %s s: not closed", timeout)
            return
        try:
            self._close_chain()
        finally:
            with self._state:
                self._exclusive = False
                self._state.notify_all()


class _SharedUse:
    """The context manager of SharedBackend.shared() (a class: cheaper than a generator's)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: SharedBackend):
        self._backend = backend

    def __enter__(self) -> Any:
        return self._backend._enter_shared()

    def __exit__(self, *exc_info: object) -> None:
        self._backend._exit_shared()
