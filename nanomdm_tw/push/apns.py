"""
An APNs client on the h2 state machine, running inside the reactor.

Apple wants few long-lived connections carrying many concurrent streams, so
one client keeps one HTTP/2 connection for its topic's push certificate and
multiplexes every push over it, up to the peer's MAX_CONCURRENT_STREAMS;
the rest wait in a queue.  A push the server never processed (queued, or
above a GOAWAY's last stream ID, or refused) is retried on a new
connection; a push that may have reached Apple is never sent twice.

A push costs little beyond its HTTP/2 frames: a batch of pushes shares one
Deferred, and one timer watches every push's deadline (they come due in
the order the pushes were made).
"""

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from .connection import APNsConnection

PRODUCTION_URL = "https://api.push.apple.com"
DEVELOPMENT_URL = "https://api.development.push.apple.com"

# How many connections one push may be offered to before it is given up.
_MAX_SENDS = 3


@dataclass(frozen=True, slots=True)
class PushResult:
    """
    What APNs said about one push.

    Success is HTTP 200 with an ``apns-id``; a rejection carries the status
    and Apple's ``reason``; a push that never got an answer (no connection,
    timeout) has no status and ``reason`` says why.
    """

    apns_id: str | None = None
    status: int | None = None
    reason: str | None = None


def _result_of_answer(status: int, apns_id: bytes | None, body: bytes) -> PushResult:
    apns_id = apns_id.decode("ascii", "replace") if apns_id is not None else None
    if status == 200:
        return PushResult(apns_id=apns_id, status=status)
    try:
        reason = json.loads(body).get("reason")
    except (ValueError, AttributeError):
        reason = body.decode("utf-8", "replace") or None
    return PushResult(apns_id=apns_id, status=status, reason=reason)


class _Batch:
    """The pushes of one call: their results, in order, fire one Deferred."""

    __slots__ = ("results", "waiting", "deferred")

    def __init__(self, size: int) -> None:
        self.results: list[PushResult | None] = [None] * size
        self.waiting = size
        self.deferred: Deferred[list[PushResult]] = Deferred()

    def settle(self, index: int, result: PushResult) -> None:
        self.results[index] = result
        self.waiting -= 1
        if not self.waiting:
            self.deferred.callback(self.results)


class _Push:
    """One push from the call to ``push`` until its result is known."""

    __slots__ = (
        "batch",
        "index",
        "token",
        "push_magic",
        "topic",
        "deadline",
        "done",
        "sends",
        "answers_before",
        "stream",
    )

    def __init__(
        self, batch: _Batch, index: int, token: bytes, push_magic: str, topic: str,
        deadline: float,
    ) -> None:  # fmt: skip
        self.batch = batch
        self.index = index
        self.token = token
        self.push_magic = push_magic
        self.topic = topic
        self.deadline = deadline
        self.done = False
        self.sends = 0
        # Answers the connection had received when this push went out on it.
        self.answers_before = 0
        # (connection, stream_id) while a stream carries this push.
        self.stream: tuple[APNsConnection, int] | None = None


class APNsClient:
    """
    Pushes with one topic's push certificate over one reused connection.

    The connection is opened by the first push and again by the first push
    after it was lost; ``timeout`` bounds each push from call to answer, and
    each TCP connect (a black-holed APNs address is given up on in time).
    ``extra_ca_pem`` replaces the platform's trust store (for a fake APNs in
    tests); ``expiration`` (seconds) is sent as ``apns-expiration``.
    """

    _log = Logger()

    def __init__(
        self,
        reactor,
        cert_pem: bytes,
        key_pem: bytes,
        base_url: str = PRODUCTION_URL,
        extra_ca_pem: bytes | None = None,
        timeout: float = 10.0,
        expiration: float | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"APNs URL must be https://host[:port]: {base_url!r}")
        self._authority = url.netloc.encode("ascii")
        self._path_prefix = url.path.rstrip("/").encode("ascii") + b"/3/device/"
        if extra_ca_pem is None:
            trust_root = platformTrust()
        else:
            trust_root = trustRootFromCertificates(
                [
                    Certificate.loadPEM(cert.public_bytes(Encoding.PEM))
                    for cert in x509.load_pem_x509_certificates(extra_ca_pem)
                ]
            )
        tls = optionsForClientTLS(
            url.hostname,
            trustRoot=trust_root,
            clientCertificate=PrivateCertificate.loadPEM(
                cert_pem.rstrip() + b"\n" + key_pem
            ),
            acceptableProtocols=[b"h2"],
        )
        self._endpoint = wrapClientTLS(
            tls, HostnameEndpoint(reactor, url.hostname, url.port or 443, timeout=timeout)
        )
        self._factory = Factory()
        self._factory.protocol = lambda: APNsConnection(self)
        self._clock = clock or reactor
        self._timeout = timeout
        self._expiration = expiration
        self._queue: deque[_Push] = deque()
        # Pushes without a result, oldest (first due) first; done ones leave lazily.
        self._deadlines: deque[_Push] = deque()
        self._deadline_call = None
        self._outstanding = 0
        self._idle_waiters: list[Deferred[None]] = []
        self._connection: APNsConnection | None = None
        self._connecting: Deferred[APNsConnection] | None = None
        self._topic_headers: dict[str, list[tuple[bytes, bytes]]] = {}
        self.connections_made = 0
        # Connections in a row that ended before APNs answered any stream.
        self._unanswered_connections = 0

    def push(self, token: bytes, push_magic: str, topic: str) -> Deferred[PushResult]:
        """Wake one enrollment; the Deferred never fails, errors are results."""
        return self.push_many([(token, push_magic)], topic).addCallback(lambda r: r[0])

    def push_many(
        self, pushes: Iterable[tuple[bytes, str]], topic: str
    ) -> Deferred[list[PushResult]]:
        """Push to many (token, push_magic) pairs; results in the same order."""
        pushes = list(pushes)
        batch = _Batch(len(pushes))
        if not pushes:
            batch.deferred.callback([])
            return batch.deferred
        deadline = self._clock.seconds() + self._timeout
        made = [
            _Push(batch, index, token, push_magic, topic, deadline)
            for index, (token, push_magic) in enumerate(pushes)
        ]
        self._outstanding += len(made)
        self._queue.extend(made)
        self._deadlines.extend(made)
        self._watch_deadline()
        self._pump()
        return batch.deferred

    async def close(self) -> None:
        """Wait for the pushes in flight, then disconnect."""
        while self._outstanding:
            waiter: Deferred[None] = Deferred()
            self._idle_waiters.append(waiter)
            await waiter
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            await self._connection.close()

    # What the connection reports.

    def _answered(self, push: _Push, status: int, apns_id: bytes | None, body: bytes) -> None:
        self._finish(push, _result_of_answer(status, apns_id, body))

    def _failed(self, push: _Push, reason: str) -> None:
        self._finish(push, PushResult(reason=reason))

    def _feed(self, connection: APNsConnection) -> None:
        """Move queued pushes onto the connection while it has free streams."""
        if connection is not self._connection or not self._queue:
            return
        queue = self._queue
        free = connection.free_streams()
        while free > 0 and queue:
            push = queue.popleft()
            if push.done:
                continue  # timed out while queued
            free -= 1
            stream_id = connection.open_stream(push, *self._request(push))
            push.stream = (connection, stream_id)
            push.sends += 1
            push.answers_before = connection.answers

    def _connection_ended(
        self, connection: APNsConnection, unprocessed: list[_Push], message: str
    ) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._log.info("APNs connection ended: {message}", message=message)
        if not connection.was_ready:
            # Set-up failed (TLS, ALPN): retrying now would fail the same way.
            self._fail_queue(message)
            return
        if connection.answers:
            self._unanswered_connections = 0
        else:
            self._unanswered_connections += 1
        if self._unanswered_connections >= _MAX_SENDS:
            # APNs ends every connection before answering anything (a GOAWAY
            # storm): reconnecting at once would loop until the pushes' deadline.
            self._unanswered_connections = 0
            message += f" ({_MAX_SENDS} connections in a row ended without an answer)"
            for push in unprocessed:
                self._failed(push, message)
            self._fail_queue(message)
            return
        self._retry(unprocessed)

    def _retry(self, pushes: list[_Push]) -> None:
        """Put pushes the server never processed back at the head of the queue."""
        for push in reversed(pushes):
            push.stream = None
            if push.sends >= _MAX_SENDS:
                self._failed(push, f"APNs did not take the push in {_MAX_SENDS} tries")
            elif not push.done:
                self._queue.appendleft(push)
        self._pump()

    # Pushes in and out.

    def _finish(self, push: _Push, result: PushResult) -> None:
        if push.done:
            return
        push.done = True
        push.stream = None
        self._outstanding -= 1
        deadlines = self._deadlines
        while deadlines and deadlines[0].done:
            deadlines.popleft()
        if not self._outstanding:
            if self._deadline_call is not None:
                self._deadline_call.cancel()
                self._deadline_call = None
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        push.batch.settle(push.index, result)

    def _request(self, push: _Push) -> tuple[list[tuple[bytes, bytes]], bytes]:
        # The same JSON as json.dumps({"mdm": push_magic}), for a fraction of the cost.
        body = b'{"mdm":%s}' % json.dumps(push.push_magic).encode()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", self._authority),
            (b":path", self._path_prefix + push.token.hex().encode()),
        ]
        headers += self._topic_headers.get(push.topic) or self._headers_for(push.topic)
        if self._expiration is not None:
            expires = int(self._clock.seconds() + self._expiration)
            headers.append((b"apns-expiration", b"%d" % expires))
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]
        return headers, body

    def _headers_for(self, topic: str) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"apns-push-type", b"mdm"),
            (b"apns-topic", topic.encode()),
            (b"apns-priority", b"10"),
        ]
        self._topic_headers[topic] = headers
        return headers

    def _pump(self) -> None:
        connection = self._connection
        if connection is not None:
            self._feed(connection)
            connection.flush()
        elif self._queue and self._connecting is None:
            self._connect()

    def _connect(self) -> None:
        self.connections_made += 1
        self._connecting = self._endpoint.connect(self._factory)
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: APNsConnection) -> None:
        self._connecting = None
        self._connection = connection

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        message = f"cannot connect to APNs: {failure.getErrorMessage()}"
        self._log.warn("{message}", message=message)
        self._fail_queue(message)

    def _fail_queue(self, message: str) -> None:
        queued, self._queue = self._queue, deque()
        for push in queued:
            self._failed(push, message)

    # Timeouts.

    def _watch_deadline(self) -> None:
        """Have the timer fire when the oldest push without a result comes due."""
        if self._deadline_call is None and self._deadlines:
            due = self._deadlines[0].deadline - self._clock.seconds()
            self._deadline_call = self._clock.callLater(max(0.0, due), self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline_call = None
        now = self._clock.seconds()
        deadlines = self._deadlines
        while deadlines and (deadlines[0].done or deadlines[0].deadline <= now):
            push = deadlines.popleft()
            if not push.done:
                self._timed_out(push)
        self._watch_deadline()

    def _timed_out(self, push: _Push) -> None:
        message = f"no answer from APNs in {self._timeout:g} s"
        connection = self._connection
        if push.stream is not None:
            connection, stream_id = push.stream
            connection.cancel_stream(stream_id)
            # No stream answered since the push went out: the connection is
            # likely dead without TCP knowing; the next push must not wait on it.
            if connection.answers == push.answers_before:
                connection.abort(f"APNs connection silent: {message}")
        elif connection is not None and not connection.ready:
            # Queued behind a connection that could not get ready in time.
            connection.abort(f"APNs connection not ready: {message}")
        # A queued push stays in the queue, skipped once done.
        self._failed(push, message)
