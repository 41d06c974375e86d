"""
JSON in and out of the API, encoded as NanoMDM's Go encoder does.

Go's ``json.Encoder`` with a tab indent ends each document with a newline;
its ``time.Time`` is RFC 3339 (the zero time when unknown) and its
``[]byte`` standard base64, so clients written for NanoMDM read ours.
"""

import base64
import datetime
import json

from twisted.web.server import Request

from ..errors import MessageError
from .clienttext import checked_text

# Go's zero time.Time, which NanoMDM answers when it has no time.
ZERO_TIME = "0001-01-01T00:00:00Z"


def json_body(request: Request, document: dict, status: int = 200) -> bytes:
    """Encode like NanoMDM's API (tab-indented, newline-terminated)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return (json.dumps(document, indent="\t") + "\n").encode("utf-8")


def json_error(request: Request, error: MessageError) -> bytes:
    """A client's mistake as ``{"error": ...}`` with its status, noted for the log line."""
    request.nanomdm_context["error"] = str(error)
    return json_body(request, {"error": str(error)}, error.status)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_json(body: bytes, what: str) -> object:
    """The JSON document a client sent, or a 400 that says where it went wrong."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MessageError(f"{what}: invalid JSON: {e}") from None


def string_list(value: object, name: str, what: str) -> tuple[str, ...]:
    """A JSON array of strings (null: none), else a 400 naming the field."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageError(f"{what}: {name} must be an array of strings")
    return tuple(checked_text(v, f"{what}: {name}") for v in value)


def optional_bool(value: object, name: str, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise MessageError(f"{what}: {name} must be true or false")


def optional_object(value: object, name: str, what: str) -> dict:
    """A JSON object (null: empty), else a 400 naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(f"{what}: {name} must be a JSON object")
    return value
