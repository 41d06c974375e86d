"""
A fake APNs server for tests and benchmarks.

HTTP/2 over TLS on loopback with ALPN h2 and a required client certificate,
written on h2 like the client it exercises.  It records every request and
can misbehave the ways Apple does: reject tokens (410, 400), keep the
stream limit low, send GOAWAY mid-batch, answer late or never.

Run as a program (``python -m nanomdm_tw.tools.fake_apns``) it serves a
benchmark: nothing is recorded, only counted, and a plain-HTTP control port
reports the counts and sets the answer delay.
"""

import argparse
import datetime
import ipaddress
import json
import uuid
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded
from h2.settings import SettingCodes, Settings
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.internet.task import react
from twisted.web.resource import Resource
from twisted.web.server import Site

from ..crypto.devca import UID_OID, DevelopmentCA, cert_pem, generate_key, key_pem


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake processed, with the topic of the client cert that sent it."""

    connection: int
    stream_id: int
    path: str
    headers: dict[str, str]
    body: bytes
    client_certificate: x509.Certificate

    @property
    def client_topic(self) -> str:
        return self.client_certificate.subject.get_attributes_for_oid(UID_OID)[0].value

    @property
    def token_hex(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class _OpenRequest:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


def issue_server_certificate(ca: DevelopmentCA, host: str = "127.0.0.1"):
    """A TLS server certificate for ``host`` (IP or DNS name), signed by ``ca``."""
    key = generate_key("ec")
    try:
        san = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca.key, ca.cert.signature_hash_algorithm)
    )
    return cert, key


class _BenchH2Connection(H2Connection):
    """
    h2's server side counting open streams by the fake's books.

    h2 walks every stream to count them on each new one: with hundreds in
    flight, that walk would be the fake's main cost in a benchmark.  Streams
    opened by one read count from the next; h2 walks (and forgets closed
    streams) every ``_WALK_EVERY`` answers.
    """

    _WALK_EVERY = 1000

    def __init__(self, config: H2Configuration, open_requests: dict) -> None:
        super().__init__(config)
        self._open_requests = open_requests
        self._until_walk = self._WALK_EVERY

    @property
    def open_inbound_streams(self) -> int:
        return len(self._open_requests)

    def send_headers(self, stream_id: int, headers, end_stream: bool = False, **kwargs):
        super().send_headers(stream_id, headers, end_stream, **kwargs)
        self._until_walk -= 1
        if not self._until_walk:
            self._until_walk = self._WALK_EVERY
            super().open_inbound_streams


class _FakeAPNsConnection(Protocol):
    def __init__(self, server: "FakeAPNs", number: int) -> None:
        self._server = server
        self.number = number
        self._open: dict[int, _OpenRequest] = {}
        # It checks the client's headers (and stream count) as strictly as h2
        # can, except in a benchmark, where that would take CPU from the server.
        config = H2Configuration(
            client_side=False,
            header_encoding="utf-8",
            validate_inbound_headers=server.record,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        if server.record:
            self._h2 = H2Connection(config)
        else:
            self._h2 = _BenchH2Connection(config, self._open)
        self._answered = 0
        self._goaway_sent = False
        self._client_certificate: x509.Certificate | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self._server._connections.add(self)
        settings = {
            SettingCodes.MAX_CONCURRENT_STREAMS: self._server.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: self._server.initial_window_size,
        }
        self._h2.local_settings = Settings(
            client=False,
            initial_values={k: v for k, v in settings.items() if v is not None},
        )
        self._h2.initiate_connection()
        if self._server.goaway_storm:
            # Refuses all work at once, and says so more than once.
            for _ in range(3):
                self._h2.close_connection(last_stream_id=0)
            self._goaway_sent = True
            self._flush()
            self.transport.loseConnection()
            return
        self._flush()

    def connectionLost(self, reason=None) -> None:
        self._server._connections.discard(self)
        self._server._streams_changed(-len(self._open))
        self._open.clear()

    def dataReceived(self, data: bytes) -> None:
        if self._goaway_sent:
            return
        complete = []
        opened = 0
        for event in self._h2.receive_data(data):
            if isinstance(event, RequestReceived):
                self._open[event.stream_id] = _OpenRequest(dict(event.headers))
                opened += 1
            elif isinstance(event, DataReceived):
                self._h2.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
                self._open[event.stream_id].body += event.data
            elif isinstance(event, StreamEnded):
                complete.append(event.stream_id)
            elif isinstance(event, ConnectionTerminated):
                self.transport.loseConnection()
                return
        if opened:
            self._server._streams_changed(opened)
            self._server.peak_open_streams = max(
                self._server.peak_open_streams, len(self._open)
            )
        # Answer after reading the whole batch, so concurrent streams overlap;
        # late answers to a batch share one timer.
        delay = self._server.answer_delay
        if delay == 0:
            self._answer_batch(complete, record=True)
            return
        for stream_id in complete:
            self._server._record(self, stream_id, self._open[stream_id])
        if complete and delay is not None:
            self._server.reactor.callLater(delay, self._answer_batch, complete)
        self._flush()

    def client_certificate(self) -> x509.Certificate:
        if self._client_certificate is None:
            peer = self.transport.getPeerCertificate()
            self._client_certificate = peer.to_cryptography()
        return self._client_certificate

    def _answer_batch(self, stream_ids: list[int], record: bool = False) -> None:
        """Answer; without a delay, requests are recorded here (none after GOAWAY)."""
        answered = 0
        rejections = self._server.rejections
        for stream_id in stream_ids:
            if self._goaway_sent:
                break
            request = self._open.pop(stream_id, None)
            if request is not None:
                if record:
                    self._server._record(self, stream_id, request)
                self._answer(stream_id, request, rejections)
                answered += 1
        self._server._streams_changed(-answered)
        self._flush()

    def _answer(
        self, stream_id: int, request: _OpenRequest, rejections: dict[str, tuple[int, str]]
    ) -> None:
        if self._server.reset_code is not None:
            self._h2.reset_stream(stream_id, self._server.reset_code)
            self._server.answered += 1
            return
        apns_id = str(uuid.uuid4()).upper().encode()
        reason = rejections.get(request.headers[":path"].rsplit("/", 1)[-1])
        if reason is None:
            headers = [(b":status", b"200"), (b"apns-id", apns_id)]
            self._h2.send_headers(stream_id, headers, end_stream=True)
        else:
            status, text = reason
            body = json.dumps({"reason": text}).encode()
            headers = [
                (b":status", b"%d" % status),
                (b"apns-id", apns_id),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            self._h2.send_headers(stream_id, headers)
            self._h2.send_data(stream_id, body, end_stream=True)
        self._answered += 1
        self._server.answered += 1
        if self._answered == self._server.goaway_after:
            # Everything above this stream is left unprocessed: the client must retry it.
            self._h2.close_connection(last_stream_id=stream_id)
            self._goaway_sent = True
            self._flush()
            self.transport.loseConnection()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self.transport.write(data)


class FakeAPNs:
    """
    The fake server.  ``ca`` signs its TLS certificate and must have signed
    the clients' push certificates.  Tweak the public attributes to
    misbehave: ``unregistered`` and ``bad_tokens`` (hex tokens),
    ``max_concurrent_streams``, ``initial_window_size`` (flow control),
    ``goaway_after`` (answers per connection), ``goaway_storm`` (every
    connection gets GOAWAY frames right after SETTINGS, then is closed),
    ``reset_code`` (an HTTP/2 error code: every request gets RST_STREAM),
    ``answer_delay`` (seconds; None never answers).  ``record`` False keeps
    only the counts (``received``, ``answered``), not the requests.
    """

    def __init__(self, reactor, ca: DevelopmentCA, record: bool = True) -> None:
        self.reactor = reactor
        self.ca = ca
        self.record = record
        cert, key = issue_server_certificate(ca)
        server = PrivateCertificate.loadPEM(cert_pem(cert) + key_pem(key))
        self._tls = CertificateOptions(
            privateKey=server.privateKey.original,
            certificate=server.original,
            verify=True,
            caCerts=[Certificate.loadPEM(ca.cert_pem).original],
            requireCertificate=True,
            acceptableProtocols=[b"h2"],
        )
        self.unregistered: set[str] = set()
        self.bad_tokens: set[str] = set()
        self.max_concurrent_streams: int | None = None
        self.initial_window_size: int | None = None
        self.goaway_after: int | None = None
        self.goaway_storm = False
        self.reset_code: int | None = None
        self.answer_delay: float | None = 0.0
        self.requests: list[RecordedRequest] = []
        self.received = 0
        self.answered = 0
        self.peak_open_streams = 0
        self.connections_accepted = 0
        # Streams open on all connections, and their integral over time since
        # ``_window_start``: the mean number of pushes in flight.
        self.open_streams = 0
        self._stream_seconds = 0.0
        self._changed_at = self._window_start = reactor.seconds()
        self._connections: set[_FakeAPNsConnection] = set()
        self._request_waiters: list[tuple[int, Deferred[None]]] = []
        self._port = None

    @property
    def rejections(self) -> dict[str, tuple[int, str]]:
        rejected = {token: (400, "BadDeviceToken") for token in self.bad_tokens}
        rejected.update((token, (410, "Unregistered")) for token in self.unregistered)
        return rejected

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._port.getHost().port}"

    async def start(self, port: int = 0) -> None:
        factory = Factory()
        factory.protocol = self._build_connection
        endpoint = SSL4ServerEndpoint(self.reactor, port, self._tls, interface="127.0.0.1")
        self._port = await endpoint.listen(factory)

    async def stop(self) -> None:
        for connection in list(self._connections):
            connection.transport.abortConnection()
        await self._port.stopListening()

    def wait_for_requests(self, count: int) -> Deferred[None]:
        """Fires once ``count`` requests have been recorded."""
        waiter: Deferred[None] = Deferred()
        self._request_waiters.append((count, waiter))
        self._wake_waiters()
        return waiter

    def take_stats(self) -> dict[str, float]:
        """Counts since the previous call: requests, answers, streams in flight."""
        self._streams_changed(0)
        elapsed = self._changed_at - self._window_start
        stats = {
            "received": self.received,
            "answered": self.answered,
            "mean_open_streams": self._stream_seconds / elapsed if elapsed else 0.0,
            "peak_open_streams": self.peak_open_streams,
            "connections_accepted": self.connections_accepted,
            "delay_ms": (self.answer_delay or 0) * 1000,
        }
        self.received = self.answered = self.peak_open_streams = 0
        self._stream_seconds = 0.0
        self._window_start = self._changed_at
        return stats

    def _streams_changed(self, delta: int) -> None:
        now = self.reactor.seconds()
        self._stream_seconds += self.open_streams * (now - self._changed_at)
        self._changed_at = now
        self.open_streams += delta

    def _build_connection(self) -> _FakeAPNsConnection:
        self.connections_accepted += 1
        return _FakeAPNsConnection(self, self.connections_accepted)

    def _record(
        self, connection: _FakeAPNsConnection, stream_id: int, request: _OpenRequest
    ) -> None:
        self.received += 1
        if not self.record:
            return
        self.requests.append(
            RecordedRequest(
                connection=connection.number,
                stream_id=stream_id,
                path=request.headers[":path"],
                headers=request.headers,
                body=bytes(request.body),
                client_certificate=connection.client_certificate(),
            )
        )
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        ready = [w for w in self._request_waiters if w[0] <= len(self.requests)]
        for entry in ready:
            self._request_waiters.remove(entry)
            entry[1].callback(None)


class _Control(Resource):
    """``GET /[?delay_ms=N]``: set the answer delay, then the counts as JSON."""

    isLeaf = True

    def __init__(self, fake: FakeAPNs) -> None:
        super().__init__()
        self._fake = fake

    def render_GET(self, request) -> bytes:
        delay = request.args.get(b"delay_ms")
        if delay:
            self._fake.answer_delay = float(delay[0]) / 1000
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self._fake.take_stats()).encode()


async def _serve(reactor, args: argparse.Namespace) -> None:
    fake = FakeAPNs(reactor, DevelopmentCA.load(args.ca), record=False)
    fake.max_concurrent_streams = args.streams
    fake.answer_delay = args.delay / 1000
    await fake.start(args.port)
    site = Site(_Control(fake))
    site.log = lambda request: None
    reactor.listenTCP(args.control_port, site, interface="127.0.0.1")
    await Deferred()  # until killed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake APNs for benchmarks.")
    parser.add_argument("--ca", required=True, help="folder of a DevelopmentCA (cert + key)")
    parser.add_argument("--port", type=int, required=True, help="the HTTP/2 TLS port")
    parser.add_argument("--control-port", type=int, required=True, help="plain HTTP, stats")
    parser.add_argument("--delay", type=float, default=0.0, help="ms before each answer")
    parser.add_argument("--streams", type=int, default=1000, help="MAX_CONCURRENT_STREAMS")
    args = parser.parse_args(argv)
    react(lambda reactor: Deferred.fromCoroutine(_serve(reactor, args)))


if __name__ == "__main__":
    main()
