import pytest

from borgstore_backend_posixfs import PosixFSBackend, _beneath


@pytest.fixture
def root(tmp_path):
    """The path of a store that does not exist yet."""
    return str(tmp_path / "store")


@pytest.fixture(params=["openat2", "walk"])
def walk_names(request):
    """Both ways names are resolved: openat2 where the kernel has it, and the portable walk."""
    if request.param == "openat2" and _beneath._syscall is None:
        pytest.skip("openat2 cannot be called on this system")
    return request.param == "walk"


@pytest.fixture
def make_backend(root, walk_names):
    """Create and open a backend on *root* with the given options; closed again after the test."""
    opened = []

    def make(**options):
        backend = PosixFSBackend(root, **options)
        backend.walk_names = walk_names
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
