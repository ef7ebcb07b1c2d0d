"""How the server shares its one storage chain between requests: in parallel where the backend is
thread safe, one at a time where not, exclusively (and closed) for create and destroy, opened
lazily and kept open."""

import threading
import time

import pytest
from borgstore_backend_rest._server_backend import SharedBackend

from borgstore.backends._base import Capabilities
from borgstore.backends.errors import BackendDoesNotExist


class FakeChain:
    """A chain that records how many operations run at once and how often it is opened."""

    def __init__(self, thread_safe: bool, exists: bool = True):
        self.capabilities = Capabilities(thread_safe=thread_safe)
        self.exists = exists
        self.opens = 0
        self.closes = 0
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def open(self):
        """Open, or BackendDoesNotExist like a store not created yet."""
        if not self.exists:
            raise BackendDoesNotExist("no store")
        self.opens += 1

    def close(self):
        """Count the close."""
        self.closes += 1

    def operation(self):
        """Take a while, noting how many run at the same time."""
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1


def run_in_threads(shared: SharedBackend, count: int = 6) -> None:
    """*count* threads, each doing one operation through *shared*."""

    def work():
        with shared.shared() as chain:
            chain.operation()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("thread_safe, parallel", [(True, True), (False, False)])
def test_operations_run_in_parallel_only_on_a_thread_safe_backend(thread_safe, parallel):
    """A thread-safe backend serves requests at once; another one, one at a time."""
    chain = FakeChain(thread_safe)
    shared = SharedBackend(lambda: chain)
    run_in_threads(shared)
    assert (chain.most_at_once > 1) is parallel
    assert chain.most_at_once >= 1
    assert chain.opens == 1  # opened once, kept open


def test_exclusive_waits_for_the_operations_and_closes():
    """create/destroy wait until no operation runs, get the chain closed, and the next
    operation opens a fresh chain."""
    chains = []

    def factory():
        chains.append(FakeChain(True))
        return chains[-1]

    shared = SharedBackend(factory)
    first_started = threading.Event()

    def slow():
        with shared.shared() as chain:
            first_started.set()
            time.sleep(0.3)
            chain.operation()

    thread = threading.Thread(target=slow)
    thread.start()
    first_started.wait()
    started = time.monotonic()
    with shared.exclusive():
        waited = time.monotonic() - started
        assert chains[0].running == 0
        assert chains[0].closes == 1
    thread.join()
    assert waited >= 0.2
    with shared.shared():
        pass
    assert chains[-1].opens == 1 and chains[-1] is not chains[0]


def test_a_missing_store_is_opened_lazily():
    """A store that does not exist raises BackendDoesNotExist on use (a 410), and is opened by
    the first use after it came to exist."""
    chain = FakeChain(True, exists=False)
    shared = SharedBackend(lambda: chain)
    with pytest.raises(BackendDoesNotExist), shared.shared():
        pass
    chain.exists = True
    with shared.shared():
        pass
    assert chain.opens == 1
    shared.close(timeout=1)
    assert chain.closes == 1


def test_close_gives_up_after_its_timeout():
    """A stopping server does not hang on an operation that never ends."""
    chain = FakeChain(True)
    shared = SharedBackend(lambda: chain)
    use = shared.shared()
    use.__enter__()
    started = time.monotonic()
    shared.close(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2
    assert chain.closes == 0
    use.__exit__(None, None, None)
