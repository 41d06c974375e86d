"""
Loggers whose debug events appear only with ``--debug``.

twistd owns the log observers, so the level filter sits on our side: every
logger made here drops its debug events before building them unless
``set_debug(True)`` was called.  A check in the logger costs far less than a
FilteringLogObserver per event, which every request paid for its log line.
"""

import time

from twisted.logger import Logger, LogLevel

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
