"""pytest plugin of the conformance kit (entry point ``pytest11``).

``--borgstore-url URL`` points the kit's live tests (``pytest --pyargs borgstore.testing``) at a
store; each test runs at its own scratch location below URL, removed afterwards.
``--borgstore-profile quick|deep|faults`` picks the Hypothesis budget for every kit test of the run
(faults: the state machines run under injected faults, through the retry middleware).
"""

import os

import pytest

from ._settings import PROFILE_VARIABLE, PROFILES


def pytest_addoption(parser):
    group = parser.getgroup("borgstore", "borgstore conformance kit")
    group.addoption(
        "--borgstore-url",
        action="store",
        default=None,
        metavar="URL",
        help="run the kit's live tests (pytest --pyargs borgstore.testing) against scratch locations below URL",
    )
    group.addoption(
        "--borgstore-profile",
        action="store",
        default=None,
        choices=sorted(PROFILES),
        help=f"Hypothesis budget of the conformance kit (default: ${PROFILE_VARIABLE} or quick)",
    )


def pytest_configure(config):
    profile = config.getoption("borgstore_profile", None)
    if profile:
        os.environ[PROFILE_VARIABLE] = profile


@pytest.fixture
def borgstore_url(request):
    """The URL given with --borgstore-url (the test is skipped without one)."""
    url = request.config.getoption("borgstore_url")
    if not url:
        pytest.skip("no store to check: give --borgstore-url URL")
    return url


@pytest.fixture
def borgstore_scratch_url(borgstore_url):
    """A unique location below --borgstore-url that does not exist yet; removed after the test
    (--borgstore-url itself where its backend serves one store per URL, if no store is there)."""
    from ._live import needs_empty_url, remove_scratch, scratch_url

    refused = needs_empty_url(borgstore_url)
    if refused:
        pytest.fail(refused)
    url = scratch_url(borgstore_url)
    yield url
    remove_scratch(url)
