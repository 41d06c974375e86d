"""
Loggers whose debug events appear only with ``--debug``.

twistd owns the log observers, so the level filter sits on our side: every
logger made here drops its debug events before building them unless
``set_debug(True)`` was called.  A check in ``emit`` costs far less than a
FilteringLogObserver per event, which every request paid for its log line.
"""

from twisted.logger import Logger, LogLevel

_debug = False


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


class _Logger(Logger):
    def debug(self, format: str | None = None, **kwargs: object) -> None:
        if _debug:
            super().emit(LogLevel.debug, format, **kwargs)

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level is LogLevel.debug and not _debug:
            return
        super().emit(level, format, **kwargs)


def make_logger(namespace: str) -> Logger:
    """A Logger for ``namespace`` (under ``nanomdm_tw``) that honours ``--debug``."""
    return _Logger(namespace=namespace)
