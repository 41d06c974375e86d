"""
The API under ``/v1`` (HTTP Basic, user ``nanomdm``, password = ``--api`` key).

Answers use NanoMDM's JSON shapes (docs/openapi.yaml) so existing tooling
keeps working: per-ID ``status.{id}.command_error|push_result|push_error``,
top-level ``command_uuid``, ``request_type``, ``no_push``, ``push_error``,
``command_error``, and 200 when every ID succeeded, 207 when some failed,
500 when all failed.  The inspection resources (enrollments, queues,
commands) live in their own modules; ``build_api`` puts them in the tree.
"""

import hmac
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from ..crypto.pushcert import certificate_not_after, parse_push_certificate
from ..errors import MessageError, StorageBusy
from ..mdm.messages import Command, decode_command
from ..offload import Offload
from ..storage.interfaces import ICommandEnqueuer, IPushCertStore
from .body import read_body
from .clienttext import checked_text
from .catalogue import CatalogueResource
from .commands import CommandsResource
from .enrollments import EnrollmentsResource
from .fanout import enqueue_request, push_request
from .jsonio import json_body, json_error, rfc3339
from .mdm import url_params
from .methods import Directory, allowed_methods, methods_for, not_allowed
from .openapi import OpenAPIResource
from .paths import enrollment_ids
from .pushcerts import PushCertsResource
from .queue import QueueResource
from .render import async_render

API_USER = b"nanomdm"

_log = Logger(namespace="nanomdm_tw.api")

# What the API needs of the push service: results per enrollment ID.
Pusher = Callable[[list[str]], Awaitable[dict[str, Any]]]


def result_status(document: dict, id_count: int) -> int:
    """NanoMDM's rule: 500 on a top-level error or when all failed, 207 some, else 200."""
    if "command_error" in document or "push_error" in document:
        return 500
    failed = sum(
        1
        for r in document.get("status", {}).values()
        if "command_error" in r or "push_error" in r
    )
    return failure_status(failed, id_count)


def failure_status(failed: int, id_count: int) -> int:
    """200 when no ID failed, 207 when some did, 500 when all did."""
    if failed == 0:
        return 200
    return 207 if failed < id_count else 500


def push_outcome(result: Any) -> dict[str, str]:
    """One push result as NanoMDM's per-ID fields."""
    if result.apns_id and result.status == 200:
        return {"push_result": result.apns_id}
    reason = result.reason or "push failed"
    if result.status:
        reason = f"{reason} (HTTP {result.status})"
    return {"push_error": reason}


async def run_pusher(pusher: Pusher, ids: list[str]) -> tuple[dict[str, Any], str | None]:
    """The pusher's results per ID, or no results and why the whole push failed."""
    try:
        return await pusher(ids), None
    except StorageBusy:
        raise  # the whole request is answered 503, to be tried again
    except Exception as e:
        _log.failure("push to {count} enrollments failed", count=len(ids))
        return {}, str(e) or e.__class__.__name__


async def push_into(document: dict, pusher: Pusher, ids: list[str]) -> None:
    """Push to ``ids`` and record each outcome in the answer document."""
    if not ids:
        return
    results, error = await run_pusher(pusher, ids)
    if error is not None:
        document["push_error"] = error
        return
    status = document.setdefault("status", {})
    for enrollment_id, result in results.items():
        status.setdefault(enrollment_id, {}).update(push_outcome(result))


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
        request.answers_json = True  # a busy database is told in JSON here (render.py)
        if self._protected.isLeaf:
            request.postpath.insert(0, request.prepath.pop())
            return self._protected
        return self._protected.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes:
        if not self._authorized(request):
            return UnauthorizedResource().render(request)
        request.answers_json = True
        # The request's own 405 check saw this guard, which takes any method.
        allowed = methods_for(self._protected, request)
        if allowed is not None and request.method not in allowed:
            return not_allowed(request, allowed)
        return self._protected.render(request)

    def getStaticEntity(self, name: bytes) -> IResource | None:
        """The protected tree's static child, naming metrics' endpoints; never served."""
        return self._protected.getStaticEntity(name)


def is_json_fanout(request: Request) -> bool:
    """``POST`` with no IDs in the path: the IDs (and command) are in a JSON body."""
    return request.method == b"POST" and not any(request.postpath)


def fanout_methods(resource: Resource, request: Request) -> tuple[bytes, ...] | None:
    """
    ``/v1/enqueue`` or ``/v1/push`` itself (no slash): only the JSON-body POST
    lives there; ``/v1/enqueue/`` stays NanoMDM's path form without IDs (400).
    """
    return (b"POST",) if not request.postpath else allowed_methods(type(resource))


def _read_command(request: Request) -> tuple[list[str], Command, bool]:
    """
    The IDs and the command of an enqueue request, from its path or its JSON
    body, and whether not to push (``?nopush=1`` or the body's ``no_push``).
    """
    if is_json_fanout(request):
        ids, raw, no_push = enqueue_request(read_body(request))
    else:
        ids, raw = enrollment_ids(request), read_body(request)
        no_push = False
    no_push = no_push or bool(url_params(request).get("nopush"))
    return ids, decode_command(raw), no_push


class EnqueueResource(Resource):
    """
    ``PUT /v1/enqueue/{id,id,...}[?nopush=1]``: queue one raw command to many
    IDs; ``POST /v1/enqueue`` takes the IDs and the command in a JSON body.
    A big command (a profile of megabytes) is read and decoded in an Offload thread.
    """

    isLeaf = True

    def __init__(
        self, enqueuer: ICommandEnqueuer, pusher: Pusher | None, offload: Offload | None = None
    ):
        super().__init__()
        self._enqueuer = enqueuer
        self._pusher = pusher
        self._offload = offload
        self._big = offload.threshold if offload is not None else sys.maxsize

    allowed_methods_for = fanout_methods

    @async_render
    async def render_PUT(self, request: Request) -> bytes:
        context = request.nanomdm_context
        try:
            if request.received > self._big:
                ids, command, no_push = await self._offload.run(_read_command, request)
            else:
                ids, command, no_push = _read_command(request)
        except MessageError as e:
            return _command_refused(request, e)
        context["enrollment_id"] = ids[0] if len(ids) == 1 else f"{ids[0]}(+{len(ids) - 1})"
        context["outcome"] = "enqueue " + command.command_uuid
        no_push = no_push or self._pusher is None
        try:
            errors = await self._enqueuer.enqueue_command(ids, command)
        except MessageError as e:  # the database refused a value (too long for its column)
            return _command_refused(request, e)
        document: dict = {}
        if errors:
            document["status"] = {i: {"command_error": e} for i, e in errors.items()}
        if not no_push:
            await push_into(document, self._pusher, [i for i in ids if i not in errors])
        else:
            document["no_push"] = True
        document["command_uuid"] = command.command_uuid
        document["request_type"] = command.request_type
        return json_body(request, document, result_status(document, len(ids)))

    render_POST = render_PUT


def _command_refused(request: Request, error: MessageError) -> bytes:
    """The client's mistake in an enqueue, as NanoMDM's JSON ``command_error``."""
    request.nanomdm_context["error"] = str(error)
    return json_body(request, {"command_error": str(error)}, error.status)


class PushResource(Resource):
    """
    ``GET /v1/push/{id,id,...}``: wake enrollments with an APNs push;
    ``POST /v1/push`` takes the IDs in a JSON body.
    """

    isLeaf = True

    def __init__(self, pusher: Pusher):
        super().__init__()
        self._pusher = pusher

    allowed_methods_for = fanout_methods

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            if is_json_fanout(request):
                ids = push_request(read_body(request))
            else:
                ids = enrollment_ids(request)
        except MessageError as e:
            request.nanomdm_context["error"] = str(e)
            return json_body(request, {"push_error": str(e)}, e.status)
        request.nanomdm_context["outcome"] = f"push to {len(ids)}"
        results, error = await run_pusher(self._pusher, ids)
        if error is not None:
            return json_body(request, {"push_error": error}, 500)
        return push_answer(request, len(ids), results)

    render_POST = render_PUT = render_GET


def push_answer(request: Request, id_count: int, results: dict[str, Any]) -> bytes:
    """
    What ``json_body`` makes of ``{"status": {id: push_outcome}}``, written
    directly: the json module indents in pure Python, at a cost per ID near
    that of the push itself.
    """
    dumps = json.dumps
    entries = []
    failed = 0
    for enrollment_id, result in results.items():
        ((field, text),) = push_outcome(result).items()
        failed += field == "push_error"
        entries.append(f'\t\t{dumps(enrollment_id)}: {{\n\t\t\t"{field}": {dumps(text)}\n\t\t}}')
    status = "{\n" + ",\n".join(entries) + "\n\t}" if entries else "{}"
    request.setResponseCode(failure_status(failed, id_count))
    request.setHeader(b"content-type", b"application/json")
    return ('{\n\t"status": ' + status + "\n}\n").encode("utf-8")


class PushCertResource(Resource):
    """``PUT /v1/pushcert`` uploads a push cert + key; ``GET ?topic=`` describes one."""

    isLeaf = True

    def __init__(self, store: IPushCertStore):
        super().__init__()
        self._store = store

    @async_render
    async def render_PUT(self, request: Request) -> bytes:
        try:
            push_cert = parse_push_certificate(read_body(request))
        except MessageError as e:
            request.nanomdm_context["error"] = str(e)
            return json_body(request, {"error": str(e)}, e.status)
        await self._store.store_push_cert(
            push_cert.topic, push_cert.cert_pem, push_cert.key_pem
        )
        request.nanomdm_context["outcome"] = "stored push cert " + push_cert.topic
        return json_body(
            request,
            {"topic": push_cert.topic, "not_after": rfc3339(push_cert.not_after)},
        )

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            topic = checked_text(url_params(request).get("topic", ""), "query parameter topic")
            if not topic:
                raise MessageError("missing required query parameter: topic")
        except MessageError as e:
            return json_error(request, e)
        stored = await self._store.retrieve_push_cert(topic)
        if stored is None:
            # NanoMDM answers 500 (its storage error); an unknown topic is the client's mistake.
            return json_body(request, {"error": f"no push certificate for {topic}"}, 404)
        not_after = certificate_not_after(stored.cert_pem)
        return json_body(request, {"topic": topic, "not_after": rfc3339(not_after)})


def build_api(
    api_key: str,
    storage: Any,
    pusher: Pusher | None,
    escrow: IResource | None = None,
    push_certs: IPushCertStore | None = None,
    offload: Offload | None = None,
    server_state: dict[bytes, IResource] | None = None,
) -> APIGuard:
    """
    The ``/v1`` tree behind its Basic-auth guard.

    ``push_certs``: where uploads go (the push service, which then drops the
    topic's old APNs client); storage itself by default.  ``server_state``:
    children that answer from the server's settings (the overview).
    """
    v1 = Directory()
    if escrow is not None:
        v1.putChild(b"escrowkeyunlock", escrow)
    v1.putChild(b"enqueue", EnqueueResource(storage, pusher, offload))
    v1.putChild(b"enrollments", EnrollmentsResource(storage))
    v1.putChild(b"queue", QueueResource(storage, storage))
    v1.putChild(b"commands", CommandsResource(storage))
    v1.putChild(b"pushcert", PushCertResource(push_certs or storage))
    v1.putChild(b"pushcerts", PushCertsResource(storage))
    v1.putChild(b"openapi.yaml", OpenAPIResource())
    v1.putChild(b"catalogue", CatalogueResource())
    if pusher is not None:
        v1.putChild(b"push", PushResource(pusher))
    for name, child in (server_state or {}).items():
        v1.putChild(name, child)
    return APIGuard(api_key, v1)
