"""
Webhook event bodies, byte for byte as NanoMDM's webhook writes them.

NanoMDM marshals generated Go structs with ``encoding/json``: compact, keys
in field order (alphabetical, as its schema generator emits them), empty
optional fields left out, ``<``, ``>`` and ``&`` escaped, times in RFC 3339
with trailing zeros of the fraction trimmed.  Receivers written against
NanoMDM (and MicroMDM before it) parse exactly this.
"""

import base64
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..mdm import messages as m
from ..mdm.request import MDMRequest

CONNECT_TOPIC = "mdm.Connect"

# Go's encoding/json escapes these even inside strings; keys are fixed ASCII,
# so replacing them in the whole document only touches string values.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def checkin_topic(message: m.CheckinMessage) -> str:
    return "mdm." + message.message_type


def rfc3339(seconds: float) -> str:
    """A UTC time as Go's time.Time marshals it (RFC 3339, fraction trimmed)."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    # Not strftime: glibc writes year 1 (Go's zero time) as "1", Go as "0001".
    text = moment.isoformat(timespec="seconds").removesuffix("+00:00")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    if fraction:
        text += "." + fraction
    return text + "Z"


def _ids(request: MDMRequest) -> dict[str, str]:
    enroll_id = request.enroll_id
    ids = {"id": enroll_id.id}
    if enroll_id.parent_id:
        ids["parent_id"] = enroll_id.parent_id
    ids["type"] = str(enroll_id.type)
    return ids


def _envelope(
    topic: str, request: MDMRequest, created_at: float, key: str, body: dict[str, Any]
) -> dict[str, Any]:
    # "acknowledge_event" and "checkin_event" both sort before "created_at".
    return {
        key: body,
        "created_at": rfc3339(created_at),
        "event_id": request.trace_id,
        "topic": topic,
    }


def checkin_event(
    request: MDMRequest,
    message: m.CheckinMessage,
    created_at: float,
    token_update_tally: int | None = None,
) -> dict[str, Any]:
    """The event of one check-in; the tally only for TokenUpdate."""
    body: dict[str, Any] = {}
    if message.enrollment.enrollment_id:
        body["enrollment_id"] = message.enrollment.enrollment_id
    body["ids"] = _ids(request)
    body["raw_payload"] = base64.b64encode(message.raw).decode("ascii")
    if token_update_tally is not None:
        body["token_update_tally"] = token_update_tally
    if message.enrollment.udid:
        body["udid"] = message.enrollment.udid
    if request.params:
        body["url_params"] = request.params
    return _envelope(checkin_topic(message), request, created_at, "checkin_event", body)


def acknowledge_event(
    request: MDMRequest, report: m.CommandReport, created_at: float
) -> dict[str, Any]:
    """The mdm.Connect event of a command report (no command_uuid for Idle, as NanoMDM)."""
    body: dict[str, Any] = {}
    if report.command_uuid:
        body["command_uuid"] = report.command_uuid
    if report.enrollment.enrollment_id:
        body["enrollment_id"] = report.enrollment.enrollment_id
    body["ids"] = _ids(request)
    body["raw_payload"] = base64.b64encode(report.raw).decode("ascii")
    body["status"] = report.status
    if report.enrollment.udid:
        body["udid"] = report.enrollment.udid
    if request.params:
        body["url_params"] = request.params
    return _envelope(CONNECT_TOPIC, request, created_at, "acknowledge_event", body)


def encode_event(event: dict[str, Any]) -> bytes:
    """The JSON bytes Go's json.Marshal would produce for ``event``."""
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    for character, escaped in _GO_ESCAPES.items():
        text = text.replace(character, escaped)
    return text.encode("utf-8")


def encoded(make_event: Callable[..., dict[str, Any]], *args: Any) -> bytes:
    """The JSON of the event ``make_event(*args)`` builds: one call, to run in a thread."""
    return encode_event(make_event(*args))
