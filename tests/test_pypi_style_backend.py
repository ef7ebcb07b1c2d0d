"""A backend written for the PyPI borgstore (only its abstract methods) works as Store(backend=...)."""

import threading
import time

import pytest

from borgstore.backends._base import BackendBase, ItemInfo
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustBeOpen,
    ObjectNotFound,
)
from borgstore.store import Store


class DictBackend(BackendBase):
    """Flat dict of full names, with directories as a set: the simplest PyPI-style backend."""

    def __init__(self):
        self.items = None
        self.dirs = None
        self.opened = False
        self.active = 0
        self.max_active = 0

    def _enter(self):
        if not self.opened:
            raise BackendMustBeOpen()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        time.sleep(0.0001)  # widen the window in which overlapping calls would show

    def _leave(self):
        self.active -= 1

    def create(self):
        if self.items:
            raise BackendAlreadyExists()
        self.items, self.dirs = {}, {""}

    def destroy(self):
        if self.items is None:
            raise BackendDoesNotExist()
        self.items = self.dirs = None

    def open(self):
        if self.items is None:
            raise BackendDoesNotExist()
        self.opened = True

    def close(self):
        self.opened = False

    def _add_parents(self, name):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dirs.add("/".join(parts[:i]))

    def mkdir(self, name):
        self._add_parents(name + "/x")

    def rmdir(self, name):
        self.dirs.discard(name)

    def info(self, name):
        self._enter()
        try:
            if name in self.items:
                return ItemInfo(name, True, len(self.items[name]), False)
            return ItemInfo(name, name in self.dirs, 0, name in self.dirs)
        finally:
            self._leave()

    def load(self, name, *, size=None, offset=0):
        self._enter()
        try:
            if name not in self.items:
                raise ObjectNotFound(name)
            data = self.items[name]
            offset = max(len(data) + offset, 0) if offset < 0 else offset
            return data[offset : None if size is None else offset + size]
        finally:
            self._leave()

    def store(self, name, value):
        self._enter()
        try:
            self._add_parents(name)
            self.items[name] = bytes(value)
        finally:
            self._leave()

    def delete(self, name):
        self._enter()
        try:
            if self.items.pop(name, None) is None:
                raise ObjectNotFound(name)
        finally:
            self._leave()

    def move(self, curr_name, new_name):
        self._enter()
        try:
            if curr_name not in self.items:
                raise ObjectNotFound(curr_name)
            self._add_parents(new_name)
            self.items[new_name] = self.items.pop(curr_name)
        finally:
            self._leave()

    def list(self, name):
        if name not in self.dirs:
            raise ObjectNotFound(name)
        prefix = name + "/" if name else ""
        entries = {}
        for full in list(self.items) + list(self.dirs):
            if full.startswith(prefix) and full != name:
                rest = full[len(prefix) :]
                child = rest.split("/")[0]
                is_dir = "/" in rest or full in self.dirs
                entries[child] = ItemInfo(child, True, 0 if is_dir else len(self.items[full]), is_dir)
        for child in sorted(entries):
            yield entries[child]


@pytest.fixture
def store():
    s = Store(backend=DictBackend(), config={"data/": {"levels": [1]}})
    s.create()
    with s:
        yield s


def test_operations_through_a_pypi_style_backend(store):
    """Nesting, soft deletion, hash, gather and stats work with a backend that has only the basics."""
    key = "ab" + "0" * 30
    store.store("data/" + key, b"hello")
    assert store.backend.items == {f"data/ab/{key}": b"hello"}
    assert store.load("data/" + key, offset=1, size=3) == b"ell"
    assert [i.name for i in store.list("data")] == [key]
    store.move("data/" + key, delete=True)
    assert store.backend.items == {f"data/ab/{key}.del": b"hello"}
    assert [i.name for i in store.list("data", deleted=True)] == [key]
    store.move("data/" + key, undelete=True)
    assert len(store.hash("data/" + key)) == 64
    assert store.gather([(key, 0, 2)], namespace="data") == b"he"
    assert store.quota() == {"limit": -1, "usage": -1}
    assert store.stats["store_calls"] == 1


def test_calls_are_serialized_for_backends_not_declared_thread_safe(store):
    """The Store runs one call at a time on a backend that does not declare thread safety."""
    def work(t):
        for i in range(30):
            key = f"{t:02x}{i:030x}"
            store.store("data/" + key, b"x")
            store.load("data/" + key)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.backend.max_active == 1
    assert len(list(store.list("data"))) == 120
