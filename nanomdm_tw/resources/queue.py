"""
``/v1/queue/{id}``: an enrollment's command queue, as NanoMDM lists and clears it.

``GET`` lists what the enrollment will be sent (NanoMDM's fields plus each
entry's state and last report; ``?all=1`` adds answered and cleared
entries); ``DELETE /v1/queue/{id,id,...}`` clears whole queues, and
``DELETE /v1/queue/{id}?command_uuid=U`` takes one command back.
"""

from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..errors import MessageError, StorageBusy
from ..storage.inspection import IInspectionStore, IQueueEditor, QueueCursor, QueueEntry
from .jsonio import b64, json_body, json_error, rfc3339
from .pagination import QUEUE, QueryArgs, parse_page
from .paths import path_text
from .render import async_render


def entry_state(entry: QueueEntry) -> dict:
    """Where one queue entry stands: state, priority and the last report on it."""
    item = {
        "state": entry.state,
        "priority": entry.priority,
        "not_now_count": entry.not_now_count,
    }
    if entry.status is not None:
        item["status"] = entry.status
    if entry.enqueued_at is not None:
        item["enqueued_at"] = rfc3339(entry.enqueued_at)
    if entry.reported_at is not None:
        item["reported_at"] = rfc3339(entry.reported_at)
    return item


def queue_item(entry: QueueEntry) -> dict:
    """NanoMDM's QueueCommand (command omitted when empty) plus the entry's state."""
    item = {"command_uuid": entry.command_uuid, "request_type": entry.request_type}
    if entry.command:
        item["command"] = b64(entry.command)
    item.update(entry_state(entry))
    return item


class QueueResource(Resource):
    isLeaf = True
    _log = Logger()

    def __init__(self, store: IInspectionStore, editor: IQueueEditor):
        super().__init__()
        self._store = store
        self._editor = editor

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            enrollment_id = path_text(request.postpath)
            request.nanomdm_context["enrollment_id"] = enrollment_id or "-"
            if not enrollment_id:
                raise MessageError("missing enrollment id")
            args = QueryArgs.of(request)
            page = parse_page(args, QUEUE, nanomdm=True)
            include_answered = args.flag("all")
        except MessageError as e:
            return json_error(request, e)
        entries = await self._store.queued_commands(
            enrollment_id,
            page.limit + 1,
            after=QueueCursor(*page.after) if page.after else None,
            offset=page.offset or 0,
            include_answered=include_answered,
        )
        entries, next_cursor = page.split(entries, lambda e: (e.priority, e.seq))
        document: dict = {"commands": [queue_item(e) for e in entries]}
        if next_cursor is not None:
            document["next_cursor"] = next_cursor
        request.nanomdm_context["outcome"] = f"listed {len(entries)} queued"
        return json_body(request, document)

    @async_render
    async def render_DELETE(self, request: Request) -> bytes:
        try:
            args = QueryArgs.of(request)
            # A misspelt command_uuid must not clear the whole queue.
            args.refuse_unknown(("command_uuid",))
            command_uuid = args.one("command_uuid")
            if command_uuid is not None:
                return await self._remove(request, command_uuid)
            ids = [i.strip() for i in path_text(request.postpath).split(",")]
            ids = [i for i in ids if i]
            if not ids:
                raise MessageError("missing enrollment id(s)")
        except MessageError as e:
            return json_error(request, e)
        context = request.nanomdm_context
        context["enrollment_id"] = ids[0] if len(ids) == 1 else f"{ids[0]}(+{len(ids) - 1})"
        failed = {}
        for enrollment_id in ids:
            try:
                await self._editor.clear_queue_by_id(enrollment_id)
            except (CancelledError, StorageBusy):
                raise
            except Exception as e:
                self._log.failure(
                    "clearing the queue of {enrollment_id}", enrollment_id=enrollment_id
                )
                failed[enrollment_id] = str(e) or e.__class__.__name__
        context["outcome"] = f"cleared {len(ids) - len(failed)} queues"
        if not failed:
            request.setResponseCode(204)
            return b""
        status = 207 if len(failed) < len(ids) else 500
        return json_body(request, {"status": failed}, status)

    async def _remove(self, request: Request, command_uuid: str) -> bytes:
        """Take one pending or NotNow command off one enrollment's queue."""
        enrollment_id = path_text(request.postpath)
        request.nanomdm_context["enrollment_id"] = enrollment_id or "-"
        if not enrollment_id:
            raise MessageError("missing enrollment id")
        if not command_uuid:
            raise MessageError("command_uuid is empty")
        if not await self._editor.remove_queued_command(enrollment_id, command_uuid):
            raise MessageError(
                f"enrollment {enrollment_id} has no pending command {command_uuid}", 404
            )
        request.nanomdm_context["outcome"] = "removed " + command_uuid
        request.setResponseCode(204)
        return b""
