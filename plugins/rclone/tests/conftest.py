import os

import pytest

from borgstore.backends.errors import BackendNotInstalled


def skip_or_fail(reason: str):
    """Skip a test that cannot run here, but fail it in CI, where everything must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def skip_or_fail_ci():
    """skip_or_fail, for test modules (conftest is not importable under --import-mode=importlib)."""
    return skip_or_fail


@pytest.fixture(scope="session")
def rclone_binary():
    from borgstore_backend_rclone._daemon import check_version, find_binary

    try:
        binary = find_binary()
        check_version(binary)
    except BackendNotInstalled as exc:
        skip_or_fail(f"no usable rclone: {exc}")
    return binary


@pytest.fixture
def store_path(tmp_path):
    """A store location on the tests' disk; rclone sees it as a local remote."""
    return tmp_path / "store"


@pytest.fixture
def make_backend(rclone_binary, store_path):
    """Build unopened rclone backends; every one is closed at the end of the test."""
    from borgstore_backend_rclone import rclone_backend_from_url

    made = []

    def make(url=None, **options):
        backend = rclone_backend_from_url(url or f"rclone:{store_path}", **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        if backend.opened:
            backend.close()


#: The retry layer of the tests that kill or stop rclone: the default policy of the Store's chain,
#: without the circuit breaker (a test that makes every try fail on purpose would open it for the
#: test's next steps).
RETRY = {"breaker_failures": 0}


@pytest.fixture
def retrying():
    """The function that wraps an (open) backend in the retry middleware, as a Store's default
    chain does for rclone (its capabilities declare transient_errors)."""
    from borgstore import build_chain

    return lambda backend, **options: build_chain(backend, [("retry", {**RETRY, **options})])


@pytest.fixture
def backend(make_backend, store_path):
    """An open rclone backend on a new, empty local directory."""
    b = make_backend()
    b.create()
    b.open()
    return b


def child_processes() -> dict:
    """{pid: command name} of every child of this process that still exists (zombies included)."""
    mine = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may contain blanks, so split after the last ")"
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == mine:
            found[int(entry)] = stat[stat.index("(") + 1 : stat.rindex(")")]
    return found


def rclone_children() -> list:
    """Process ids of this process's rclone children that still exist (zombies included)."""
    return [pid for pid, comm in child_processes().items() if comm.startswith("rclone")]


def process_exists(pid: int) -> bool:
    """True if *pid* is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def children():
    """The function that lists this process's rclone children."""
    return rclone_children


@pytest.fixture
def child_pids():
    """The function that lists the pids of all of this process's children."""
    return lambda: set(child_processes())


@pytest.fixture
def alive():
    """The function that tells whether a process id is a live process."""
    return process_exists


@pytest.fixture
def rc_methods(monkeypatch):
    """The HTTP methods of every request sent to rclone from now on, in order."""
    from borgstore_backend_rclone._daemon import RcDaemon

    methods = []
    original = RcDaemon._pipeline  # what every request passes, those of rclone jobs too

    def recording(self, requests, mutation):
        methods.extend(method for method, *_ in requests)
        return original(self, requests, mutation)

    monkeypatch.setattr(RcDaemon, "_pipeline", recording)
    return methods
