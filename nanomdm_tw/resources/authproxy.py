"""
``/authproxy/<path>`` (``--auth-proxy-url``): MDM-authenticated downloads.

Declarative Management assets can ask the device to fetch content with
its MDM identity.  As NanoMDM's authproxy, the request is authenticated as
/mdm requests are (Mdm-Signature or --cert-header, chained to --ca), the
certificate's hash is looked up to find the enrollment (as cert auth
stored it at Authenticate), and the request is reverse-proxied to the
target URL + path with X-Enrollment-ID and X-Trace-ID set by us (copies
sent by the client are removed first).  Unauthenticated requests get 400
or 403, never 401; an unreachable target gets 502, one that sends no
response head within --http-timeout 504.

Bodies stream: the request body goes up from twisted.web's buffer (a
temporary file when large), and the target's answer comes down chunk by
chunk with the device connection's flow control pausing the target.
"""

from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..crypto.identity import MDM_SIGNATURE_HEADER, DeviceIdentity, cert_hash
from ..deadline import NoAnswerInTime, within
from ..errors import HTTPStatusError, MessageError
from ..logs import make_logger
from ..settings import DEFAULT_HTTP_TIMEOUT
from ..storage.interfaces import ICertAuthStore
from .body import read_body
from .render import async_render

ENROLLMENT_ID_HEADER = b"X-Enrollment-ID"
TRACE_ID_HEADER = b"X-Trace-ID"

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
_NOT_FORWARDED = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}
_NOT_FORWARDED_UP = _NOT_FORWARDED | {
    b"host",
    b"content-length",
    MDM_SIGNATURE_HEADER.lower(),
    ENROLLMENT_ID_HEADER.lower(),
    TRACE_ID_HEADER.lower(),
}

_log = make_logger("nanomdm_tw.authproxy")


def upstream_url(target: str, path: bytes, query: bytes) -> bytes:
    """Target + path as Go's single-host reverse proxy joins them (one slash, queries merged)."""
    scheme, netloc, base_path, base_query, _ = urlsplit(target)
    joined = base_path.rstrip("/") + "/" + path.decode("ascii").lstrip("/")
    query_text = query.decode("ascii")
    if base_query and query_text:
        query_text = base_query + "&" + query_text
    else:
        query_text = base_query or query_text
    return urlunsplit((scheme, netloc, joined, query_text, "")).encode("ascii")


class _BodyRelay(Protocol):
    """Writes the target's body to the device as it comes, paused by the device's flow control."""

    def __init__(self, request: Request, done: Deferred):
        self._request = request
        self._done = done

    def connectionMade(self) -> None:
        self._request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self._request.write(data)

    def connectionLost(self, reason: Failure) -> None:
        self._request.unregisterProducer()
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(None)
        else:
            self._done.errback(reason)


class AuthProxyResource(Resource):
    isLeaf = True

    def __init__(
        self,
        target: str,
        identity: DeviceIdentity,
        store: ICertAuthStore,
        agent: IAgent,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        clock=None,
    ):
        """``timeout``: how long the target may take to send its response head."""
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self._target = target
        self._identity = identity
        self._store = store
        self._agent = agent
        self._timeout = timeout
        self._clock = clock

    def render(self, request: Request) -> object:
        return self._proxy(request)

    @async_render
    async def _proxy(self, request: Request) -> None:
        context = request.nanomdm_context
        enrollment_id = await self._enrollment_id(request)
        context["enrollment_id"] = enrollment_id
        path, _, query = request.uri.partition(b"?")
        path = path.split(b"/", 2)[2] if path.count(b"/") >= 2 else b""
        url = upstream_url(self._target, path, query)
        headers = self._upstream_headers(request, enrollment_id, context["trace_id"])
        request.content.seek(0)
        body = FileBodyProducer(request.content) if _has_body(request) else None
        attempt = self._agent.request(request.method, url, headers, body)
        try:
            response = await within(attempt, self._timeout, self._clock)
        except CancelledError:
            raise
        except Exception as e:
            _log.info(
                "authproxy: target unreachable url={url} error={error}"
                " enrollment_id={enrollment_id} trace_id={trace_id}",
                url=url.decode("ascii"),
                error=str(e) or type(e).__name__,
                enrollment_id=enrollment_id,
                trace_id=context["trace_id"],
            )
            if isinstance(e, NoAnswerInTime):
                raise HTTPStatusError("gateway timeout", 504)
            raise HTTPStatusError("bad gateway", 502)
        context["outcome"] = "proxied " + str(response.code)
        self._copy_response_head(request, response)
        await self._relay_body(request, response, context["trace_id"])

    async def _enrollment_id(self, request: Request) -> str:
        """The enrollment the device certificate was associated with at Authenticate."""
        # Only a signature needs the body in memory; a large upload stays in its file.
        if request.getHeader(MDM_SIGNATURE_HEADER):
            body = read_body(request)
        elif getattr(request, "body_too_large", False):
            raise HTTPStatusError("request body too large", 413)
        else:
            body = b""
        certificate = self._identity.certificate(request.getHeader, body)
        enrollment_id = await self._store.enrollment_id_for_cert_hash(cert_hash(certificate))
        if not enrollment_id:
            raise MessageError("unauthorized: no enrollment for this certificate")
        return enrollment_id

    def _upstream_headers(self, request: Request, enrollment_id: str, trace_id: str) -> Headers:
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _NOT_FORWARDED_UP:
                headers.setRawHeaders(name, values)
        client = request.getClientAddress()
        forwarded_for = getattr(client, "host", None)
        if forwarded_for:
            prior = request.getHeader(b"x-forwarded-for")
            value = forwarded_for.encode("ascii")
            headers.setRawHeaders(
                b"X-Forwarded-For", [prior + b", " + value if prior else value]
            )
        headers.setRawHeaders(ENROLLMENT_ID_HEADER, [enrollment_id.encode("utf-8")])
        headers.setRawHeaders(TRACE_ID_HEADER, [trace_id.encode("ascii")])
        return headers

    def _copy_response_head(self, request: Request, response: IResponse) -> None:
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _NOT_FORWARDED:
                request.responseHeaders.setRawHeaders(name, values)

    async def _relay_body(self, request: Request, response: IResponse, trace_id: str) -> None:
        done = Deferred(lambda _: relay.transport.stopProducing())
        relay = _BodyRelay(request, done)
        response.deliverBody(relay)
        try:
            await done
        except CancelledError:
            raise
        except Exception as e:
            # The status line is gone already: cut the device's connection so
            # it cannot take a truncated body for a whole one.
            _log.info(
                "authproxy: target body failed error={error} trace_id={trace_id}",
                error=str(e) or type(e).__name__,
                trace_id=trace_id,
            )
            request.channel.transport.abortConnection()


def _has_body(request: Request) -> bool:
    length = request.getHeader(b"content-length")
    return bool(request.getHeader(b"transfer-encoding") or (length and length != b"0"))
