"""Failures of a real S3 server, through a proxy that injects them or by killing the server:
each maps onto the core's error classes, and the default chain's retry rides out the temporary ones."""

import threading
import time

import pytest
from borgstore_backend_s3 import s3_backend_from_url
from borgstore_backend_s3.testserver import FaultProxy

from borgstore.backends.errors import (
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.store import Store

from .conftest import BUCKET

SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
DENIED = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
INTERNAL = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"


class FailFirst:
    """A proxy hook failing the first *count* requests that *match* with *action*."""

    def __init__(self, count, action, match=lambda r: True):
        self.left, self.action, self.match = count, action, match
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            if self.left and self.match(request):
                self.left -= 1
                return self.action
        return None


@pytest.fixture
def proxied(moto):
    proxies = []

    def make(path):
        proxies.append(FaultProxy(moto.port))
        backend = s3_backend_from_url(proxies[-1].url(BUCKET, path), timeout=2)
        backend.create()
        return proxies[-1], backend

    yield make
    for p in proxies:
        p.close()


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (503, SLOW_DOWN, BackendUnavailable),
        (500, INTERNAL, BackendUnavailable),
        (429, b"", BackendUnavailable),
        (403, DENIED, PermissionDenied),
    ],
)
def test_error_answers_map_onto_the_core_classes(proxied, status, body, expected):
    """Throttling, 5xx and 403 answers raise the core's classes, and the item keeps its value."""
    proxy, backend = proxied(f"answers-{status}")
    with backend:
        backend.store("item", b"old")
        proxy.hook = FailFirst(1, ("answer", status, body))
        with pytest.raises(expected) as raised:
            backend.store("item", b"new")
        assert raised.value.temporary == (expected is BackendUnavailable)
        assert not raised.value.maybe_applied
        assert backend.load("item") == b"old"


def test_throttling_and_5xx_are_ridden_out_by_the_default_chain(proxied):
    """The default chain's retry turns SlowDown and InternalError answers into success."""
    proxy, backend = proxied("ridden-out")
    url = proxy.url(BUCKET, "ridden-out")
    with Store(url, config={"data/": {"levels": [0]}}) as store:
        proxy.hook = FailFirst(2, ("answer", 503, SLOW_DOWN))
        store.store("data/item", b"value")
        proxy.hook = FailFirst(1, ("answer", 500, INTERNAL), lambda r: r.method == "GET")
        assert store.load("data/item") == b"value"
        assert store.stats["retry_attempts"] >= 3


def test_a_lost_reply_says_whether_the_request_may_have_been_done(proxied):
    """A lost reply to a PUT may have been applied; a GET never reached is not."""
    proxy, backend = proxied("lost")
    with backend:
        proxy.hook = FailFirst(1, ("lose_reply",), lambda r: r.method == "PUT")
        with pytest.raises(BackendConnectionError) as raised:
            backend.store("item", b"value")
        assert raised.value.maybe_applied and raised.value.temporary
        assert backend.load("item") == b"value"  # it was done: the answer was lost
        proxy.hook = FailFirst(1, ("drop",), lambda r: r.method == "GET")
        with pytest.raises(BackendConnectionError) as raised:
            backend.load("item")
        assert not raised.value.maybe_applied


def test_a_lost_move_is_settled_by_retry(proxied):
    """The copy is done but its answer lost: the retry layer looks instead of repeating, and the
    Store reports success with the item moved exactly once."""
    proxy, backend = proxied("lost-move")
    url = proxy.url(BUCKET, "lost-move")
    with Store(url, config={"data/": {"levels": [0]}}) as store:
        store.store("data/item", b"value")
        proxy.hook = FailFirst(1, ("lose_reply",), lambda r: "x-amz-copy-source" in r.headers)
        store.move("data/item", delete=True)
        with pytest.raises(ObjectNotFound):
            store.load("data/item")
        assert store.load("data/item", deleted=True) == b"value"


def test_a_server_that_does_not_answer_times_out(proxied):
    """A frozen server fails the call with BackendTimeout after the configured timeout."""
    proxy, backend = proxied("frozen")
    with backend:
        release = threading.Event()
        proxy.hook = lambda r: release.wait(30) and None
        started = time.monotonic()
        try:
            with pytest.raises(BackendTimeout):
                backend.load("anything")
        finally:
            release.set()
        assert time.monotonic() - started < 25  # the 2 s timeout, not the proxy's 30 s


def test_a_server_that_disappears_and_comes_back(own_moto):
    """A killed server gives temporary connection errors; the same backend works once it is back."""
    backend = s3_backend_from_url(own_moto.url(BUCKET, "gone"), timeout=5)
    backend.create()
    backend.open()
    try:
        backend.store("item", b"value")
        own_moto.kill()
        with pytest.raises(BackendConnectionError) as raised:
            backend.store("item", b"new")
        assert raised.value.temporary
        with pytest.raises(BackendConnectionError):
            backend.load("item")
        own_moto.start()  # moto keeps nothing: the restarted server has no bucket
        with pytest.raises(BackendDoesNotExist, match=BUCKET):
            backend.load("item")
        own_moto.make_bucket(BUCKET)
        backend.store("item", b"again")  # the same backend object reconnects
        assert backend.load("item") == b"again"
    finally:
        backend.close()


def test_a_missing_bucket_and_a_missing_store(moto, s3_url):
    """open() and destroy() of a missing bucket or store raise BackendDoesNotExist naming it."""
    with pytest.raises(BackendDoesNotExist, match="no-such-bucket"):
        s3_backend_from_url(moto.url("no-such-bucket", "x")).open()
    with pytest.raises(BackendDoesNotExist, match="no store"):
        s3_backend_from_url(s3_url()).open()
    with pytest.raises(BackendDoesNotExist):
        s3_backend_from_url(s3_url()).destroy()


def test_create_refuses_a_prefix_in_use(s3_url):
    """create() accepts an empty store and refuses a prefix that holds items."""
    url = s3_url()
    backend = s3_backend_from_url(url)
    backend.create()
    backend.create()  # an empty store: fine
    with backend:
        backend.store("item", b"x")
    with pytest.raises(BackendError, match="already"):
        s3_backend_from_url(url).create()
