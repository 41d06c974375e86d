"""
The API under ``/v1`` (HTTP Basic, user ``nanomdm``, password = ``--api`` key).

Answers use NanoMDM's JSON shapes (docs/openapi.yaml) so existing tooling
keeps working: per-ID ``status.{id}.command_error|push_result|push_error``,
top-level ``command_uuid``, ``request_type``, ``no_push``, and 200 when
every ID succeeded, 207 when some failed, 500 when all failed.
"""

import hmac
import json
from urllib.parse import unquote

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from ..errors import MessageError
from ..mdm.messages import decode_command
from ..storage.interfaces import ICommandEnqueuer
from .body import read_body
from .render import async_render

API_USER = b"nanomdm"


def json_body(request: Request, document: dict, status: int = 200) -> bytes:
    """Encode like NanoMDM's API (tab-indented, newline-terminated)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return (json.dumps(document, indent="\t") + "\n").encode("utf-8")


def result_status(per_id: dict[str, dict[str, str]], id_count: int) -> int:
    """NanoMDM's rule: 200 no failures, 207 some, 500 all."""
    failed = sum(
        1 for r in per_id.values() if "command_error" in r or "push_error" in r
    )
    if failed == 0:
        return 200
    return 207 if failed < id_count else 500


def enrollment_ids(request: Request) -> list[str]:
    """The comma-separated enrollment IDs that make up the rest of the path."""
    path = unquote(b"/".join(request.postpath).decode("utf-8", "replace"))
    ids = [i for i in path.split(",") if i]
    if not ids:
        raise MessageError("no enrollment IDs in the URL path")
    return ids


class UnauthorizedResource(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", b'Basic realm="nanomdm"')
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Unauthorized\n"


class APIGuard(Resource):
    """Lets a request through to its child only with the API key."""

    def __init__(self, api_key: str, protected: IResource):
        super().__init__()
        self._key = api_key.encode("utf-8")
        self._protected = protected

    def _authorized(self, request: Request) -> bool:
        user_ok = hmac.compare_digest(request.getUser() or b"", API_USER)
        password_ok = hmac.compare_digest(request.getPassword() or b"", self._key)
        return user_ok and password_ok

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        if not self._authorized(request):
            return UnauthorizedResource()
        return self._protected.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes:
        if not self._authorized(request):
            return UnauthorizedResource().render(request)
        return self._protected.render(request)


class EnqueueResource(Resource):
    """``PUT /v1/enqueue/{id,id,...}``: queue one raw command plist to many IDs."""

    isLeaf = True

    def __init__(self, enqueuer: ICommandEnqueuer):
        super().__init__()
        self._enqueuer = enqueuer

    @async_render
    async def render_PUT(self, request: Request) -> bytes:
        try:
            ids = enrollment_ids(request)
            command = decode_command(read_body(request))
        except MessageError as e:
            request.nanomdm_context["error"] = str(e)
            return json_body(request, {"command_error": str(e)}, e.status)
        context = request.nanomdm_context
        context["enrollment_id"] = ids[0] if len(ids) == 1 else f"{ids[0]}(+{len(ids) - 1})"
        context["outcome"] = "enqueue " + command.command_uuid
        errors = await self._enqueuer.enqueue_command(ids, command)
        per_id = {i: {"command_error": e} for i, e in errors.items()}
        document: dict = {}
        if per_id:
            document["status"] = per_id
        document["no_push"] = True
        document["command_uuid"] = command.command_uuid
        document["request_type"] = command.request_type
        return json_body(request, document, result_status(per_id, len(ids)))

    render_POST = render_PUT


def build_api(api_key: str, enqueuer: ICommandEnqueuer) -> APIGuard:
    """The ``/v1`` tree behind its Basic-auth guard."""
    v1 = Resource()
    v1.putChild(b"enqueue", EnqueueResource(enqueuer))
    return APIGuard(api_key, v1)
