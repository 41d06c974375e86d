"""
The JSON-body forms of the fan-outs: ``POST /v1/enqueue`` and ``POST /v1/push``.

A URL holds a few thousand enrollment IDs at most before proxies refuse
it; a JSON body holds a fleet.  These read the IDs (and the command) from
the body; enqueueing and pushing are then exactly the path forms'.  The
command comes as a plist in base64, or as a catalogue ``request_type``
with ``arguments`` that the server builds into one (a console's form).
"""

import base64
import binascii
from typing import NamedTuple

from ..errors import MessageError
from ..mdm.catalogue import CATALOGUE, DATA, CommandArgumentError, build_command
from .clienttext import checked_text
from .jsonio import decode_json, optional_bool, optional_object

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


class EnqueueBody(NamedTuple):
    ids: list[str]
    command: bytes  # the raw plist
    no_push: bool


def enqueue_request(body: bytes) -> EnqueueBody:
    """
    ``{"ids": [...], "command": "<base64 plist>"}`` or ``{"ids": [...],
    "request_type": "...", "arguments": {...}}``, either with ``"no_push"``.
    """
    what = "enqueue"
    document = _document(body, what)
    ids = fanout_ids(document, what)
    no_push = bool(optional_bool(document.get("no_push"), '"no_push"', what))
    if "request_type" in document:
        if "command" in document:
            raise MessageError(f'{what}: send "command" or "request_type", not both')
        return EnqueueBody(ids, catalogue_command(document, what), no_push)
    command = document.get("command")
    if not isinstance(command, str) or not command:
        raise MessageError(
            f'{what}: "command" must be the command plist in base64'
            ' (or send "request_type" and "arguments")'
        )
    try:
        return EnqueueBody(ids, base64.b64decode(command, validate=True), no_push)
    except binascii.Error:
        raise MessageError(f'{what}: "command" is not valid base64') from None


def catalogue_command(document: dict, what: str) -> bytes:
    """The plist of a catalogue command, its arguments by Command key (data in base64)."""
    request_type = document["request_type"]
    if not isinstance(request_type, str) or request_type not in CATALOGUE:
        raise MessageError(
            f'{what}: "request_type" must be a command of GET /v1/catalogue, not {request_type!r}'
        )
    values = dict(optional_object(document.get("arguments"), '"arguments"', what))
    for argument in CATALOGUE[request_type].arguments:
        value = values.get(argument.key)
        if argument.kind == DATA and value is not None:
            values[argument.key] = _base64_argument(value, argument.key, what)
    try:
        return build_command(request_type, values)
    except CommandArgumentError as e:
        raise MessageError(f"{what}: {e}") from None
    except (ValueError, OverflowError) as e:  # plistlib: control characters, 2**64 and over
        raise MessageError(f"{what}: {request_type}: a value a plist cannot hold: {e}") from None


def _base64_argument(value: object, key: str, what: str) -> bytes:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            pass
    raise MessageError(f"{what}: {key} must be the file's contents in base64")


def push_request(body: bytes) -> list[str]:
    """``{"ids": [...]}``: the IDs to push to."""
    return fanout_ids(_document(body, "push"), "push")
