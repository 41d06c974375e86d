"""Fixtures every test module may use."""

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture
def log_events():
    """Every log event published while the test runs."""
    captured: list[dict] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)
