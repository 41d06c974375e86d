"""
Writes to one secondary backend of multi storage, off the request path.

A request waits for the first backend only; its write to a secondary (a
mirror) starts at once and runs in the background, and a failure is logged,
never returned.  Order still holds where it matters: a write from a
device's request runs after that device's earlier writes (all of its
channels), so a TokenUpdate never overtakes its Authenticate; an API write
(enqueue, push certificate) runs after every earlier write and before every
later one.  Different devices' writes run concurrently.

At most ``max_pending`` writes wait or run per mirror, so a mirror that
stopped answering holds bounded memory; each write beyond is dropped and
logged.  ``drain`` gives what is pending a grace period at shut-down.
"""

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from .interfaces import IStorage


class MirrorWriter:
    _log = Logger()

    def __init__(self, store: IStorage, number: int, clock, max_pending: int):
        self.store = store
        self.number = number
        self._clock = clock
        self._max_pending = max_pending
        self._pending: set[Deferred] = set()
        # The latest write of each device (channel ID), and the latest API write.
        self._latest: dict[str, Deferred] = {}
        self._barrier: Deferred | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, device: str | None, subject: str, method: str, *args: Any) -> None:
        """
        Run ``method(*args)`` on the mirror after the writes it must follow.

        ``device``: the device channel ID the write belongs to; None for an
        API write, which follows everything.  ``subject`` names it in logs.
        """
        if len(self._pending) >= self._max_pending:
            self._log.error(
                "storage {number} dropped {method} {subject}: {pending} writes pending",
                number=self.number,
                method=method,
                subject=subject,
                pending=len(self._pending),
            )
            return
        # Each device's latest write follows its earlier ones and the API write
        # before it, so following those few follows everything before.
        if device is None:
            before = [*self._latest.values(), self._barrier]
        else:
            before = [self._latest.get(device), self._barrier]
        done = Deferred.fromCoroutine(
            self._run([d for d in before if d is not None], subject, method, args)
        )
        self._pending.add(done)
        if device is None:
            self._barrier = done
            self._latest.clear()  # what comes next follows this one
        else:
            self._latest[device] = done
        done.addBoth(self._finished, device, done)

    async def _run(self, before: list[Deferred], subject: str, method: str, args) -> None:
        if before:
            await DeferredList(before)
        try:
            await getattr(self.store, method)(*args)
        except Exception:
            self._log.failure(
                "storage {number} failed {method} {subject}",
                number=self.number,
                method=method,
                subject=subject,
            )

    def _finished(self, result: None, device: str | None, done: Deferred) -> None:
        self._pending.discard(done)
        if device is None:
            if self._barrier is done:
                self._barrier = None
        elif self._latest.get(device) is done:
            del self._latest[device]
        return result

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for pending writes; log those left behind."""
        if not self._pending:
            return
        settled: Deferred = Deferred()

        def settle(finished: bool) -> None:
            if not settled.called:
                settled.callback(finished)

        DeferredList(list(self._pending)).addCallback(lambda _: settle(True))
        timer = self._clock.callLater(grace, settle, False)
        if await settled:
            timer.cancel()
            return
        self._log.error(
            "storage {number}: {pending} writes still pending after {grace}s, abandoned",
            number=self.number,
            pending=len(self._pending),
            grace=grace,
        )
