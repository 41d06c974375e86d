"""
How much work may wait for a database's connections, and for how long.

A black-holed database holds every pooled connection; without a bound each
new request would queue behind them, and memory would grow until the
database came back.  Here at most ``max_waiting`` interactions wait beyond
the pool's connections: more are refused at once, and one not answered
within ``timeout`` is answered for, both with StorageBusy (503 and
Retry-After).  Work answered for that has not begun is skipped when a
thread comes to it, so the queue drains by itself when the database is back.
"""

import math
import threading
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import StorageBusy

# What a device or API client is told to wait before trying again.
RETRY_AFTER_SECONDS = 10


def retry_after(timeout: float) -> int:
    """Seconds a client is told to wait: RETRY_AFTER_SECONDS, or the timeout when shorter."""
    return min(RETRY_AFTER_SECONDS, max(1, math.ceil(timeout)))


class Ticket:
    """One interaction's place in the queue: begun in a pool thread, or given up on."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False


class Admission:
    """Lets interactions through to a pool of ``capacity`` connections, within bounds."""

    _log = Logger()

    def __init__(self, capacity: int, max_waiting: int, timeout: float, clock):
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self.in_flight = 0  # admitted and not yet finished in their pool thread
        self.retry_after = retry_after(timeout)

    @property
    def waiting(self) -> int:
        """Admitted interactions with no connection to run on."""
        return max(0, self.in_flight - self.capacity)

    def admit(self, name: str, work: Callable[[Ticket], Deferred]) -> Deferred:
        """``work(ticket)``'s result, or StorageBusy when too much waits or it takes too long."""
        if self.waiting >= self.max_waiting:
            self._log.warn(
                "database busy: {waiting} interactions waiting, refusing {interaction}",
                waiting=self.waiting,
                interaction=name,
            )
            return fail(self._busy(f"{self.waiting} requests already waiting for it"))
        ticket = Ticket()
        answer = Deferred(lambda _: self._abandon(ticket))
        self.in_flight += 1
        timer = self._clock.callLater(self.timeout, self._expire, name, ticket, answer)

        def finished(result: object) -> None:
            self.in_flight -= 1
            if timer.active():
                timer.cancel()
            if answer.called:
                return  # answered for already: a late failure is no news
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)

        work(ticket).addBoth(finished)
        return answer

    def begin(self, ticket: Ticket) -> None:
        """In the pool thread, before any statement: refuse work already answered for."""
        with self._lock:
            if ticket.abandoned:
                raise self._busy("the request was answered already")

    def _abandon(self, ticket: Ticket) -> None:
        with self._lock:
            ticket.abandoned = True

    def _expire(self, name: str, ticket: Ticket, answer: Deferred) -> None:
        self._abandon(ticket)
        self._log.warn(
            "database busy: {interaction} not done within {timeout}s ({waiting} waiting)",
            interaction=name,
            timeout=self.timeout,
            waiting=self.waiting,
        )
        answer.errback(self._busy(f"no answer within {self.timeout:g}s"))

    def _busy(self, why: str) -> StorageBusy:
        return StorageBusy(f"database busy: {why}; try again later", self.retry_after)

