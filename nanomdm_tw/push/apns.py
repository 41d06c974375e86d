"""
An APNs client on the h2 state machine, running inside the reactor.

Apple wants few long-lived connections carrying many concurrent streams, so
one client keeps one HTTP/2 connection for its topic's push certificate and
multiplexes every push over it, up to the peer's MAX_CONCURRENT_STREAMS;
the rest wait in a queue.  A push the server never processed (queued, or
above a GOAWAY's last stream ID, or refused) is retried on a new
connection; a push that may have reached Apple is never sent twice.
"""

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

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


def _result_of_answer(status: int, apns_id: str | None, body: bytes) -> PushResult:
    if status == 200:
        return PushResult(apns_id=apns_id, status=status)
    try:
        reason = json.loads(body).get("reason")
    except (ValueError, AttributeError):
        reason = body.decode("utf-8", "replace") or None
    return PushResult(apns_id=apns_id, status=status, reason=reason)


class _Push:
    """One push from the call to ``push`` until its result is known."""

    __slots__ = (
        "token",
        "push_magic",
        "topic",
        "deferred",
        "timer",
        "sends",
        "answers_before",
        "stream",
    )

    def __init__(self, token: bytes, push_magic: str, topic: str) -> None:
        self.token = token
        self.push_magic = push_magic
        self.topic = topic
        self.deferred: Deferred[PushResult] = Deferred()
        self.timer = None
        self.sends = 0
        # Answers the connection had received when this push went out on it.
        self.answers_before = 0
        # (connection, stream_id) while a stream carries this push.
        self.stream: tuple["_APNsConnection", int] | None = None

    @property
    def done(self) -> bool:
        return self.deferred.called

    def finish(self, result: PushResult) -> None:
        if self.done:
            return
        self.stream = None
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.deferred.callback(result)


class _Stream:
    """The response side of one request stream, plus request bytes not yet sent."""

    __slots__ = ("push", "unsent", "status", "apns_id", "body")

    def __init__(self, push: _Push, body: bytes) -> None:
        self.push = push
        self.unsent = body
        self.status: int | None = None
        self.apns_id: str | None = None
        self.body = bytearray()


@implementer(IHandshakeListener)
class _APNsConnection(Protocol):
    """
    One HTTP/2 connection to APNs.

    It takes no stream before TLS negotiated ``h2`` and the server's SETTINGS
    arrived (Apple starts with a low stream limit and raises it later).
    GOAWAY ends it like a lost connection, as h2 accepts no frame after it.
    """

    _log = Logger()

    def __init__(self, client: "APNsClient") -> None:
        self._client = client
        # We build every request header ourselves: no need to re-check them.
        self._h2 = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding="utf-8",
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self._streams: dict[int, _Stream] = {}
        self._h2_negotiated = False
        self._settings_received = False
        self._ended = False
        self._end_reason: str | None = None
        self._lost_waiters: list[Deferred[None]] = []
        self.was_ready = False
        self.answers = 0

    @property
    def ready(self) -> bool:
        # h2 closes itself on reading GOAWAY, before we see the event.
        return (
            self._h2_negotiated
            and self._settings_received
            and not self._ended
            and self._h2.state_machine.state != ConnectionState.CLOSED
        )

    @property
    def has_capacity(self) -> bool:
        # Our own count: h2's open_outbound_streams walks every stream.
        limit = self._h2.remote_settings.max_concurrent_streams
        return self.ready and len(self._streams) < limit

    def connectionMade(self) -> None:
        self._h2.initiate_connection()
        self._flush()

    def handshakeCompleted(self) -> None:
        if self.transport.negotiatedProtocol != b"h2":
            self.abort("APNs did not negotiate HTTP/2 (ALPN h2)")
            return
        self._h2_negotiated = True

    def dataReceived(self, data: bytes) -> None:
        if self._ended:
            return
        try:
            events = self._h2.receive_data(data)
        except H2Error as e:
            self.abort(f"HTTP/2 protocol error from APNs: {e}")
            return
        for event in events:
            if self._ended:
                # A result's callback closed the client; the rest is moot.
                break
            if isinstance(event, ResponseReceived):
                self._response_received(event)
            elif isinstance(event, DataReceived):
                self._data_received(event)
            elif isinstance(event, StreamEnded):
                self._stream_ended(event.stream_id)
            elif isinstance(event, StreamReset):
                self._stream_reset(event)
            elif isinstance(event, WindowUpdated):
                self._send_pending_bodies()
            elif isinstance(event, RemoteSettingsChanged):
                self._settings_changed()
            elif isinstance(event, ConnectionTerminated):
                self._goaway(event)
                return
        self._client._feed(self)
        self._flush()

    def connectionLost(self, reason: Failure = None) -> None:
        message = self._end_reason or (
            f"connection to APNs lost: {reason.getErrorMessage()}"
        )
        self._end(message)
        for stream in self._streams.values():
            stream.push.finish(PushResult(reason=message))
        self._streams.clear()
        self._client._connection_ended(self, [], message)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def open_stream(self, push: _Push, headers: list[tuple[str, str]], body: bytes):
        stream_id = self._h2.get_next_available_stream_id()
        self._h2.send_headers(stream_id, headers)
        stream = _Stream(push, body)
        self._streams[stream_id] = stream
        push.stream = (self, stream_id)
        push.sends += 1
        push.answers_before = self.answers
        self._send_body(stream_id, stream)

    def cancel_stream(self, stream_id: int) -> None:
        """Give up on a stream (the push timed out); APNs may still deliver it."""
        if self._streams.pop(stream_id, None) is not None and not self._ended:
            self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            self._flush()

    def abort(self, reason: str) -> None:
        """Drop the connection; its streams fail with ``reason``."""
        self._end(reason)
        self.transport.abortConnection()

    def close(self) -> Deferred[None]:
        """Say GOAWAY and disconnect; fires once the connection is gone."""
        waiter: Deferred[None] = Deferred()
        if self.transport is None or not self.transport.connected:
            waiter.callback(None)
            return waiter
        self._lost_waiters.append(waiter)
        if not self._ended:
            self._end("APNs client closed")
            self._h2.close_connection()
            self._flush()
        self.transport.loseConnection()
        return waiter

    def _end(self, reason: str) -> None:
        if not self._ended:
            self._ended = True
            self._end_reason = reason

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self.transport.write(data)

    def _settings_changed(self) -> None:
        if self._h2_negotiated and not self._settings_received:
            self._settings_received = True
            self.was_ready = True
            self._log.info("connected to APNs")

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        """Send as much of the body as the flow-control windows allow."""
        while stream.unsent:
            size = min(
                self._h2.local_flow_control_window(stream_id),
                self._h2.max_outbound_frame_size,
                len(stream.unsent),
            )
            if size <= 0:
                return
            chunk, stream.unsent = stream.unsent[:size], stream.unsent[size:]
            self._h2.send_data(stream_id, chunk, end_stream=not stream.unsent)

    def _send_pending_bodies(self) -> None:
        for stream_id, stream in list(self._streams.items()):
            if stream.unsent:
                self._send_body(stream_id, stream)

    def _response_received(self, event: ResponseReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        headers = dict(event.headers)
        stream.status = int(headers[":status"])
        stream.apns_id = headers.get("apns-id")

    def _data_received(self, event: DataReceived) -> None:
        self._h2.acknowledge_received_data(
            event.flow_controlled_length, event.stream_id
        )
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream.body += event.data

    def _stream_ended(self, stream_id: int) -> None:
        self.answers += 1
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        if stream.status is None:
            result = PushResult(reason="APNs ended the stream without an answer")
        else:
            result = _result_of_answer(
                stream.status, stream.apns_id, bytes(stream.body)
            )
        stream.push.finish(result)

    def _stream_reset(self, event: StreamReset) -> None:
        self.answers += 1
        stream = self._streams.pop(event.stream_id, None)
        if stream is None:
            return
        stream.push.stream = None
        if event.error_code == ErrorCodes.REFUSED_STREAM:
            # RFC 9113 8.7: a refused stream was not processed; safe to retry.
            self._client._retry([stream.push])
        else:
            code = getattr(event.error_code, "name", event.error_code)
            stream.push.finish(PushResult(reason=f"APNs reset the stream: {code}"))

    def _goaway(self, event: ConnectionTerminated) -> None:
        code = getattr(event.error_code, "name", event.error_code)
        message = f"APNs closed the connection (GOAWAY {code}) before answering"
        self._log.info(
            "APNs sent GOAWAY {code}, last stream {last_stream_id}",
            code=code,
            last_stream_id=event.last_stream_id,
        )
        self._end(message)
        unprocessed = []
        for stream_id, stream in sorted(self._streams.items()):
            stream.push.stream = None
            if event.last_stream_id is None or stream_id > event.last_stream_id:
                unprocessed.append(stream.push)
            else:
                stream.push.finish(PushResult(reason=message))
        self._streams.clear()
        self._client._connection_ended(self, unprocessed, message)
        self.transport.loseConnection()


class APNsClient:
    """
    Pushes with one topic's push certificate over one reused connection.

    The connection is opened by the first push and again by the first push
    after it was lost; ``timeout`` bounds each push from call to answer.
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
        self._authority = url.netloc
        self._path_prefix = url.path.rstrip("/")
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
            tls, HostnameEndpoint(reactor, url.hostname, url.port or 443)
        )
        self._factory = Factory()
        self._factory.protocol = lambda: _APNsConnection(self)
        self._clock = clock or reactor
        self._timeout = timeout
        self._expiration = expiration
        self._queue: deque[_Push] = deque()
        self._outstanding: set[_Push] = set()
        self._idle_waiters: list[Deferred[None]] = []
        self._connection: _APNsConnection | None = None
        self._connecting: Deferred[_APNsConnection] | None = None
        self.connections_made = 0

    def push(self, token: bytes, push_magic: str, topic: str) -> Deferred[PushResult]:
        """Wake one enrollment; the Deferred never fails, errors are results."""
        push = _Push(token, push_magic, topic)
        push.timer = self._clock.callLater(self._timeout, self._timed_out, push)
        push.deferred.addBoth(self._finished, push)
        self._outstanding.add(push)
        self._queue.append(push)
        self._pump()
        return push.deferred

    def push_many(
        self, pushes: Iterable[tuple[bytes, str]], topic: str
    ) -> Deferred[list[PushResult]]:
        """Push to many (token, push_magic) pairs; results in the same order."""
        return gatherResults(
            [self.push(token, push_magic, topic) for token, push_magic in pushes]
        )

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

    def _finished(self, result: PushResult, push: _Push) -> PushResult:
        self._outstanding.discard(push)
        if not self._outstanding:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def _request(self, push: _Push) -> tuple[list[tuple[str, str]], bytes]:
        body = json.dumps({"mdm": push.push_magic}, separators=(",", ":")).encode()
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self._authority),
            (":path", f"{self._path_prefix}/3/device/{push.token.hex()}"),
            ("apns-push-type", "mdm"),
            ("apns-topic", push.topic),
            ("apns-priority", "10"),
        ]
        if self._expiration is not None:
            expires = int(self._clock.seconds() + self._expiration)
            headers.append(("apns-expiration", str(expires)))
        headers += [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        return headers, body

    def _pump(self) -> None:
        connection = self._connection
        if connection is not None:
            self._feed(connection)
            connection._flush()
        elif self._queue and self._connecting is None:
            self._connect()

    def _feed(self, connection: _APNsConnection) -> None:
        """Move queued pushes onto the connection while it has free streams."""
        if connection is not self._connection:
            return
        while self._queue and connection.has_capacity:
            push = self._queue.popleft()
            connection.open_stream(push, *self._request(push))

    def _connect(self) -> None:
        self.connections_made += 1
        self._connecting = self._endpoint.connect(self._factory)
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: _APNsConnection) -> None:
        self._connecting = None
        self._connection = connection

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        message = f"cannot connect to APNs: {failure.getErrorMessage()}"
        self._log.warn("{message}", message=message)
        self._fail_queue(message)

    def _connection_ended(
        self, connection: _APNsConnection, unprocessed: list[_Push], message: str
    ) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._log.info("APNs connection ended: {message}", message=message)
        if not connection.was_ready:
            # Set-up failed (TLS, ALPN): retrying now would fail the same way.
            self._fail_queue(message)
            return
        self._retry(unprocessed)

    def _retry(self, pushes: list[_Push]) -> None:
        """Put pushes the server never processed back at the head of the queue."""
        for push in reversed(pushes):
            if push.sends >= _MAX_SENDS:
                push.finish(
                    PushResult(reason=f"APNs did not take the push in {_MAX_SENDS} tries")
                )
            elif not push.done:
                self._queue.appendleft(push)
        self._pump()

    def _fail_queue(self, message: str) -> None:
        queued, self._queue = self._queue, deque()
        for push in queued:
            push.finish(PushResult(reason=message))

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
        else:
            self._queue.remove(push)
            # A connection that could not get ready within a push's timeout.
            if connection is not None and not connection.ready:
                connection.abort(f"APNs connection not ready: {message}")
        push.finish(PushResult(reason=message))

