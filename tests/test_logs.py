"""Our loggers and text observer: the lines twistd would write, debug only with --debug."""

import io

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher, textFileLogObserver
from twisted.python.failure import Failure

from nanomdm_tw import logs


def lines_of(observer_factory, events: list[dict]) -> str:
    out = io.StringIO()
    observer = observer_factory(out)
    for event in events:
        observer(dict(event))
    return out.getvalue()


def test_text_observer_writes_what_twistd_writes():
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    base = {"log_level": LogLevel.info, "log_namespace": "nanomdm_tw.request"}
    times = [
        1_700_000_000.0,
        1_700_000_000.25,
        1_700_000_000.9999996,  # shown as the next second (microseconds round)
        1_700_000_001.0000004,
        1_700_000_001.5,
        1_700_000_000.5,  # back in time
        1_700_003_600.0,
        0.0,
        -1.0,
        -1.5,  # shown as a second before -1.0
        None,
    ]
    events = [dict(base, log_format="{n} at {when}", n=n, when=t, log_time=t) for n, t in
              enumerate(times)]
    events += [
        dict(base, log_format="with a {thing}", thing="failure", log_time=times[0],
             log_failure=failure),
        dict(base, log_format="{line}", line="two\nlines", log_time=times[1],
             log_system="a-system"),
        dict(log_format="no level, no namespace", log_time=times[1]),
        dict(base, log_time=times[1]),  # no format: no line
    ]
    expected = lines_of(textFileLogObserver, events)
    assert lines_of(logs.text_observer, events) == expected
    assert expected.count("\n") > len(events)


@pytest.mark.parametrize("debug", [False, True])
def test_debug_events_only_with_debug(debug: bool):
    events: list[dict] = []
    publisher = LogPublisher(events.append)
    log = logs.make_logger("nanomdm_tw.test")
    log.observer = publisher
    logs.set_debug(debug)
    try:
        log.debug("a debug {what}", what="event")
        log.emit(LogLevel.debug, "emitted at debug")
        log.info("an info {what}", what="event")
    finally:
        logs.set_debug(False)
    assert [e["log_format"] for e in events] == (
        ["a debug {what}", "emitted at debug"] if debug else []
    ) + ["an info {what}"]
    plain = []
    Logger(namespace="nanomdm_tw.test", observer=LogPublisher(plain.append)).info(
        "an info {what}", what="event"
    )
    keys = set(plain[0]) - {"log_logger"}
    assert set(events[-1]) - {"log_logger"} == keys  # the event Logger.emit would build


def test_unknown_level_reported_as_twisted_reports_it():
    events: list[dict] = []
    log = logs.make_logger("nanomdm_tw.test")
    log.observer = LogPublisher(events.append)
    log.emit("not a level", "x")
    assert len(events) == 1 and events[0]["log_level"] is LogLevel.critical
