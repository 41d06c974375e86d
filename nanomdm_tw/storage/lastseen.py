"""
Last-seen times, batched off the request path.

NanoMDM updates ``enrollments.last_seen_at`` inside every request; with
thousands of devices checking in at once those single-row UPDATEs contend
(deployments of ~30k devices report deadlocks there).  Here a request only
adds its enrollment ID to a set in memory; every few seconds, or as soon as
enough IDs are waiting, one UPDATE covers them all, IDs sorted so that
servers sharing a database lock rows in the same order.
"""

from collections.abc import Callable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

FLUSH_INTERVAL = 5.0  # seconds


class LastSeenBatcher:
    _log = Logger()

    def __init__(
        self,
        write: Callable[[list[str]], Deferred],
        clock,
        interval: float = FLUSH_INTERVAL,
        max_ids: int = 500,
    ):
        self._write = write
        self._interval = interval
        self._max_ids = max_ids
        self._pending: set[str] = set()
        self._in_flight: set[Deferred] = set()
        self._loop = LoopingCall(self.flush)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self._interval, now=False)

    async def stop(self) -> None:
        """Stop the timer and write what is still waiting."""
        if self._loop.running:
            self._loop.stop()
        self.flush()
        await DeferredList(list(self._in_flight))

    def touch(self, enrollment_id: str) -> None:
        self._pending.add(enrollment_id)
        if len(self._pending) >= self._max_ids:
            self.flush()

    def flush(self) -> Deferred:
        """Write the waiting IDs in one UPDATE; a failure is logged and never raised."""
        if not self._pending:
            return succeed(None)
        enrollment_ids, self._pending = sorted(self._pending), set()
        d = self._write(enrollment_ids)
        d.addErrback(
            lambda failure: self._log.failure(
                "last-seen update of {count} enrollments failed",
                failure,
                count=len(enrollment_ids),
            )
        )
        self._in_flight.add(d)
        d.addBoth(lambda _: self._in_flight.discard(d))
        return d
