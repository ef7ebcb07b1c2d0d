"""Store.list() on a backend with list_tree: one paginated stream instead of a call per directory."""

import hashlib
import uuid

import pytest

from borgstore.backends.memory import PAGE_SIZE, MemoryBackend
from borgstore.store import Store

CONFIG = {"data/": {"levels": [2]}, "flat/": {"levels": [0]}, "conv/": {"levels": [0, 1]}, "": {"levels": [0]}}


def key(i):
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def location():
    name = f"listing-{uuid.uuid4().hex}"
    store = Store(f"memory:{name}", config=CONFIG)
    store.create()
    with store:
        for i in range(2 * PAGE_SIZE + 5):
            store.store(f"data/{key(i)}", bytes(i % 7))
        for i in range(30):
            store.store(f"conv/{key(i)}", b"c" * i)
            store.store(f"flat/a-{i}", b"f")
            store.store(f"flat/a.{i}", b"g")
        store.move("conv/" + key(3), change_level=True)
        for i in range(0, 30, 3):
            store.move(f"data/{key(i)}", delete=True)
            store.move(f"flat/a-{i}", delete=True)
        store.store("rootitem", b"r")
    return name


def listing(name, list_tree, namespace, deleted):
    backend = MemoryBackend(name, list_tree=list_tree)
    with Store(backend=backend, config=CONFIG) as store:
        items = [(i.name, i.size, i.directory) for i in store.list(namespace, deleted=deleted)]
    return items, backend


@pytest.mark.parametrize("namespace", ["data", "flat", "conv", ""])
@pytest.mark.parametrize("deleted", [False, True])
def test_tree_listing_and_directory_walk_agree(location, namespace, deleted):
    """Both ways list the same items, sizes and order, live or soft-deleted."""
    by_tree, _ = listing(location, True, namespace, deleted)
    by_walk, _ = listing(location, False, namespace, deleted)
    assert by_tree == by_walk
    assert [name for name, _, _ in by_tree] == sorted(name for name, _, _ in by_tree)
    assert not any(name.endswith((".del", ".tmp")) for name, _, _ in by_tree)


def test_a_nested_namespace_costs_one_call_per_page(location):
    """2,005 items at level 2: 1 + items/PAGE_SIZE calls with list_tree, hundreds without."""
    items, backend = listing(location, True, "data", False)
    assert len(items) == 2 * PAGE_SIZE + 5 - 10
    assert backend.pages_listed <= 1 + (2 * PAGE_SIZE + 5) // PAGE_SIZE
