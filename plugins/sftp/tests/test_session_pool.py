"""The session pool's bookkeeping (``_pool.SessionSlots``), which both transports share: a thread
that finds every session busy opens the next one in the background and takes whichever comes
first.  The slots are driven here with sessions that are plain objects, so that the order of
events can be fixed; the transports themselves run against the real sshd in the other tests."""

import threading
import time

import pytest
from borgstore_backend_sftp import _pool

WAIT = 10.0


class Session:
    def __init__(self, number):
        self.number = number
        self.broken = False
        self.replies = {}
        self.closed = False

    def close(self):
        self.closed = True


class Slots(_pool.SessionSlots):
    """Opens sessions numbered 1, 2, ...; from the second on, each opening waits for
    ``allow_open`` and fails if ``fail_opens`` is set."""

    def __init__(self):
        super().__init__()
        self.opened = 0
        self.allow_open = threading.Event()
        self.fail_opens = False
        self.opening_started = threading.Semaphore(0)
        self.made = []

    def _open(self):
        self.opened += 1
        number = self.opened
        if number > 1:
            self.opening_started.release()
            assert self.allow_open.wait(WAIT)
            if self.fail_opens:
                raise OSError("the server refuses")
        self.made.append(Session(number))
        return self.made[-1]


def eventually(condition) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def acquire_in_thread(slots, errors=None):
    """Start a thread that acquires a session; it lands in the returned list (an exception in
    *errors*, if given)."""
    got = []

    def work():
        try:
            got.append(slots.acquire())
        except Exception as exc:
            if errors is None:
                raise
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    return thread, got


def test_a_waiting_thread_takes_a_session_given_back_before_the_new_one_is_open():
    slots = Slots()
    first = slots.acquire()
    assert first.number == 1
    thread, got = acquire_in_thread(slots)
    assert slots.opening_started.acquire(timeout=WAIT)  # the second session is being opened
    slots.release(first)
    thread.join(WAIT)
    assert got == [first]  # it did not wait for the opening
    slots.allow_open.set()
    slots.release(got[0])
    again = slots.acquire()
    also = slots.acquire()  # the session opened ahead is there for the next thread
    assert {again.number, also.number} == {1, 2}
    assert (slots.opened, slots.count) == (2, 2)


def test_an_opening_that_fails_in_the_background_leaves_the_waiters_served():
    slots = Slots()
    slots.fail_opens = True
    slots.allow_open.set()
    first = slots.acquire()
    thread, got = acquire_in_thread(slots)
    assert slots.opening_started.acquire(timeout=WAIT)
    # the failure has been accounted for: one session counted, a pause set
    assert eventually(lambda: slots.count == 1)
    assert not got
    slots.release(first)
    thread.join(WAIT)
    assert got == [first]
    assert slots.opened == 2  # during the pause nobody opened another one ahead


def test_the_first_session_is_opened_by_its_caller_and_its_failure_reaches_it():
    class Refusing(_pool.SessionSlots):
        def _open(self):
            raise OSError("no route to host")

    slots = Refusing()
    with pytest.raises(OSError, match="no route to host"):
        slots.acquire()
    assert slots.count == 0


def test_once_every_session_is_gone_a_waiter_opens_one_itself_and_sees_the_failure():
    slots = Slots()
    slots.fail_opens = True
    slots.allow_open.set()
    first = slots.acquire()
    errors = []
    thread, _ = acquire_in_thread(slots, errors)
    assert slots.opening_started.acquire(timeout=WAIT)
    first.broken = True
    slots.release(first)  # discarded: no session is left
    thread.join(WAIT)
    assert [str(exc) for exc in errors] == ["the server refuses"]
    assert first.closed and slots.count == 0


def test_a_session_opened_ahead_after_the_connection_closed_is_closed():
    slots = Slots()
    slots.acquire()
    errors = []
    thread, _ = acquire_in_thread(slots, errors)
    assert slots.opening_started.acquire(timeout=WAIT)
    openers = [t for t in threading.enumerate() if t.name == "borgstore-sftp-open"]
    with slots.ready:
        slots.dead = True
        slots._wake_all()
    thread.join(WAIT)
    assert [type(exc).__name__ for exc in errors] == ["ConnectionLost"]
    slots.allow_open.set()
    for opener in openers:
        opener.join(WAIT)
    assert [session.closed for session in slots.made] == [False, True]
    assert slots.idle == []


def test_waiting_threads_are_served_in_the_order_they_came_before_the_thread_giving_back():
    slots = Slots()  # one session; the second one's opening never finishes in this test
    first = slots.acquire()
    waiters = []
    for _ in range(3):
        waiters.append(acquire_in_thread(slots))
        assert eventually(lambda: len(slots._waiting) == len(waiters))
    slots.release(first)
    # the giver comes back at once for its next operation: it queues behind the three
    giver = acquire_in_thread(slots)
    assert eventually(lambda: len(slots._waiting) == 3)  # the first waiter has the session
    served = []
    for number, (thread, got) in enumerate(waiters, 1):
        thread.join(WAIT)
        assert got == [first] and not giver[1], f"waiter {number} was not served next"
        served.append(number)
        slots.release(got[0])
    giver[0].join(WAIT)
    assert served == [1, 2, 3] and giver[1] == [first]
    slots.allow_open.set()
