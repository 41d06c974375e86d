"""
The device endpoints: ``/mdm`` (and ``/checkin`` with ``--checkin``).

Each request is authenticated (device identity certificate), decoded
(a big body in an Offload thread, see offload.py), handed to the service
chain, and answered with the chain's bytes.
Failures are 400/403/410/413 or 500, never 401: a device that sees a
401 unenrolls.
"""

import sys
from collections.abc import Callable
from enum import Enum
from urllib.parse import parse_qsl

from cryptography import x509
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..crypto.content import DigestedBody
from ..crypto.identity import DeviceIdentity
from ..logs import make_logger
from ..mdm.messages import Message, decode_checkin, decode_command_report
from ..mdm.request import MDMRequest
from ..offload import Offload
from ..services.interfaces import IMDMService
from .body import read_body
from .render import async_render

CHECKIN_CONTENT_TYPE = b"application/x-apple-aspen-mdm-checkin"
PLIST_CONTENT_TYPE = b"application/xml; charset=utf-8"

_log = make_logger("nanomdm_tw.mdm")


class Accepts(Enum):
    """What one endpoint takes: NanoMDM's single /mdm takes both by Content-Type."""

    CHECKINS = "checkins"
    REPORTS = "reports"
    BOTH = "both"


def url_params(request: Request) -> dict[str, str]:
    """The query parameters of the request URL (first value of each)."""
    query = request.uri.partition(b"?")[2]
    if not query:
        return {}
    return dict(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True))


def _read_and_digest(request: Request) -> DigestedBody:
    """
    A big body and the digests its Mdm-Signature may name (in an Offload thread).

    Should the client go meanwhile, twisted.web closes ``request.content`` on
    the reactor; the file's own lock makes that wait for this read to end.
    """
    return DigestedBody(read_body(request))


def _decode_big(decode: Callable[[bytes], Message], body: bytes) -> Message:
    """
    Decode a big body (in an Offload thread) and let its plist tree go there too.

    Freeing the half a million objects of a 20 MB report takes tens of
    milliseconds; on the reactor thread, where the request ends, every
    other request would wait for it.  Nothing reads the values after
    decoding but the debug log, which shows their keys.
    """
    message = decode(body)
    message.values = dict.fromkeys(message.values)
    return message


class MDMEndpoint(Resource):
    isLeaf = True

    def __init__(
        self,
        service: IMDMService,
        identity: DeviceIdentity | None,
        accepts: Accepts,
        offload: Offload | None = None,
    ):
        """
        ``identity`` None: the caller is trusted another way (the migration endpoint).
        ``offload`` None: every body is decoded on the reactor thread.
        """
        super().__init__()
        self._service = service
        self._identity = identity
        self._accepts = accepts
        self._offload = offload
        # Bodies longer than this are decoded in a thread (one comparison per request).
        self._big = offload.threshold if offload is not None else sys.maxsize

    def _is_checkin(self, request: Request) -> bool:
        if self._accepts is Accepts.BOTH:
            content_type = request.getHeader(b"content-type") or b""
            return content_type.startswith(CHECKIN_CONTENT_TYPE)
        return self._accepts is Accepts.CHECKINS

    async def _read_big(
        self, request: Request, decode: Callable[[bytes], Message]
    ) -> tuple[Message, x509.Certificate | None]:
        """As the small path, each step that reads the whole body in a thread."""
        identity = self._identity
        if identity is not None and identity.checks_body_signature:
            signed = await self._offload.run(_read_and_digest, request)
            certificate = identity.certificate(request.getHeader, signed)
            body = signed.body
        else:
            body = await self._offload.run(read_body, request)
            certificate = identity.certificate(request.getHeader, body) if identity else None
        return await self._offload.run(_decode_big, decode, body), certificate

    @async_render
    async def render_PUT(self, request: Request) -> bytes | None:
        context = request.nanomdm_context
        decode = decode_checkin if self._is_checkin(request) else decode_command_report
        if request.received > self._big:
            message, certificate = await self._read_big(request, decode)
        else:
            body = read_body(request)
            certificate = (
                self._identity.certificate(request.getHeader, body) if self._identity else None
            )
            message = decode(body)
        is_checkin = decode is decode_checkin
        if is_checkin:
            context["outcome"] = context["message_type"] = message.message_type
        else:
            context["message_type"] = "report:" + message.status  # a known Status
            context["outcome"] = " ".join(
                filter(None, (context["message_type"], message.command_uuid))
            )
        context["enrollment_id"] = message.enroll_id.id
        _log.debug(
            "{outcome} from {enrollment_id} ({enroll_type}) trace_id={trace_id}"
            " keys={keys} params={params}",
            outcome=context["outcome"],
            enrollment_id=message.enroll_id.id,
            enroll_type=str(message.enroll_id.type),
            trace_id=context["trace_id"],
            keys=sorted(message.values),
            params=request.args,
        )
        mdm_request = MDMRequest(
            enroll_id=message.enroll_id,
            certificate=certificate,
            trace_id=context["trace_id"],
            params=url_params(request),
        )
        if is_checkin:
            answer = await self._service.checkin(mdm_request, message)
        else:
            command = await self._service.command_report(mdm_request, message)
            answer = command.raw if command else None
            if command:
                context["outcome"] += " -> " + command.command_uuid
        if answer:
            request.setHeader(b"content-type", PLIST_CONTENT_TYPE)
        return answer

    render_POST = render_PUT
