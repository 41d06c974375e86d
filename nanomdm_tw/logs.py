"""
Loggers whose debug events appear only with ``--debug``, and a faster text observer.

twistd owns the log observers, so the level filter sits on our side: every
logger made here drops its debug events before building them unless
``set_debug(True)`` was called.  A check in the logger costs far less than a
FilteringLogObserver per event, which every request paid for its log line.

twistd's own text observer formats each line's time from scratch, a sixth
of an in-memory request's CPU; ``text_observer`` writes the same lines with
the time formatted once a second: ``twistd --logger=nanomdm_tw.logs.text_observer``
in place of ``--logfile=-``.
"""

import math
import sys
import time
from typing import IO

from twisted.logger import (
    FileLogObserver,
    Logger,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
)

_debug = False
_LEVELS = frozenset(LogLevel.iterconstants())


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


class _Logger(Logger):
    def debug(self, format: str | None = None, **kwargs: object) -> None:
        if _debug:
            self.emit(LogLevel.debug, format, **kwargs)

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        """Logger.emit, less its per-event sort of LogLevel's constants to check ``level``."""
        if level is LogLevel.debug and not _debug:
            return
        if level not in _LEVELS:
            super().emit(level, format, **kwargs)  # which reports the bad level
            return
        kwargs.update(
            log_logger=self,
            log_level=level,
            log_namespace=self.namespace,
            log_source=self.source,
            log_format=format,
            log_time=time.time(),
        )
        if "log_trace" in kwargs:
            kwargs["log_trace"].append((self, self.observer))
        self.observer(kwargs)


def make_logger(namespace: str) -> Logger:
    """A Logger for ``namespace`` (under ``nanomdm_tw``) that honours ``--debug``."""
    return _Logger(namespace=namespace)


def text_observer(out: IO[str] | None = None) -> FileLogObserver:
    """twistd's ``--logfile=-`` observer (stdout unless ``out``), same lines, cheaper time."""
    stamp = _SecondStamp()
    return FileLogObserver(
        sys.stdout if out is None else out,
        lambda event: formatEventAsClassicLogText(event, formatTime=stamp),
    )


class _SecondStamp:
    """formatTime, remembering the text of the last second it formatted."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = ""

    def __call__(self, when: float | None) -> str:
        if when is None or when < 0:
            return formatTime(when)
        # The second datetime.fromtimestamp shows: it rounds to microseconds.
        fraction, whole = math.modf(when)
        second = int(whole) + (round(fraction * 1e6) >= 1_000_000)
        if second != self._second:
            self._second, self._text = second, formatTime(when)
        return self._text
