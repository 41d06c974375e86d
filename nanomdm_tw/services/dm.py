"""
``--dm URL``: Declarative Management check-ins forwarded to a DDM server.

As NanoMDM's dmhook: the message's Endpoint (``status``,
``declaration-items``, ``declaration/…``) is resolved against the URL the
way Go resolves relative URLs, so the URL should end with a slash (we warn
at start-up when it does not: its last path segment would be replaced).
Data, when present, is sent with PUT as ``application/json``; otherwise a
GET.  The enrollment travels in X-Enrollment-ID, X-Enrollment-Type and
X-Enrollment-ParentID (user channels), the request in X-Trace-ID.  The
reply body goes back to the device; any status but 200 is an error (a 500
to the device).  With ``--dm-send-hmac-key`` the request body is signed
in X-Hmac-Signature; with ``--dm-recv-hmac-key`` the reply must carry a
valid signature of its body, or the device gets an error.  Signatures
of big bodies are computed in an Offload thread.
"""

import hmac
from urllib.parse import urljoin

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from zope.interface import Interface, implementer

from ..errors import HTTPStatusError
from ..mdm.messages import DeclarativeManagement
from ..mdm.request import MDMRequest
from ..deadline import within
from ..offload import Offload, run_if_big
from .webhook import HMAC_HEADER, TRACE_ID_HEADER, hmac_signature


class IDeclarativeManagement(Interface):
    async def declarative_management(
        request: MDMRequest, message: DeclarativeManagement
    ) -> bytes:
        """The body to answer the device's DeclarativeManagement check-in with."""


class ForwardingError(HTTPStatusError):
    """The DDM server could not be reached or its answer is not acceptable."""

    status = 500


@implementer(IDeclarativeManagement)
class DeclarativeManagementForwarder:
    _log = Logger()

    def __init__(
        self,
        url: str,
        http: HTTPClient,
        send_hmac_key: bytes = b"",
        recv_hmac_key: bytes = b"",
        clock=None,
        timeout: float = 30.0,
        offload: Offload | None = None,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self._url = url
        self._http = http
        self._send_hmac_key = send_hmac_key
        self._recv_hmac_key = recv_hmac_key
        self._clock = clock
        self._timeout = timeout
        self._offload = offload
        if not url.endswith("/"):
            self._log.warn(
                "--dm URL {url} has no trailing slash: its last path segment"
                " will be replaced by the Declarative Management endpoint",
                url=url,
            )

    def endpoint_url(self, endpoint: str) -> str:
        """Where one Endpoint goes: RFC 3986 resolution, as Go's ResolveReference."""
        return urljoin(self._url, endpoint)

    async def declarative_management(
        self, request: MDMRequest, message: DeclarativeManagement
    ) -> bytes:
        url = self.endpoint_url(message.endpoint)
        try:
            code, body = await self._call(request, message, url)
        except CancelledError:
            raise
        except Exception as e:
            raise self._failed(request, url, str(e) or type(e).__name__) from e
        if code != 200:
            raise self._failed(request, url, f"HTTP {code} ({len(body)} bytes)")
        return body

    async def _call(
        self, request: MDMRequest, message: DeclarativeManagement, url: str
    ) -> tuple[int, bytes]:
        attempt = Deferred.fromCoroutine(self._exchange(request, message, url))
        return await within(attempt, self._timeout, self._clock)

    async def _exchange(
        self, request: MDMRequest, message: DeclarativeManagement, url: str
    ) -> tuple[int, bytes]:
        enroll_id = request.enroll_id
        headers = {
            b"X-Enrollment-ID": [enroll_id.id.encode("utf-8")],
            b"X-Enrollment-Type": [str(enroll_id.type).encode("ascii")],
            TRACE_ID_HEADER: [request.trace_id.encode("ascii")],
        }
        if enroll_id.parent_id:
            headers[b"X-Enrollment-ParentID"] = [enroll_id.parent_id.encode("utf-8")]
        if message.data:
            headers[b"Content-Type"] = [b"application/json"]
        if self._send_hmac_key:
            headers[HMAC_HEADER] = [await self._signature(self._send_hmac_key, message.data)]
        method = "PUT" if message.data else "GET"
        response = await self._http.request(
            method,
            url.encode("utf-8"),
            data=message.data or None,
            headers=headers,
            allow_redirects=False,
        )
        body = await response.content()
        if self._recv_hmac_key:
            # As NanoMDM: the signature is checked before the status.
            signature = response.headers.getRawHeaders(HMAC_HEADER, [b""])[0]
            expected = await self._signature(self._recv_hmac_key, body)
            if not hmac.compare_digest(signature, expected):
                raise ValueError("reply has no valid " + HMAC_HEADER.decode())
        return response.code, body

    def _signature(self, key: bytes, body: bytes) -> Deferred:
        return run_if_big(self._offload, len(body), hmac_signature, key, body)

    def _failed(self, request: MDMRequest, url: str, reason: str) -> ForwardingError:
        self._log.warn(
            "Declarative Management forwarding failed url={url} reason={reason}"
            " enrollment_id={enrollment_id} trace_id={trace_id}",
            url=url,
            reason=reason,
            enrollment_id=request.enroll_id.id,
            trace_id=request.trace_id,
        )
        return ForwardingError("Declarative Management: " + reason)
