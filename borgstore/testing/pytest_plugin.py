"""pytest plugin of the conformance kit (entry point ``pytest11``)."""


def pytest_addoption(parser):
    group = parser.getgroup("borgstore", "borgstore conformance kit")
    group.addoption("--borgstore-url", action="store", default=None, help="check the store at this URL")
