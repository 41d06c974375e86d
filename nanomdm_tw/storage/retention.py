"""
The ``retention=`` storage option at work: history pruned now and then, off the request path.

Every ``interval`` a run deletes the history older than the retention
period in batches (IRetention.prune_history), pausing between batches so
that devices checking in meanwhile find the database unhurried, until a
batch finds nothing left.  Every server sharing a database may run it:
the deletes are idempotent.  A failed run is logged and the next one
starts on time (an uncaught error would stop a TimerService for good).
"""

import datetime

from twisted.application.internet import TimerService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from .inspection import IRetention

INTERVAL = 3600.0  # seconds between runs
BATCH = 1000  # history entries per batch (one transaction)
PAUSE = 1.0  # seconds between batches


class HistoryPruner(TimerService):
    """Prunes ``store``'s history older than ``retention`` seconds, every ``interval``."""

    _log = Logger()

    def __init__(
        self,
        store: IRetention,
        retention: float,
        clock=None,
        *,
        interval: float = INTERVAL,
        batch: int = BATCH,
        pause: float = PAUSE,
    ):
        super().__init__(interval, self.run)
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.retention = retention
        self._store = store
        self._batch = batch
        self._pause = pause
        self._pausing: Deferred | None = None
        self._stopping = False

    def startService(self) -> None:
        self._stopping = False
        super().startService()

    def stopService(self) -> Deferred:
        """Stop after the batch in progress, not after the whole run."""
        self._stopping = True
        if self._pausing is not None:
            self._pausing.cancel()
        return super().stopService()

    def run(self) -> Deferred:
        """One run: batches until nothing older is left; never fails."""
        return Deferred.fromCoroutine(self._run())

    async def _run(self) -> int:
        before = datetime.datetime.fromtimestamp(
            self.clock.seconds() - self.retention, datetime.timezone.utc
        )
        pruned = 0
        try:
            while not self._stopping:
                rows = await self._store.prune_history(before, self._batch)
                if not rows:
                    break
                pruned += rows
                self._pausing = deferLater(self.clock, self._pause)
                await self._pausing
        except CancelledError:
            pass  # stopping during a pause
        except Exception:
            self._log.failure(
                "pruning history older than {before} failed after {rows} rows",
                before=before.isoformat(),
                rows=pruned,
            )
            return pruned
        finally:
            self._pausing = None
        self._log.info(
            "pruned {rows} rows of history older than {before}",
            rows=pruned,
            before=before.isoformat(),
        )
        return pruned
