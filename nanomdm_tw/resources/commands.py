"""
``GET /v1/commands/{uuid}``: one command and how each enrollment answered it.

NanoMDM has no such endpoint; ours shows the command as enqueued and, per
enrollment it was queued to, the queue entry's state and the last report,
with the ErrorChain of an Error report spelled out.
"""

import plistlib

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..errors import MessageError
from ..storage.inspection import IInspectionStore, QueueEntry
from .jsonio import b64, json_body, json_error, rfc3339
from .pagination import DELIVERIES, QueryArgs, parse_page
from .paths import path_text
from .queue import entry_state
from .render import async_render


def error_chain(result: bytes) -> list[dict] | None:
    """The result plist's ErrorChain: its dicts' string and integer values."""
    try:
        values = plistlib.loads(result)
    except Exception:  # a device's plist we stored as sent; nothing to show
        return None
    chain = values.get("ErrorChain") if isinstance(values, dict) else None
    if not isinstance(chain, list):
        return None
    return [
        {
            key: value
            for key, value in error.items()
            if isinstance(value, (str, int)) and not isinstance(value, bool)
        }
        for error in chain
        if isinstance(error, dict)
    ]


def delivery_item(entry: QueueEntry) -> dict:
    item = {"id": entry.enrollment_id, **entry_state(entry)}
    if entry.result:
        chain = error_chain(entry.result)
        if chain:
            item["error_chain"] = chain
        item["result"] = b64(entry.result)
    return item


class CommandsResource(Resource):
    isLeaf = True

    def __init__(self, store: IInspectionStore):
        super().__init__()
        self._store = store

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            command_uuid = path_text(request.postpath)
            if not command_uuid:
                raise MessageError("missing command UUID in the URL path")
            args = QueryArgs.of(request)
            args.refuse_unknown(("limit", "cursor", "offset"))
            page = parse_page(args, DELIVERIES)
        except MessageError as e:
            return json_error(request, e)
        command = await self._store.retrieve_command(command_uuid)
        if command is None:
            return json_error(request, MessageError(f"no command {command_uuid}", 404))
        entries = await self._store.command_deliveries(
            command_uuid, page.limit + 1, after=page.after[0] if page.after else None
        )
        entries, next_cursor = page.split(entries, lambda e: (e.enrollment_id,))
        document: dict = {
            "command_uuid": command.command_uuid,
            "request_type": command.request_type,
            "command": b64(command.command),
        }
        if command.created is not None:
            document["created"] = rfc3339(command.created)
        document["deliveries"] = [delivery_item(e) for e in entries]
        if next_cursor is not None:
            document["next_cursor"] = next_cursor
        request.nanomdm_context["outcome"] = f"command {command_uuid}"
        return json_body(request, document)
