"""
The inspection API's JSON, field by field: NanoMDM's names, order and
omitempty (Go's []byte as base64, zero time.Time when unknown), our fields
after them; and the request bodies it reads, every bad one a 400.
"""

import base64
import datetime
import json
import plistlib

import pytest

from nanomdm_tw.errors import MessageError
from nanomdm_tw.resources.commands import delivery_item, error_chain
from nanomdm_tw.resources.enrollments import detailed_item, enrollment_item, nanomdm_query
from nanomdm_tw.resources.fanout import MAX_FANOUT_IDS, enqueue_request, push_request
from nanomdm_tw.storage.inspection import EnrollmentFilter, EnrollmentRecord, QueueEntry

UTC = datetime.timezone.utc
SEEN = datetime.datetime(2026, 11, 29, 19, 47, 25, 750000, tzinfo=UTC)


def record(**fields) -> EnrollmentRecord:
    values = dict(
        id="DEV-1", type="Device", device_id="DEV-1", user_id=None, serial_number=None,
        user_short_name=None, user_long_name=None, topic="com.apple.mgmt.X", enabled=True,
        token_update_tally=1, last_seen=None, created=None, updated=None,
    )  # fmt: skip
    values.update(fields)
    return EnrollmentRecord(**values)


def test_bare_enrollment_as_nanomdm() -> None:
    item = enrollment_item(record())
    assert json.dumps(item) == json.dumps(
        {"id": "DEV-1", "type": "Device", "device": {}, "enabled": True,
         "token_update_tally": 1, "last_seen": "0001-01-01T00:00:00Z"}
    )  # fmt: skip


def test_full_enrollment_as_nanomdm() -> None:
    item = enrollment_item(
        record(
            id="DEV-1:USER", type="User", serial_number="C02X", user_short_name="amy",
            user_long_name="Amy Doe", enabled=False, token_update_tally=3,
            last_seen=SEEN.astimezone(datetime.timezone(datetime.timedelta(hours=2))),
            device_cert="-----BEGIN CERTIFICATE-----\n...", unlock_token=b"\x00\xffunlock",
        )
    )  # fmt: skip
    assert list(item) == [
        "id", "type", "device", "user", "enabled", "token_update_tally", "last_seen"
    ]  # fmt: skip
    assert item["device"] == {
        "serial_number": "C02X",
        "device_cert": "-----BEGIN CERTIFICATE-----\n...",
        "unlock_token": base64.b64encode(b"\x00\xffunlock").decode(),
    }
    assert item["user"] == {"user_short_name": "amy", "user_long_name": "Amy Doe"}
    assert item["last_seen"] == "2026-11-29T19:47:25Z"
    assert item["enabled"] is False and item["token_update_tally"] == 3


def test_user_without_names_has_no_user_object() -> None:
    assert "user" not in enrollment_item(record(type="User", user_id="U-1"))
    assert enrollment_item(record(user_long_name="Amy"))["user"] == {"user_long_name": "Amy"}


def test_detailed_item_adds_ours_after_nanomdms() -> None:
    item = detailed_item(
        record(id="D:U", device_id="D", user_id="U", created=SEEN, updated=SEEN)
    )
    assert list(item)[-5:] == ["topic", "device_id", "user_id", "created", "updated"]
    assert (item["device_id"], item["user_id"], item["created"]) == (
        "D",
        "U",
        "2026-11-29T19:47:25Z",
    )
    bare = detailed_item(record())
    assert list(bare)[-2:] == ["topic", "device_id"]


def entry(**fields) -> QueueEntry:
    values = dict(
        enrollment_id="DEV-1", command_uuid="C-1", request_type="ProfileList",
        command=b"<plist/>", priority=0, seq=1, active=True, status=None,
        not_now_count=0, result=None, enqueued_at=SEEN, reported_at=None,
    )  # fmt: skip
    values.update(fields)
    return QueueEntry(**values)


def test_delivery_with_error_chain() -> None:
    result = plistlib.dumps(
        {
            "Status": "Error",
            "ErrorChain": [
                {"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
                 "LocalizedDescription": "Nope", "USEnglishDescription": "Nope",
                 "Extra": [1], "Flag": True},
                "not a dict",
            ],
        }
    )  # fmt: skip
    item = delivery_item(entry(status="Error", active=False, result=result, reported_at=SEEN))
    assert item == {
        "id": "DEV-1", "state": "answered", "priority": 0, "not_now_count": 0,
        "status": "Error", "enqueued_at": "2026-11-29T19:47:25Z",
        "reported_at": "2026-11-29T19:47:25Z",
        "error_chain": [{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
                         "LocalizedDescription": "Nope", "USEnglishDescription": "Nope"}],
        "result": base64.b64encode(result).decode(),
    }  # fmt: skip


def test_delivery_pending_and_unreadable_results() -> None:
    assert delivery_item(entry(enqueued_at=None)) == {
        "id": "DEV-1", "state": "pending", "priority": 0, "not_now_count": 0,
    }  # fmt: skip
    assert error_chain(b"not a plist") is None
    assert error_chain(plistlib.dumps({"Status": "Acknowledged"})) is None
    assert error_chain(plistlib.dumps(["a list"])) is None


NONE = {"include_device_cert": False, "include_unlock_token": False}


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"", (EnrollmentFilter(), NONE)),
        (b"null", (EnrollmentFilter(), NONE)),
        (b"{}", (EnrollmentFilter(), NONE)),
        (b'{"filter": null, "options": null, "other": [1]}', (EnrollmentFilter(), NONE)),
        (b'{"filter": {"ids": ["A", "B"], "serials": ["S"], "user_short_names": ["amy"],'
         b' "types": ["Device"], "enabled": false, "future": 1},'
         b' "options": {"include_device_cert": true, "include_unlock_token": false}}',
         (EnrollmentFilter(ids=("A", "B"), serials=("S",), user_short_names=("amy",),
                           types=("Device",), enabled=False),
          {"include_device_cert": True, "include_unlock_token": False})),
        (b'{"filter": {"ids": [], "enabled": null}}', (EnrollmentFilter(), NONE)),
    ],
)  # fmt: skip
def test_nanomdm_query_bodies(body, expected) -> None:
    assert nanomdm_query(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"{", b"[]", b'"x"', b"1", b"\xff", b"{} {}",
        b'{"filter": []}', b'{"filter": {"ids": "A"}}', b'{"filter": {"ids": [1]}}',
        b'{"filter": {"serials": [null]}}', b'{"filter": {"types": {}}}',
        b'{"filter": {"user_short_names": "amy"}}', b'{"filter": {"enabled": "true"}}',
        b'{"filter": {"enabled": 1}}', b'{"options": true}',
        b'{"options": {"include_device_cert": "yes"}}',
        b'{"options": {"include_unlock_token": 0}}',
    ],
)  # fmt: skip
def test_bad_nanomdm_query_bodies_are_400(body) -> None:
    with pytest.raises(MessageError) as raised:
        nanomdm_query(body)
    assert raised.value.status == 400


def test_fanout_bodies() -> None:
    command = base64.b64encode(b"<plist/>").decode()
    body = json.dumps({"ids": ["A", "B"], "command": command, "more": 1}).encode()
    assert enqueue_request(body) == (["A", "B"], b"<plist/>", False)
    assert push_request(b'{"ids": ["A"]}') == ["A"]
    ids = [str(n) for n in range(MAX_FANOUT_IDS)]
    assert push_request(json.dumps({"ids": ids}).encode()) == ids


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "empty body"),
        (b"null", "send a JSON object"),
        (b"[]", "must be a JSON object"),
        (b"{", "invalid JSON"),
        (b"{}", '"ids" must be a non-empty array'),
        (b'{"ids": []}', '"ids" must be a non-empty array'),
        (b'{"ids": "A,B"}', '"ids" must be a non-empty array'),
        (b'{"ids": ["A", 1]}', "every entry"),
        (b'{"ids": ["A", ""]}', "every entry"),
        (json.dumps({"ids": ["x"] * (MAX_FANOUT_IDS + 1)}).encode(), "at most 100000"),
    ],
)
def test_bad_push_bodies_are_400(body, message) -> None:
    with pytest.raises(MessageError, match=message):
        push_request(body)


@pytest.mark.parametrize(
    "command, message",
    [(None, '"command" must be'), ("", '"command" must be'), (5, '"command" must be'),
     ("not base64!", "not valid base64"), ("QUJ", "not valid base64"),
     ("QU JD", "not valid base64")],
)  # fmt: skip
def test_bad_enqueue_commands_are_400(command, message) -> None:
    with pytest.raises(MessageError, match=message):
        enqueue_request(json.dumps({"ids": ["A"], "command": command}).encode())
