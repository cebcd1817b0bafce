"""Suite-wide fixtures."""

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_left_unconfigured():
    """Tests that capture or configure structlog must not change how later tests' library logs are routed
    (structlog.testing.capture_logs leaves structlog marked as configured)."""
    yield
    structlog.reset_defaults()
