"""The request log lines among captured log events (conftest.py's ``log_events``)."""

from twisted.logger import formatEvent


def request_lines(events: list[dict]) -> list[str]:
    """The text of the one event per request (not the errors logged beside it)."""
    return [
        formatEvent(e)
        for e in events
        if e.get("log_namespace") == "nanomdm_tw.request" and "log_failure" not in e
    ]
