"""
Loopback HTTP servers standing in for webhook receivers, DDM servers and
auth proxy targets: they record every request and answer as told.

``Receiver`` listens on ``tcp:0:interface=127.0.0.1``; ``go_down()`` stops
listening and drops open connections, ``come_up()`` listens again on the
same port.  ``hang = True`` leaves requests unanswered until ``release()``.
``black_hole()`` accepts connections and reads nothing from them (as a
frozen process would) until ``wake()``, which serves what they sent.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import NoRangeStaticProducer


@dataclass
class Recorded:
    method: bytes
    path: bytes
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return values[0].decode("utf-8") if values else None


@dataclass
class Answer:
    """What the receiver answers; ``headers_for(body)`` adds headers computed from the body."""

    status: int = 200
    body: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    headers_for: Callable[[bytes], dict[bytes, bytes]] | None = None


class _Recorder(Resource):
    isLeaf = True

    def __init__(self, receiver: "Receiver"):
        super().__init__()
        self._receiver = receiver

    def render(self, request: Request) -> object:
        request.content.seek(0)
        recorded = Recorded(
            request.method, request.uri, request.requestHeaders.copy(), request.content.read()
        )
        # Answer first: a test woken by the record may change the next answer.
        if self._receiver.hang:
            self._receiver._hung.append(request)
        else:
            self._receiver._answer(request)
        self._receiver._record(recorded)
        return NOT_DONE_YET


class _Freezable(ProtocolWrapper):
    """A connection whose bytes are held, unread, while the receiver is a black hole."""

    def __init__(self, factory: "_Connections", wrapped) -> None:
        super().__init__(factory, wrapped)
        self._held: list[bytes] | None = [] if factory.frozen else None

    def dataReceived(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        else:
            super().dataReceived(data)

    def thaw(self) -> None:
        held, self._held = self._held, None
        if held:
            super().dataReceived(b"".join(held))


class _Connections(WrappingFactory):
    """Keeps the open connections (to cut or thaw them) and their peak count."""

    protocol = _Freezable

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.frozen = False
        self.peak = 0

    def registerProtocol(self, p) -> None:
        super().registerProtocol(p)
        self.peak = max(self.peak, len(self.protocols))


class _QuietSite(Site):
    def log(self, request: object) -> None:
        """No access log in tests."""


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.answer = Answer()
        self.hang = False
        self._hung: list[Request] = []
        self._waiters: list[tuple[int, Deferred]] = []
        # WrappingFactory keeps the open connections, to cut them when going down.
        self._factory = _Connections(_QuietSite(_Recorder(self)))
        self._port: IListeningPort | None = None
        self.port_number = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_number}"

    async def start(self) -> "Receiver":
        await self.come_up()
        return self

    async def come_up(self) -> None:
        endpoint = serverFromString(reactor, f"tcp:{self.port_number}:interface=127.0.0.1")
        self._port = await endpoint.listen(self._factory)
        self.port_number = self._port.getHost().port

    async def go_down(self) -> None:
        """Refuse connections from now on; open ones are cut."""
        self._hung.clear()
        for protocol in list(self._factory.protocols):
            protocol.transport.abortConnection()
        if self._port is not None:
            await self._port.stopListening()
            self._port = None

    stop = go_down

    @property
    def peak_connections(self) -> int:
        """The most connections open at once so far."""
        return self._factory.peak

    def black_hole(self) -> None:
        """From now on accept connections but read nothing from them."""
        self._factory.frozen = True

    def wake(self) -> None:
        """Read and answer what the connections sent meanwhile; serve normally again."""
        self._factory.frozen = False
        for protocol in list(self._factory.protocols):
            protocol.thaw()

    def release(self) -> None:
        """Answer the requests left hanging, and stop hanging."""
        self.hang = False
        hung, self._hung = self._hung, []
        for request in hung:
            self._answer(request)

    def wait_for(self, count: int) -> Deferred:
        """Fires once ``count`` requests have arrived."""
        waiter: Deferred = Deferred()
        if len(self.requests) >= count:
            waiter.callback(self.requests)
        else:
            self._waiters.append((count, waiter))
        return waiter

    def _record(self, recorded: Recorded) -> None:
        self.requests.append(recorded)
        ready = [w for w in self._waiters if len(self.requests) >= w[0]]
        for item in ready:
            self._waiters.remove(item)
            item[1].callback(self.requests)

    def _answer(self, request: Request) -> None:
        if request._disconnected:
            return
        answer = self.answer
        request.setResponseCode(answer.status)
        headers = dict(answer.headers)
        if answer.headers_for is not None:
            headers.update(answer.headers_for(answer.body))
        for name, value in headers.items():
            request.setHeader(name, value)
        request.setHeader(b"content-length", str(len(answer.body)).encode("ascii"))
        # A producer, so a large body streams instead of sitting in the transport.
        NoRangeStaticProducer(request, io.BytesIO(answer.body)).start()
