"""
A fake APNs server for tests and benchmarks.

HTTP/2 over TLS on loopback with ALPN h2 and a required client certificate,
written on h2 like the client it exercises.  It records every request and
can misbehave the ways Apple does: reject tokens (410, 400), keep the
stream limit low, send GOAWAY mid-batch, answer late or never.
"""

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


class _FakeAPNsConnection(Protocol):
    def __init__(self, server: "FakeAPNs", number: int) -> None:
        self._server = server
        self.number = number
        self._h2 = H2Connection(
            H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._open: dict[int, _OpenRequest] = {}
        self._answered = 0
        self._goaway_sent = False

    def connectionMade(self) -> None:
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
        self._flush()

    def connectionLost(self, reason=None) -> None:
        self._server._connections.discard(self)

    def dataReceived(self, data: bytes) -> None:
        if self._goaway_sent:
            return
        complete = []
        for event in self._h2.receive_data(data):
            if isinstance(event, RequestReceived):
                self._open[event.stream_id] = _OpenRequest(dict(event.headers))
                self._server.peak_open_streams = max(
                    self._server.peak_open_streams, len(self._open)
                )
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
        # Answer after reading the whole batch, so concurrent streams overlap.
        for stream_id in complete:
            if self._goaway_sent:
                break
            self._process(stream_id)
        self._flush()

    def _process(self, stream_id: int) -> None:
        request = self._open[stream_id]
        recorded = RecordedRequest(
            connection=self.number,
            stream_id=stream_id,
            path=request.headers[":path"],
            headers=request.headers,
            body=bytes(request.body),
            client_certificate=self.transport.getPeerCertificate().to_cryptography(),
        )
        self._server._record(recorded)
        delay = self._server.answer_delay
        if delay is None:
            return
        if delay > 0:
            self._server.reactor.callLater(delay, self._answer_later, recorded)
        else:
            self._answer(recorded)

    def _answer_later(self, recorded: RecordedRequest) -> None:
        if recorded.stream_id in self._open and not self._goaway_sent:
            self._answer(recorded)
            self._flush()

    def _answer(self, recorded: RecordedRequest) -> None:
        del self._open[recorded.stream_id]
        apns_id = str(uuid.uuid4()).upper()
        reason = self._server.rejections.get(recorded.token_hex)
        headers = [("apns-id", apns_id)]
        if reason is None:
            self._h2.send_headers(
                recorded.stream_id, [(":status", "200")] + headers, end_stream=True
            )
        else:
            status, text = reason
            body = json.dumps({"reason": text}).encode()
            headers += [
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]
            self._h2.send_headers(recorded.stream_id, [(":status", str(status))] + headers)
            self._h2.send_data(recorded.stream_id, body, end_stream=True)
        self._answered += 1
        if self._answered == self._server.goaway_after:
            # Everything above this stream is left unprocessed: the client must retry it.
            self._h2.close_connection(last_stream_id=recorded.stream_id)
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
    ``goaway_after`` (answers per connection),
    ``answer_delay`` (seconds; None never answers).
    """

    def __init__(self, reactor, ca: DevelopmentCA) -> None:
        self.reactor = reactor
        self.ca = ca
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
        self.answer_delay: float | None = 0.0
        self.requests: list[RecordedRequest] = []
        self.peak_open_streams = 0
        self.connections_accepted = 0
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

    async def start(self) -> None:
        factory = Factory()
        factory.protocol = self._build_connection
        endpoint = SSL4ServerEndpoint(self.reactor, 0, self._tls, interface="127.0.0.1")
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

    def _build_connection(self) -> _FakeAPNsConnection:
        self.connections_accepted += 1
        return _FakeAPNsConnection(self, self.connections_accepted)

    def _record(self, request: RecordedRequest) -> None:
        self.requests.append(request)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        ready = [w for w in self._request_waiters if w[0] <= len(self.requests)]
        for entry in ready:
            self._request_waiters.remove(entry)
            entry[1].callback(None)
