"""
Loggers whose debug events appear only with ``--debug``.

twistd owns the log observers, so the level filter sits on our side: every
``nanomdm_tw`` logger made here publishes through one shared predicate.
"""

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_levels])


def set_debug(enabled: bool) -> None:
    _levels.setLogLevelForNamespace(
        "nanomdm_tw", LogLevel.debug if enabled else LogLevel.info
    )


def make_logger(namespace: str) -> Logger:
    """A Logger for ``namespace`` (under ``nanomdm_tw``) that honours ``--debug``."""
    return Logger(namespace=namespace, observer=_observer)
