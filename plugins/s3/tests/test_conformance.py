"""The core's conformance kit (borgstore.testing) against moto's S3 server (or the endpoint
BORGSTORE_TEST_S3_URL names), and its state machines under the faults profile."""

import pytest
from borgstore_backend_s3 import s3_backend_from_url

from borgstore.testing import (
    BackendTests,
    StoreTests,
    kit_settings,
    run_backend_machine_under_faults,
    run_store_machine_under_faults,
)


class TestS3Conformance(BackendTests):
    @pytest.fixture
    def backend(self, any_s3_url):
        return s3_backend_from_url(any_s3_url())


class TestS3StoreConformance(StoreTests):
    @pytest.fixture
    def store_location(self, any_s3_url):
        return any_s3_url()


class TestB2Conformance(BackendTests):
    """b2: is the same backend without conditional create (B2 may ignore If-None-Match)."""

    @pytest.fixture
    def backend(self, s3_url):
        return s3_backend_from_url(s3_url("b2"))


def test_state_machines_under_faults(s3_url):
    """The backend and Store state machines pass with the backend below the retry middleware
    and injected faults."""
    settings = kit_settings("faults", max_examples=10, stateful_step_count=20)
    run_backend_machine_under_faults(s3_backend_from_url(s3_url()), settings)
    store_url = s3_url()
    run_store_machine_under_faults(lambda: s3_backend_from_url(store_url), settings)
