"""
The JSON-body forms of the fan-outs: ``POST /v1/enqueue`` and ``POST /v1/push``.

A URL holds a few thousand enrollment IDs at most before proxies refuse
it; a JSON body holds a fleet.  These read the IDs (and the command) from
the body; enqueueing and pushing are then exactly the path forms'.
"""

import base64
import binascii

from ..errors import MessageError
from .clienttext import checked_text
from .jsonio import decode_json, optional_object

MAX_FANOUT_IDS = 100_000


def fanout_ids(document: dict, what: str) -> list[str]:
    ids = document.get("ids")
    if not isinstance(ids, list) or not ids:
        raise MessageError(f'{what}: "ids" must be a non-empty array of enrollment IDs')
    if len(ids) > MAX_FANOUT_IDS:
        raise MessageError(
            f"{what}: {len(ids)} enrollment IDs, at most {MAX_FANOUT_IDS} per request"
        )
    if not all(isinstance(i, str) and i for i in ids):
        raise MessageError(f'{what}: every entry of "ids" must be a non-empty string')
    entry = f'{what}: an entry of "ids"'
    for i in ids:
        checked_text(i, entry)
    return ids


def _document(body: bytes, what: str) -> dict:
    if not body:
        raise MessageError(f"{what}: empty body, send a JSON object")
    document = decode_json(body, what)
    if document is None:
        raise MessageError(f"{what}: send a JSON object")
    return optional_object(document, "the body", what)


def enqueue_request(body: bytes) -> tuple[list[str], bytes]:
    """``{"ids": [...], "command": "<base64 plist>"}``: the IDs and the raw command."""
    what = "enqueue"
    document = _document(body, what)
    ids = fanout_ids(document, what)
    command = document.get("command")
    if not isinstance(command, str) or not command:
        raise MessageError(f'{what}: "command" must be the command plist in base64')
    try:
        return ids, base64.b64decode(command, validate=True)
    except binascii.Error:
        raise MessageError(f'{what}: "command" is not valid base64') from None


def push_request(body: bytes) -> list[str]:
    """``{"ids": [...]}``: the IDs to push to."""
    return fanout_ids(_document(body, "push"), "push")
