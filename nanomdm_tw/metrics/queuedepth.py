"""
``nanomdm_queue_depth``: how many commands wait for an answer, sampled.

Counting the queue is a query over a table that may hold millions of rows,
so it runs once a minute, not per scrape, and in the first process only
(workers share its database).  A failed sample is logged and the gauge
keeps its last value; the next sample tries again.
"""

from twisted.application.internet import TimerService
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from ..storage.inspection import IInspectionStore
from . import server_metrics

SAMPLE_INTERVAL = 60.0


class QueueDepthSampler(TimerService):
    """Sets the gauge from ``IInspectionStore.pending_count()`` every ``interval`` seconds."""

    _log = Logger()

    def __init__(self, store: IInspectionStore, interval: float = SAMPLE_INTERVAL):
        super().__init__(interval, self._sample)
        self._store = store

    async def _count(self) -> None:
        server_metrics().queue_depth.set(await self._store.pending_count())

    def _sample(self):
        sampled = ensureDeferred(self._count())
        # An error escaping the step would stop the TimerService for good.
        sampled.addErrback(
            lambda failure: self._log.failure("sampling the queue depth", failure)
        )
        return sampled


def queue_depth_sampler(store, interval: float = SAMPLE_INTERVAL) -> QueueDepthSampler | None:
    """A sampler of ``store``; None (and a warning) when it lacks the inspection role."""
    try:
        verifyObject(IInspectionStore, store)
    except Invalid as e:
        QueueDepthSampler._log.warn("queue depth not sampled: {error}", error=str(e).strip())
        return None
    return QueueDepthSampler(store, interval)
