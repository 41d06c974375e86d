"""
The device endpoints: ``/mdm`` (and ``/checkin`` with ``--checkin``).

Each request is authenticated (device identity certificate), decoded,
handed to the service chain, and answered with the chain's bytes.
Failures are 400/403/410/413 or 500, never 401: a device that sees a
401 unenrolls.
"""

from enum import Enum
from urllib.parse import parse_qsl

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..crypto.identity import DeviceIdentity
from ..logs import make_logger
from ..mdm.messages import decode_checkin, decode_command_report
from ..mdm.request import MDMRequest
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


class MDMEndpoint(Resource):
    isLeaf = True

    def __init__(
        self, service: IMDMService, identity: DeviceIdentity | None, accepts: Accepts
    ):
        """``identity`` None: the caller is trusted another way (the migration endpoint)."""
        super().__init__()
        self._service = service
        self._identity = identity
        self._accepts = accepts

    def _is_checkin(self, request: Request) -> bool:
        if self._accepts is Accepts.BOTH:
            content_type = request.getHeader(b"content-type") or b""
            return content_type.startswith(CHECKIN_CONTENT_TYPE)
        return self._accepts is Accepts.CHECKINS

    @async_render
    async def render_PUT(self, request: Request) -> bytes | None:
        body = read_body(request)
        context = request.nanomdm_context
        certificate = (
            self._identity.certificate(request.getHeader, body) if self._identity else None
        )
        is_checkin = self._is_checkin(request)
        if is_checkin:
            message = decode_checkin(body)
            context["outcome"] = context["message_type"] = message.message_type
        else:
            message = decode_command_report(body)
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
