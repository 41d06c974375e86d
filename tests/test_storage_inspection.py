"""
The inspection roles, every backend: the conformance suite's part for the inspection API.

Listing, filtering and paging enrollments; queues in delivery order with
their history; command deliveries; the API's own queue edits; the counts.
Each test runs against every backend of storage_backends.BACKENDS (multi
storage included), the queue edits with and without ``delete=1``.  Orders
are compared with the backend's own full listing where IDs differ in case,
since MySQL's collation ignores case.
"""

import datetime
import plistlib

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.serialization import Encoding
from zope.interface.verify import verifyObject

from nanomdm_tw.mdm.messages import decode_command_report
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.storage.inspection import (
    ANSWERED,
    CLEARED,
    NOT_NOW_STATE,
    PENDING,
    EnrollmentFilter,
    IInspectionStore,
    IQueueEditor,
)
from .storage_backends import BACKENDS
from .test_storage_conformance import (
    SHARED_IPAD_USER,
    TOPIC,
    UE_DEVICE,
    UE_USER,
    Channel,
    make_command,
    self_signed_cert,
)

D1 = Channel({"UDID": "DEVICE-1"})
U1 = Channel(
    {"UDID": "DEVICE-1", "UserID": "USER-1", "UserShortName": "bob", "UserLongName": "Bob B"}
)
S1 = SHARED_IPAD_USER  # alice, on DEVICE-1
D2 = Channel({"UDID": "DEVICE-2"})
FLEET = [D1, U1, S1, D2, UE_DEVICE, UE_USER]
SLACK = datetime.timedelta(seconds=2)  # whole-second columns, and clocks read apart


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request):
    return request.param


@pytest_twisted.async_yield_fixture
async def store(backend, tmp_path):
    opened = await backend.make(tmp_path, {})
    yield opened
    await opened.close()


@pytest.fixture(params=[False, True], ids=["keep", "delete"])
def deletes(request) -> bool:
    return request.param


@pytest_twisted.async_yield_fixture
async def editing_store(backend, deletes, tmp_path):
    opened = await backend.make(tmp_path, {"delete": deletes})
    yield opened
    await opened.close()


async def enroll(store, channel: Channel, **authenticate) -> None:
    """Enroll a channel; a device under the serial number SERIAL-<its ID>."""
    if not channel.request().enroll_id.is_user_channel:
        message = channel.checkin("Authenticate", Topic=TOPIC, SerialNumber="SERIAL-" + channel.id)
        request = MDMRequest(message.enroll_id, **authenticate)
        await store.store_authenticate(request, message)
        await store.clear_queue(request)
        await store.disable(request)
    await channel.token_update(store)


async def enroll_fleet(store) -> None:
    for channel in FLEET:
        await enroll(store, channel)


async def report(store, channel: Channel, status: str, command_uuid: str) -> None:
    fields = {"Status": status, "CommandUUID": command_uuid, **channel.ids}
    await store.store_command_report(
        channel.request(), decode_command_report(plistlib.dumps(fields))
    )


async def listed(store, limit: int = 100, **criteria) -> list[str]:
    return [r.id for r in await store.query_enrollments(EnrollmentFilter(**criteria), limit)]


def assert_recent(moment: datetime.datetime | None, start: datetime.datetime) -> None:
    """A timezone-aware UTC time between the test's start and now."""
    assert moment is not None and moment.utcoffset() == datetime.timedelta(0)
    assert start - SLACK <= moment <= datetime.datetime.now(datetime.timezone.utc) + SLACK


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# -- enrollments ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_empty_store_lists_nothing(store):
    assert verifyObject(IInspectionStore, store) and verifyObject(IQueueEditor, store)
    assert await store.query_enrollments(EnrollmentFilter(), 100) == []
    assert await store.enrollment_counts() == {}
    assert await store.pending_count() == 0
    assert await store.queued_commands("DEVICE-1", 100) == []
    assert await store.retrieve_command("CMD") is None
    assert await store.command_deliveries("CMD", 100) == []


@pytest_twisted.ensureDeferred
async def test_enrollment_records_of_each_kind(store):
    start = utc_now()
    await enroll_fleet(store)
    records = {r.id: r for r in await store.query_enrollments(EnrollmentFilter(), 100)}
    assert set(records) == {c.id for c in FLEET}
    summary = {
        i: (r.type, r.device_id, r.user_id, r.serial_number, r.user_short_name, r.user_long_name)
        for i, r in records.items()
    }
    assert summary == {
        D1.id: ("Device", D1.id, None, "SERIAL-DEVICE-1", None, None),
        U1.id: ("User", D1.id, U1.id, "SERIAL-DEVICE-1", "bob", "Bob B"),
        S1.id: ("Shared iPad", D1.id, S1.id, "SERIAL-DEVICE-1", "alice", None),
        D2.id: ("Device", D2.id, None, "SERIAL-DEVICE-2", None, None),
        UE_DEVICE.id: (
            "User Enrollment (Device)", UE_DEVICE.id, None, "SERIAL-ENROLLMENT-1", None, None
        ),
        UE_USER.id: (
            "User Enrollment", UE_DEVICE.id, UE_USER.id, "SERIAL-ENROLLMENT-1", None, None
        ),
    }
    for record in records.values():
        assert (record.topic, record.enabled, record.token_update_tally) == (TOPIC, True, 1)
        assert (record.device_cert, record.unlock_token) == (None, None)
        for moment in (record.last_seen, record.created, record.updated):
            assert_recent(moment, start)
    await D1.token_update(store)
    await store.disable(D2.request())
    again = {r.id: r for r in await store.query_enrollments(EnrollmentFilter(), 100)}
    assert again[D1.id].token_update_tally == 2
    assert (again[D2.id].enabled, again[D2.id].token_update_tally) == (False, 0)
    assert again[D1.id].created == records[D1.id].created


@pytest_twisted.ensureDeferred
async def test_enrollment_filters_alone_and_combined(store):
    await enroll_fleet(store)
    await store.disable(D2.request())
    everyone = await listed(store)
    cases = [
        (dict(ids=(D1.id, D2.id, "UNKNOWN")), {D1.id, D2.id}),
        (dict(serials=("SERIAL-DEVICE-1",)), {D1.id, U1.id, S1.id}),
        (dict(serials=("SERIAL-DEVICE-2", "SERIAL-NONE")), {D2.id}),
        (dict(user_short_names=("bob", "alice")), {U1.id, S1.id}),
        (dict(types=("User", "Shared iPad")), {U1.id, S1.id}),
        (dict(types=("User Enrollment (Device)",)), {UE_DEVICE.id}),
        (dict(types=("Nonsense",)), set()),
        (dict(enabled=False), {D2.id}),
        (dict(enabled=True), {c.id for c in FLEET} - {D2.id}),
        (dict(topic=TOPIC), {c.id for c in FLEET}),
        (dict(topic="com.apple.mgmt.other"), set()),
        (dict(user_id=U1.id), {U1.id}),
        (dict(device_id=D1.id), {D1.id, U1.id, S1.id}),
        (dict(device_id=UE_DEVICE.id), {UE_DEVICE.id, UE_USER.id}),
        (dict(serials=("SERIAL-DEVICE-1",), types=("User",)), {U1.id}),
        (dict(device_id=D1.id, enabled=True, user_short_names=("alice",)), {S1.id}),
        (dict(ids=(D1.id, D2.id), enabled=False), {D2.id}),
        (dict(ids=(D1.id,), serials=("SERIAL-DEVICE-2",)), set()),
        (dict(types=("Device",), topic=TOPIC, enabled=True), {D1.id}),
    ]
    for criteria, expected in cases:
        found = await listed(store, **criteria)
        # The backend's own ID order, whatever its collation.
        assert found == [i for i in everyone if i in expected], criteria


@pytest_twisted.ensureDeferred
async def test_device_certificate_and_unlock_token_only_when_asked(store):
    cert = self_signed_cert()
    await enroll(store, D1, certificate=cert)
    unlock_token = bytes(range(256))  # every byte value
    update = D1.checkin(
        "TokenUpdate", Topic=TOPIC, Token=D1.token, PushMagic="M", UnlockToken=unlock_token
    )
    await store.store_token_update(D1.request(), update)
    await enroll(store, U1)
    await enroll(store, D2)
    plain = await store.query_enrollments(EnrollmentFilter(), 100)
    assert {(r.device_cert, r.unlock_token) for r in plain} == {(None, None)}
    asked = {
        r.id: r
        for r in await store.query_enrollments(
            EnrollmentFilter(), 100, include_device_cert=True, include_unlock_token=True
        )
    }
    pem = cert.public_bytes(Encoding.PEM)
    for channel in (D1, U1):  # a user channel shows its device's
        assert asked[channel.id].device_cert == pem.decode()
        assert asked[channel.id].unlock_token == unlock_token
    assert (asked[D2.id].device_cert, asked[D2.id].unlock_token) == (None, None)
    only_cert = await store.query_enrollments(
        EnrollmentFilter(ids=(D1.id,)), 100, include_device_cert=True
    )
    assert (only_cert[0].device_cert, only_cert[0].unlock_token) == (pem.decode(), None)


NUMBERED = [Channel({"UDID": f"E-{n:02d}"}) for n in range(1, 13)]
NUMBERED_IDS = [c.id for c in NUMBERED]


async def pages(store, limit: int, **criteria) -> list[list[str]]:
    """Every page by keyset, up to and including the first short one."""
    found, after = [], None
    while True:
        page = await store.query_enrollments(EnrollmentFilter(**criteria), limit, after=after)
        found.append([r.id for r in page])
        if len(page) < limit:
            return found
        after = page[-1].id


@pytest_twisted.ensureDeferred
async def test_enrollment_pages_by_keyset_and_offset(store):
    for channel in NUMBERED:
        await enroll(store, channel)
    ids = NUMBERED_IDS
    assert await pages(store, 4) == [ids[0:4], ids[4:8], ids[8:12], []]
    assert await pages(store, 5) == [ids[0:5], ids[5:10], ids[10:12]]
    assert await pages(store, 12) == [ids, []]
    assert await pages(store, 100) == [ids]
    assert await listed(store, 3) == ids[:3]
    after_last = await store.query_enrollments(EnrollmentFilter(), 10, after=ids[-1])
    assert after_last == []
    between = await store.query_enrollments(EnrollmentFilter(), 2, after="E-05-AND-A-BIT")
    assert [r.id for r in between] == ids[5:7]
    for offset, expected in [(0, ids[:4]), (4, ids[4:8]), (10, ids[10:]), (12, []), (50, [])]:
        page = await store.query_enrollments(EnrollmentFilter(), 4, offset=offset)
        assert [r.id for r in page] == expected, offset
    # offset counts within the filter, after the keyset
    page = await store.query_enrollments(EnrollmentFilter(ids=tuple(ids[::2])), 2, offset=1)
    assert [r.id for r in page] == [ids[2], ids[4]]
    page = await store.query_enrollments(EnrollmentFilter(), 2, after=ids[5], offset=1)
    assert [r.id for r in page] == ids[7:9]


@pytest_twisted.ensureDeferred
async def test_keyset_pages_survive_enrollments_leaving_the_filter(store):
    for channel in NUMBERED:
        await enroll(store, channel)
    first = await store.query_enrollments(EnrollmentFilter(enabled=True), 4)
    assert [r.id for r in first] == NUMBERED_IDS[:4]
    # Between pages one enrollment before the cursor and one after it leave the set.
    await store.disable(NUMBERED[1].request())
    await store.disable(NUMBERED[4].request())
    second = await store.query_enrollments(EnrollmentFilter(enabled=True), 4, after=first[-1].id)
    assert [r.id for r in second] == NUMBERED_IDS[5:9]


@pytest_twisted.ensureDeferred
async def test_enrollment_counts(store):
    await enroll_fleet(store)
    await store.disable(D2.request())
    assert await store.enrollment_counts() == {
        ("Device", True): 1,
        ("Device", False): 1,
        ("User", True): 1,
        ("Shared iPad", True): 1,
        ("User Enrollment (Device)", True): 1,
        ("User Enrollment", True): 1,
    }


# -- queues -----------------------------------------------------------------------


async def enqueue(store, channels, command_uuid: str, priority: int = 0) -> None:
    errors = await store.enqueue_command(
        [c.id for c in channels], make_command(command_uuid), priority=priority
    )
    assert errors == {}


async def queue_of(store, channel: Channel, limit: int = 100, **options) -> list[str]:
    return [e.command_uuid for e in await store.queued_commands(channel.id, limit, **options)]


async def states_of(store, channel: Channel) -> dict[str, str]:
    entries = await store.queued_commands(channel.id, 100, include_answered=True)
    return {e.command_uuid: e.state for e in entries}


@pytest_twisted.ensureDeferred
async def test_queue_in_delivery_order_with_not_now_and_history(store):
    start = utc_now()
    await enroll(store, D1)
    for command_uuid, priority in [("A", 0), ("B", 10), ("C", 5), ("D", 5), ("E", 0)]:
        await enqueue(store, [D1], command_uuid, priority)
    await report(store, D1, "NotNow", "B")
    await report(store, D1, "NotNow", "B")
    await report(store, D1, "Acknowledged", "C")
    # As NanoMDM lists it: active, unanswered or NotNow; priority first, then enqueue order.
    assert await queue_of(store, D1) == ["B", "D", "A", "E"]
    assert await queue_of(store, D1, include_answered=True) == ["B", "C", "D", "A", "E"]
    history = await store.queued_commands(D1.id, 100, include_answered=True)
    entries = {e.command_uuid: e for e in history}
    b, c, d = entries["B"], entries["C"], entries["D"]
    assert (b.state, b.status, b.not_now_count, b.priority, b.active) == (
        NOT_NOW_STATE, "NotNow", 2, 10, True
    )
    assert (c.state, c.status, c.not_now_count, c.priority) == (ANSWERED, "Acknowledged", 0, 5)
    assert plistlib.loads(c.result)["Status"] == "Acknowledged"
    assert (d.state, d.status, d.not_now_count, d.result, d.reported_at) == (
        PENDING, None, 0, None, None
    )
    assert (d.command, d.request_type, d.enrollment_id) == (
        make_command("D").raw, "DeviceInformation", D1.id
    )
    for entry in entries.values():
        assert_recent(entry.enqueued_at, start)
    assert_recent(b.reported_at, start)
    assert_recent(c.reported_at, start)
    assert await store.queued_commands("UNKNOWN", 100) == []
    assert await store.queued_commands("UNKNOWN", 100, include_answered=True) == []


@pytest_twisted.ensureDeferred
async def test_queue_pages_by_cursor_and_offset(store):
    await enroll(store, D1)
    for command_uuid, priority in [("A", 0), ("B", 10), ("C", 5), ("D", 5), ("E", 0)]:
        await enqueue(store, [D1], command_uuid, priority)
    first = await store.queued_commands(D1.id, 2)
    assert [e.command_uuid for e in first] == ["B", "C"]
    second = await store.queued_commands(D1.id, 2, after=first[-1].cursor)
    assert [e.command_uuid for e in second] == ["D", "A"]
    # Entries leaving the queue between pages shift nothing after the cursor.
    assert await store.remove_queued_command(D1.id, "B")
    await report(store, D1, "Acknowledged", "D")
    third = await store.queued_commands(D1.id, 2, after=second[-1].cursor)
    assert [e.command_uuid for e in third] == ["E"]
    assert await store.queued_commands(D1.id, 2, after=third[-1].cursor) == []
    assert await queue_of(store, D1, 2, offset=1) == ["A", "E"]
    assert await queue_of(store, D1, 2, offset=3) == []
    # The history pages the same way, answered and cleared entries included.
    history = await store.queued_commands(D1.id, 3, include_answered=True)
    assert [e.command_uuid for e in history] == ["B", "C", "D"]
    rest = await store.queued_commands(D1.id, 3, after=history[-1].cursor, include_answered=True)
    assert [e.command_uuid for e in rest] == ["A", "E"]
    assert await queue_of(store, D1, 2, offset=2, include_answered=True) == ["D", "A"]


@pytest_twisted.ensureDeferred
async def test_each_history_state(editing_store, deletes):
    store = editing_store
    await enroll(store, D1)
    for command_uuid in ("PENDING", "NOTNOW", "ACKED", "FAILED", "CLEARED", "CLEARED-NOTNOW"):
        await enqueue(store, [D1], command_uuid)
    await report(store, D1, "NotNow", "NOTNOW")
    await report(store, D1, "NotNow", "CLEARED-NOTNOW")
    await report(store, D1, "Acknowledged", "ACKED")
    await report(store, D1, "Error", "FAILED")
    assert await store.remove_queued_command(D1.id, "CLEARED")
    assert await store.remove_queued_command(D1.id, "CLEARED-NOTNOW")
    expected = {"PENDING": PENDING, "NOTNOW": NOT_NOW_STATE}
    if not deletes:  # delete=1 keeps no history
        expected.update(ACKED=ANSWERED, FAILED=ANSWERED, CLEARED=CLEARED)
        expected["CLEARED-NOTNOW"] = CLEARED
    assert await states_of(store, D1) == expected
    assert await queue_of(store, D1) == ["PENDING", "NOTNOW"]
    assert await store.pending_count() == 2


@pytest_twisted.ensureDeferred
async def test_clear_queue_by_id_clears_that_enrollment_only(editing_store, deletes):
    store = editing_store
    for channel in (D1, U1, D2):
        await enroll(store, channel)
        await enqueue(store, [channel], "PENDING-" + channel.id)
        await enqueue(store, [channel], "NOTNOW-" + channel.id)
        await enqueue(store, [channel], "ACKED-" + channel.id)
        await report(store, channel, "NotNow", "NOTNOW-" + channel.id)
        await report(store, channel, "Acknowledged", "ACKED-" + channel.id)
    await enqueue(store, [D1, U1, D2], "SHARED")
    assert await store.pending_count() == 9
    await store.clear_queue_by_id(D1.id)
    await store.clear_queue_by_id("UNKNOWN")  # no error
    assert await queue_of(store, D1) == []
    assert await store.retrieve_next_command(D1.request(), False) is None
    if deletes:
        assert await states_of(store, D1) == {}
    else:
        assert await states_of(store, D1) == {
            "PENDING-" + D1.id: CLEARED,
            "NOTNOW-" + D1.id: CLEARED,
            "ACKED-" + D1.id: ANSWERED,
            "SHARED": CLEARED,
        }
    for channel in (U1, D2):  # its user channel and another device keep their queues
        assert await queue_of(store, channel) == [
            "PENDING-" + channel.id, "NOTNOW-" + channel.id, "SHARED"
        ]
        assert (await store.retrieve_next_command(channel.request(), False)).command_uuid == (
            "PENDING-" + channel.id
        )
    assert await store.pending_count() == 6


@pytest_twisted.ensureDeferred
async def test_remove_queued_command(editing_store, deletes):
    store = editing_store
    await enroll(store, D1)
    await enroll(store, D2)
    await enqueue(store, [D1], "PENDING")
    await enqueue(store, [D1], "NOTNOW")
    await enqueue(store, [D1], "ACKED")
    await enqueue(store, [D1, D2], "SHARED")
    await report(store, D1, "NotNow", "NOTNOW")
    await report(store, D1, "Acknowledged", "ACKED")
    assert await store.remove_queued_command(D1.id, "ACKED") is False  # answered
    assert await store.remove_queued_command(D1.id, "NO-SUCH") is False
    assert await store.remove_queued_command("UNKNOWN", "PENDING") is False
    assert await store.remove_queued_command(D2.id, "PENDING") is False  # not D2's
    assert await store.remove_queued_command(D1.id, "PENDING") is True
    assert await store.remove_queued_command(D1.id, "PENDING") is False  # already removed
    assert await store.remove_queued_command(D1.id, "NOTNOW") is True
    assert await store.remove_queued_command(D1.id, "SHARED") is True
    assert await queue_of(store, D1) == []
    assert await store.retrieve_next_command(D1.request(), False) is None
    assert await queue_of(store, D2) == ["SHARED"]  # another enrollment's entry stays
    if deletes:
        assert await store.retrieve_command("PENDING") is None  # collected
        assert await store.retrieve_command("SHARED") is not None  # D2 still has it
        assert await states_of(store, D1) == {}
    else:
        assert (await states_of(store, D1))["PENDING"] == CLEARED
        assert (await states_of(store, D1))["ACKED"] == ANSWERED


# -- commands ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_command_and_its_deliveries(store):
    start = utc_now()
    for channel in (D1, U1, D2, UE_DEVICE):
        await enroll(store, channel)
    command = make_command("FANNED")
    assert await store.enqueue_command(
        [UE_DEVICE.id, D2.id, U1.id, D1.id], command, priority=3
    ) == {}
    await report(store, D1, "Acknowledged", "FANNED")
    await report(store, D2, "NotNow", "FANNED")
    await store.remove_queued_command(UE_DEVICE.id, "FANNED")
    stored = await store.retrieve_command("FANNED")
    assert (stored.command_uuid, stored.request_type, stored.command) == (
        "FANNED", "DeviceInformation", command.raw
    )
    assert_recent(stored.created, start)
    order = [D1.id, U1.id, D2.id, UE_DEVICE.id]  # uppercase IDs: every collation agrees
    deliveries = await store.command_deliveries("FANNED", 100)
    assert [(e.enrollment_id, e.state) for e in deliveries] == list(
        zip(order, [ANSWERED, PENDING, NOT_NOW_STATE, CLEARED])
    )
    for entry in deliveries:
        assert (entry.command_uuid, entry.request_type, entry.priority) == (
            "FANNED", "DeviceInformation", 3
        )
        assert_recent(entry.enqueued_at, start)
    acked, pending, not_now, _ = deliveries
    assert (acked.status, plistlib.loads(acked.result)["Status"]) == ("Acknowledged",) * 2
    assert_recent(acked.reported_at, start)
    assert (pending.status, pending.result, pending.reported_at) == (None, None, None)
    assert (not_now.status, not_now.not_now_count) == ("NotNow", 1)
    first = await store.command_deliveries("FANNED", 2)
    assert [e.enrollment_id for e in first] == order[:2]
    second = await store.command_deliveries("FANNED", 2, after=first[-1].enrollment_id)
    assert [e.enrollment_id for e in second] == order[2:]
    assert await store.command_deliveries("FANNED", 2, after=order[-1]) == []
    assert await store.command_deliveries("NO-SUCH", 100) == []


@pytest_twisted.ensureDeferred
async def test_pending_count_over_every_enrollment(store):
    await enroll_fleet(store)
    await enqueue(store, FLEET, "ALL")
    await enqueue(store, [D1, D2], "TWO")
    assert await store.pending_count() == 8
    await report(store, D1, "NotNow", "ALL")  # still pending
    await report(store, D2, "Error", "ALL")
    await report(store, U1, "Acknowledged", "ALL")
    assert await store.pending_count() == 6
    await store.clear_queue_by_id(D1.id)
    assert await store.pending_count() == 4
