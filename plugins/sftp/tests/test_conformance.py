"""The conformance kit (borgstore.testing) against the real sshd, in both URL forms."""

import pytest

from borgstore.testing import BackendTests


class TestSftpConformance(BackendTests):
    @pytest.fixture
    def backend(self, location):
        backend = location.backend()
        yield backend
        backend.close()
