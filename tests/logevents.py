"""Capturing log events in tests, and the request log lines among them."""

import pytest
from twisted.logger import formatEvent, globalLogPublisher


@pytest.fixture
def events():
    captured: list[dict] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


def request_lines(events: list[dict]) -> list[str]:
    """The text of the one event per request (not the errors logged beside it)."""
    return [
        formatEvent(e)
        for e in events
        if e.get("log_namespace") == "nanomdm_tw.request" and "log_failure" not in e
    ]
