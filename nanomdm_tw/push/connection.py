"""
One HTTP/2 connection to APNs, driven on the h2 state machine.

It speaks HTTP/2 only: streams carry opaque pushes, and what happened to
each (answered, reset, refused, never processed) goes back to the client
(``APNsClient``), which owns what a push means.  Every frame produced while
handling one read, or one batch of new pushes, leaves in one TLS write.
"""

from collections.abc import Iterable
from typing import Any

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
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .headers import RequestHeaderEncoder


class _PushH2Connection(H2Connection):
    """
    h2's client connection, tuned for many small concurrent requests.

    h2 walks every stream to count the open ones each time a stream opens,
    which with hundreds of pushes in flight costs more than the push.  Here
    a stream counts from its HEADERS until h2 says it is closed after a
    frame that may close it; the walk still runs, to let h2 forget closed
    streams, once it holds twice as many streams as are open.  Request
    headers go through ``RequestHeaderEncoder``.

    h2 remembers how each closed stream ended, for frames that may still
    arrive on it; its default of 65,536 kept about 130 bytes per push on a
    long-lived APNs connection, ~8 MiB creeping up over hours (scripts/soak).
    APNs allows about a thousand streams at once, so twice that is plenty.
    """

    MAX_CLOSED_STREAMS = 2048

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.encoder = RequestHeaderEncoder()
        self._open_ids: set[int] = set()

    @property
    def open_outbound_streams(self) -> int:
        return len(self._open_ids)

    def send_headers(self, stream_id: int, headers, end_stream: bool = False, **kwargs):
        super().send_headers(stream_id, headers, end_stream, **kwargs)
        self._open_ids.add(stream_id)

    def send_data(self, stream_id: int, data, end_stream: bool = False, **kwargs):
        super().send_data(stream_id, data, end_stream, **kwargs)
        if end_stream:
            self._forget_closed((stream_id,))

    def reset_stream(self, stream_id: int, error_code=0) -> None:
        super().reset_stream(stream_id, error_code)
        self._forget_closed((stream_id,))

    def receive_data(self, data: bytes) -> list:
        events = super().receive_data(data)
        self._forget_closed(
            event.stream_id
            for event in events
            if isinstance(event, (StreamEnded, StreamReset))
        )
        return events

    def _forget_closed(self, stream_ids: Iterable[int]) -> None:
        streams = self.streams
        for stream_id in stream_ids:
            stream = streams.get(stream_id)
            if stream is None or stream.closed:
                self._open_ids.discard(stream_id)
        if len(streams) > 2 * len(self._open_ids) + 64:
            # h2's own count drops the closed streams it still holds.
            super().open_outbound_streams
            self._open_ids.intersection_update(streams)


class _Stream:
    """The response side of one request stream, plus request bytes not yet sent."""

    __slots__ = ("push", "unsent", "status", "apns_id", "body")

    def __init__(self, push: Any, body: bytes) -> None:
        self.push = push
        self.unsent = body
        self.status: int | None = None
        self.apns_id: bytes | None = None
        self.body = b""


@implementer(IHandshakeListener)
class APNsConnection(Protocol):
    """
    One HTTP/2 connection to APNs.

    It takes no stream before TLS negotiated ``h2`` and the server's SETTINGS
    arrived (Apple starts with a low stream limit and raises it later).
    GOAWAY ends it like a lost connection, as h2 accepts no frame after it.
    ``client`` is told of every answer, failure and push to retry.
    """

    _log = Logger()

    def __init__(self, client) -> None:
        self._client = client
        # We build every request header ourselves, and read only :status and
        # apns-id of answers (as bytes, a bad :status being no answer): h2
        # need not check, normalize or decode either side's headers.
        self._h2 = _PushH2Connection(
            H2Configuration(
                client_side=True,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
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

    def free_streams(self) -> int:
        """How many more streams the server's MAX_CONCURRENT_STREAMS allows now."""
        if not self.ready:
            return 0
        h2 = self._h2
        return h2.remote_settings.max_concurrent_streams - h2.open_outbound_streams

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self._h2.initiate_connection()
        self.flush()

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
            kind = type(event)
            if kind is ResponseReceived:
                self._response_received(event)
            elif kind is StreamEnded:
                self._stream_ended(event.stream_id)
            elif kind is DataReceived:
                self._data_received(event)
            elif kind is StreamReset:
                self._stream_reset(event)
            elif kind is WindowUpdated:
                self._send_pending_bodies()
            elif kind is RemoteSettingsChanged:
                self._settings_changed()
            elif kind is ConnectionTerminated:
                self._goaway(event)
                return
        self._client._feed(self)
        self.flush()

    def connectionLost(self, reason: Failure = None) -> None:
        message = self._end_reason or (
            f"connection to APNs lost: {reason.getErrorMessage()}"
        )
        self._end(message)
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            self._client._failed(stream.push, message)
        self._client._connection_ended(self, [], message)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def open_stream(self, push: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        """Start a request for ``push``; its frames leave with the next ``flush``."""
        h2 = self._h2
        stream_id = h2.get_next_available_stream_id()
        h2.send_headers(stream_id, headers)
        stream = _Stream(push, body)
        self._streams[stream_id] = stream
        self._send_body(stream_id, stream)
        return stream_id

    def cancel_stream(self, stream_id: int) -> None:
        """Give up on a stream (the push timed out); APNs may still deliver it."""
        if self._streams.pop(stream_id, None) is not None and not self._ended:
            self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            self.flush()

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
            self.flush()
        self.transport.loseConnection()
        return waiter

    def flush(self) -> None:
        """Write every frame h2 has ready, in one TLS write."""
        data = self._h2.data_to_send()
        if data:
            self.transport.write(data)

    def _end(self, reason: str) -> None:
        if not self._ended:
            self._ended = True
            self._end_reason = reason

    def _settings_changed(self) -> None:
        if self._h2_negotiated and not self._settings_received:
            self._settings_received = True
            self.was_ready = True
            self._log.info("connected to APNs")

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        """Send as much of the body as the flow-control windows allow."""
        h2 = self._h2
        while stream.unsent:
            size = min(
                h2.local_flow_control_window(stream_id),
                h2.max_outbound_frame_size,
                len(stream.unsent),
            )
            if size <= 0:
                return
            chunk, stream.unsent = stream.unsent[:size], stream.unsent[size:]
            h2.send_data(stream_id, chunk, end_stream=not stream.unsent)

    def _send_pending_bodies(self) -> None:
        for stream_id, stream in list(self._streams.items()):
            if stream.unsent:
                self._send_body(stream_id, stream)

    def _response_received(self, event: ResponseReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        for name, value in event.headers:
            if name == b":status":
                stream.status = int(value) if value.isdigit() else None
            elif name == b"apns-id":
                stream.apns_id = value

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
        if stream.unsent:
            # Answered before the whole body went out (RFC 9113 8.1): stop sending.
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        if stream.status is None:
            self._client._failed(stream.push, "APNs ended the stream without an answer")
        else:
            self._client._answered(stream.push, stream.status, stream.apns_id, stream.body)

    def _stream_reset(self, event: StreamReset) -> None:
        self.answers += 1
        stream = self._streams.pop(event.stream_id, None)
        if stream is None:
            return
        if event.error_code == ErrorCodes.REFUSED_STREAM:
            # RFC 9113 8.7: a refused stream was not processed; safe to retry.
            self._client._retry([stream.push])
        else:
            code = getattr(event.error_code, "name", event.error_code)
            self._client._failed(stream.push, f"APNs reset the stream: {code}")

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
        streams, self._streams = self._streams, {}
        for stream_id, stream in sorted(streams.items()):
            if event.last_stream_id is None or stream_id > event.last_stream_id:
                unprocessed.append(stream.push)
            else:
                self._client._failed(stream.push, message)
        self._client._connection_ended(self, unprocessed, message)
        self.transport.loseConnection()
