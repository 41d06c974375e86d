"""
The HTTP/1.1 connection: Twisted's, with Go's header limit, a polite
answer to oversized headers, and a way to drain it at shut-down.

Twisted drops the connection without a word when a header line passes its
limit (a giant ``Mdm-Signature``, say).  Here the client gets a 400 first:
we half-close so the answer is not lost to a TCP reset while the client is
still sending, and discard whatever else it sends until it hangs up or the
channel's idle timeout ends the connection.

At shut-down (SIGTERM) the site drains each connection: an idle keep-alive
connection closes at once; one carrying a request answers it, with
``Connection: close`` when the headers are not yet out, and then closes, so
no client sends a new request into a server that is going away.
"""

from twisted.web.http import HTTPChannel


def bad_request(why: bytes) -> bytes:
    """The whole 400 answer, written before the connection closes."""
    return (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(why), why)
    )


# Go's net/http allows 1 MiB of request line and headers; NanoMDM tooling relies on
# it for /v1/enqueue/<thousands of IDs>.  Twisted's default is 16 KiB.
MAX_HEADER_BYTES = 1 << 20


class MDMChannel(HTTPChannel):
    MAX_LENGTH = MAX_HEADER_BYTES
    totalHeadersSize = MAX_HEADER_BYTES
    draining = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connections.add(self)

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.site.connection_closed(self)

    def checkPersistence(self, request, version) -> bool:
        """A request whose headers complete while draining is the connection's last."""
        if self.draining:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return super().checkPersistence(request, version)

    def drain(self) -> None:
        """Close now when idle, else after answering the request under way."""
        self.draining = True
        if not self.requests:
            self.loseConnection()
            return
        self.persistent = False
        for request in self.requests:
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def lineLengthExceeded(self, line: bytes) -> None:
        self._respondToBadRequestAndDisconnect(b"request header too large")

    def _respondToBadRequestAndDisconnect(self, why: bytes = b"bad request") -> None:
        """Twisted's answer to a request line or header it cannot parse, and ours."""
        self.transport.write(bad_request(why))
        # Lines already buffered (the headers after a bad request line) too.
        self.dataReceived = self.lineReceived = self._discard
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None:
            self.loseConnection()
        else:
            half_close()

    def _discard(self, data: bytes) -> None:
        """After the 400, the rest of the request is read and dropped."""
