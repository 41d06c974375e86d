"""
``--webhook-url``: every MDM event as a JSON POST, NanoMDM-compatible.

It runs after the core service (see multi.py), so the device never waits
for it.  Unlike NanoMDM, which posts once and forgets, a failed delivery
(refused, timed out, not 2xx) is retried with exponential backoff, up to
``max_attempts`` times.  Events of one enrollment are delivered one at a
time, in the order the requests came; enrollments do not wait for each
other.  At most ``max_queued`` events, of ``max_queued_bytes`` of JSON in
all, wait in memory; beyond either bound the new event is dropped.  Every
dropped event is counted (``nanomdm_webhook_drops_total{reason}``) and
logged with its event ID (the request's trace ID).  At most
``MAX_CONCURRENT_DELIVERIES`` posts are in flight at once, so a receiver
that accepts connections and never answers holds that many sockets, not one
per enrollment with events waiting.  Shut-down gives pending deliveries
``shutdown_grace`` seconds, then drops what is left.

A full queue refuses the newest event rather than dropping the oldest: the
oldest of an enrollment is the one being posted (cancelling it mid-request
could deliver it twice), the others wait behind it in order, and what is
refused is known at once, while the request that made it is still in the log.

The JSON of a big message (base64 of megabytes) is built in an Offload
thread, not on the reactor.
"""

import base64
import hashlib
import hmac
from collections import deque
from dataclasses import dataclass, field

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredSemaphore,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..deadline import within
from ..mdm import messages as m
from ..mdm.request import MDMRequest
from ..metrics import server_metrics
from ..offload import Offload, run_if_big
from ..storage.interfaces import ITokenUpdateTallyStore
from . import webhook_event
from .interfaces import IMDMService

HMAC_HEADER = b"X-Hmac-Signature"
TRACE_ID_HEADER = b"X-Trace-ID"
JSON_CONTENT_TYPE = b"application/json; charset=utf-8"

# Bytes of event JSON waiting in memory, at most (per server process).
MAX_QUEUED_BYTES = 256 * 1024 * 1024

# Why an event was dropped: the metric's label values.
QUEUE_FULL = "queue_full"
QUEUE_BYTES_FULL = "queue_bytes_full"
SHUTTING_DOWN = "shutting_down"
BAD_EVENT = "bad_event"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"

# Posts in flight at once, over all enrollments; an attempt's timeout starts
# once it has a slot.
MAX_CONCURRENT_DELIVERIES = 32


def hmac_signature(key: bytes, body: bytes) -> bytes:
    """Base64 HMAC-SHA256 of ``body``: NanoMDM's X-Hmac-Signature value."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())


class DeliveryError(Exception):
    """The receiver did not take the event (status other than 2xx)."""


@dataclass
class _Pending:
    """
    A queued event; ``body`` fires once its JSON is built (the tally may be
    read first), with None if the bytes bound refused it.  ``size``: the
    bytes it counts against that bound.  An event is dropped at most once.
    """

    event_id: str
    topic: str
    body: Deferred = field(repr=False)
    size: int = 0
    dropped: bool = False


@implementer(IMDMService)
class WebhookService(Service):
    _log = Logger()

    def __init__(
        self,
        url: str,
        http: HTTPClient,
        tally_store: ITokenUpdateTallyStore | None = None,
        hmac_key: bytes = b"",
        clock=None,
        *,
        timeout: float = 10.0,
        max_attempts: int = 8,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_queued: int = 10_000,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        shutdown_grace: float = 3.0,
        offload: Offload | None = None,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self._url = url.encode("utf-8")
        self._http = http
        self._tally_store = tally_store
        self._hmac_key = hmac_key
        self._clock = clock
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._max_queued = max_queued
        self._max_queued_bytes = max_queued_bytes
        self._shutdown_grace = shutdown_grace
        self._offload = offload
        self._queues: dict[str, deque[_Pending]] = {}
        self._senders: dict[str, Deferred] = {}
        self._queued = 0
        self._queued_bytes = 0
        self._abandoned = False
        self._slots = DeferredSemaphore(MAX_CONCURRENT_DELIVERIES)

    @property
    def queued_bytes(self) -> int:
        """Bytes of event JSON waiting in memory now."""
        return self._queued_bytes

    # IMDMService: build the event, queue it, return at once.

    async def checkin(
        self, request: MDMRequest, message: m.CheckinMessage
    ) -> bytes | None:
        created_at = self._clock.seconds()
        if isinstance(message, m.TokenUpdate) and self._tally_store is not None:
            body = Deferred.fromCoroutine(
                self._token_update_body(request, message, created_at)
            )
        else:
            body = self._body(message, webhook_event.checkin_event, request, message, created_at)
        self._enqueue(request, webhook_event.checkin_topic(message), body)
        return None

    async def command_report(
        self, request: MDMRequest, report: m.CommandReport
    ) -> m.Command | None:
        created_at = self._clock.seconds()
        body = self._body(report, webhook_event.acknowledge_event, request, report, created_at)
        self._enqueue(request, webhook_event.CONNECT_TOPIC, body)
        return None

    async def _token_update_body(
        self, request: MDMRequest, message: m.TokenUpdate, created_at: float
    ) -> bytes:
        """The core stored this TokenUpdate before we run: the tally counts it."""
        tally = await self._tally_store.retrieve_token_update_tally(request.enroll_id.id)
        return await self._body(
            message, webhook_event.checkin_event, request, message, created_at, tally
        )

    def _body(self, message: m.Message, make_event, *args) -> Deferred:
        """The JSON of ``make_event(*args)``; a big message's built in a thread."""
        return run_if_big(
            self._offload, len(message.raw), webhook_event.encoded, make_event, *args
        )

    # Queues, one per enrollment, each drained by one sender.

    def _enqueue(self, request: MDMRequest, topic: str, body: Deferred) -> None:
        pending = _Pending(request.trace_id, topic, body)
        if not self.running or self._queued >= self._max_queued:
            body.addErrback(lambda _: None)
            self._dropped(pending, QUEUE_FULL if self.running else SHUTTING_DOWN)
            return
        body.addCallback(self._admit, pending)
        enrollment_id = request.enroll_id.id
        self._queues.setdefault(enrollment_id, deque()).append(pending)
        self._queued += 1
        if enrollment_id not in self._senders:
            sender = Deferred.fromCoroutine(self._drain(enrollment_id))
            if not sender.called:
                self._senders[enrollment_id] = sender
            sender.addBoth(self._sender_done, enrollment_id)

    def _admit(self, body: bytes, pending: _Pending) -> bytes | None:
        """The JSON is built: it stays queued if the bytes bound allows."""
        if pending.dropped:
            return None
        if self._queued_bytes + len(body) > self._max_queued_bytes:
            self._dropped(
                pending,
                QUEUE_BYTES_FULL,
                f"{len(body)} bytes, {self._queued_bytes} of {self._max_queued_bytes} queued",
            )
            return None
        pending.size = len(body)
        self._queued_bytes += pending.size
        return body

    def _leave(self, pending: _Pending) -> None:
        self._queued -= 1
        self._queued_bytes -= pending.size

    def _sender_done(self, result: object, enrollment_id: str) -> None:
        """Whatever is still queued when a sender ends (cancelled at shut-down) is lost."""
        self._senders.pop(enrollment_id, None)
        if isinstance(result, Failure) and not result.check(CancelledError):
            self._log.failure("webhook sender failed", result)
        for pending in self._queues.pop(enrollment_id, ()):
            self._leave(pending)
            if not pending.dropped:
                self._dropped(pending, SHUTTING_DOWN, "before delivery")

    async def _drain(self, enrollment_id: str) -> None:
        queue = self._queues[enrollment_id]
        while queue:
            await self._deliver(queue[0])
            self._leave(queue.popleft())
        del self._queues[enrollment_id]

    async def _deliver(self, pending: _Pending) -> None:
        try:
            body = await pending.body
        except CancelledError:
            raise
        except Exception as e:
            self._dropped(pending, BAD_EVENT, repr(e))
            return
        if body is None:
            return  # refused by the bytes bound (counted and logged then)
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._post(pending, body)
                server_metrics().webhook_deliveries.inc()
                return
            except CancelledError:
                raise
            except Exception as e:
                if self._abandoned:
                    raise CancelledError() from e
                error = str(e) or type(e).__name__
            if attempt == self._max_attempts:
                break
            delay = min(self._first_backoff * 2 ** (attempt - 1), self._max_backoff)
            wait = deferLater(self._clock, delay)
            server_metrics().webhook_retries.inc()
            self._log.warn(
                "webhook delivery failed, retrying event_id={event_id} topic={topic}"
                " attempt={attempt} delay={delay} error={error}",
                event_id=pending.event_id,
                topic=pending.topic,
                attempt=attempt,
                delay=delay,
                error=error,
            )
            await wait
        self._dropped(
            pending, ATTEMPTS_EXHAUSTED, f"{self._max_attempts} attempts, last: {error}"
        )

    async def _post(self, pending: _Pending, body: bytes) -> None:
        await self._slots.acquire()
        try:
            await within(
                Deferred.fromCoroutine(self._post_once(pending, body)), self._timeout, self._clock
            )
        finally:
            self._slots.release()

    async def _post_once(self, pending: _Pending, body: bytes) -> None:
        headers = {
            b"Content-Type": [JSON_CONTENT_TYPE],
            TRACE_ID_HEADER: [pending.event_id.encode("ascii")],
        }
        if self._hmac_key:
            headers[HMAC_HEADER] = [hmac_signature(self._hmac_key, body)]
        response = await self._http.post(
            self._url, data=body, headers=headers, allow_redirects=False
        )
        await response.content()
        if not 200 <= response.code < 300:
            raise DeliveryError(f"HTTP {response.code}")

    def _dropped(self, pending: _Pending, reason: str, detail: str = "") -> None:
        """``reason``: one of the constants above; ``detail`` for the log only."""
        pending.dropped = True
        server_metrics().webhook_drops.labels(reason).inc()
        self._log.error(
            "webhook event dropped event_id={event_id} topic={topic}: {reason}{detail}",
            event_id=pending.event_id,
            topic=pending.topic,
            reason=reason,
            detail=f" ({detail})" if detail else "",
        )

    # IService: stop taking events, let pending ones finish for a moment.

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        senders = list(self._senders.values())
        if not senders:
            return
        timer = self._clock.callLater(self._shutdown_grace, self._abandon)
        await DeferredList(senders, consumeErrors=True)
        if timer.active():
            timer.cancel()

    def _abandon(self) -> None:
        """The grace period is over: cancel every sender; what they held is dropped."""
        self._log.warn(
            "webhook: {count} events still pending after {grace}s, dropping them",
            count=self._queued,
            grace=self._shutdown_grace,
        )
        self._abandoned = True
        for sender in list(self._senders.values()):
            sender.cancel()
