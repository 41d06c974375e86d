"""Fixtures every test module may use."""

import pytest
from twisted.logger import globalLogPublisher

from . import shared_servers


@pytest.fixture(scope="session", autouse=True)
def shared_servers_left_alone():
    """Fails the run if a test restarted, reloaded or stopped the machine's databases."""
    before = shared_servers.started()
    yield
    changed = shared_servers.disturbed(before, shared_servers.started())
    assert not changed, f"the shared database servers were disturbed: {changed}"


@pytest.fixture
def log_events():
    """Every log event published while the test runs."""
    captured: list[dict] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)
