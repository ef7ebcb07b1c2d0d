import pytest

from borgstore_backend_posixfs import PosixFSBackend


@pytest.fixture
def root(tmp_path):
    """The path of a store that does not exist yet."""
    return str(tmp_path / "store")


@pytest.fixture
def make_backend(root):
    """Create and open a backend on *root* with the given options; closed again after the test."""
    opened = []

    def make(**options):
        backend = PosixFSBackend(root, **options)
        backend.create()
        backend.open()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        if backend.opened:
            backend.close()


@pytest.fixture
def backend(make_backend):
    """An open backend with the default options."""
    return make_backend()
