"""
One behaviour, every backend: the storage conformance suite.

Each test runs against every backend in storage_backends.BACKENDS, with and
without ``delete=1``.  Devices are driven the way the core service drives
storage (Authenticate = store, clear queue, disable; a report is stored,
then the next command fetched), so the queue tests replay NanoMDM's e2e
queue scenarios.
"""

import datetime
import plistlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from twisted.internet import defer

from nanomdm_tw.mdm.enrollment import SHARED_IPAD_USER_ID, EnrollType
from nanomdm_tw.mdm.messages import (
    Command,
    decode_checkin,
    decode_command,
    decode_command_report,
)
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.storage import (
    QUEUE_ERROR_ALREADY_QUEUED,
    QUEUE_ERROR_UNKNOWN,
    QUEUE_ERROR_UUID_CONFLICT,
    STORAGE_NAMES,
    make_storage,
    parse_storage_options,
)
from nanomdm_tw.storage.dialect import schema_files
from nanomdm_tw.storage.interfaces import IStorage, PushInfo, UnknownEnrollment
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.storage.sqlite import DB_FILE_NAME, SQLiteStorage, database_path
from .storage_backends import BACKENDS, make_sqlite

FIXTURES = Path(__file__).parent / "fixtures"
TOPIC = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9"
QUEUE_EMPTY = {"commands": 0, "command_results": 0, "enrollment_queue": 0}


@pytest.fixture(
    params=[(b, delete) for b in BACKENDS for delete in (False, True)],
    ids=lambda p: p[0].name + ("-delete" if p[1] else ""),
)
def backend_case(request):
    """One backend, with or without the delete=1 option."""
    return request.param


@pytest.fixture
def deletes(backend_case) -> bool:
    return backend_case[1]


@pytest_twisted.async_yield_fixture
async def storage(backend_case, tmp_path):
    backend, delete = backend_case
    store = await backend.make(tmp_path, {"delete": delete})
    yield store
    await store.close()


def make_command(command_uuid: str, request_type: str = "DeviceInformation") -> Command:
    return decode_command(
        plistlib.dumps({"CommandUUID": command_uuid, "Command": {"RequestType": request_type}})
    )


@dataclass
class Channel:
    """One MDM channel of a simulated device, talking to storage as the core service does."""

    ids: dict[str, str]
    token: bytes = b"\x01\x02\x03\x04"
    push_magic: str = "PUSH-MAGIC"

    def checkin(self, message_type: str, **fields):
        return decode_checkin(
            plistlib.dumps({"MessageType": message_type, **self.ids, **fields})
        )

    def request(self) -> MDMRequest:
        return MDMRequest(self.checkin("CheckOut").enroll_id)

    @property
    def id(self) -> str:
        return self.request().enroll_id.id

    async def authenticate(self, store: IStorage, serial_number: str = "SERIAL1") -> None:
        message = self.checkin("Authenticate", Topic=TOPIC, SerialNumber=serial_number)
        request = self.request()
        await store.store_authenticate(request, message)
        await store.clear_queue(request)
        await store.disable(request)

    async def token_update(self, store: IStorage) -> None:
        message = self.checkin(
            "TokenUpdate", Topic=TOPIC, Token=self.token, PushMagic=self.push_magic
        )
        await store.store_token_update(self.request(), message)

    async def enroll(self, store: IStorage) -> None:
        if not self.request().enroll_id.is_user_channel:
            await self.authenticate(store)
        await self.token_update(store)

    async def report(self, store: IStorage, status: str, command_uuid: str = "") -> str | None:
        """Send a report; the UUID of the command the device gets back, or None."""
        fields = {"Status": status, **self.ids}
        if command_uuid:
            fields["CommandUUID"] = command_uuid
        report = decode_command_report(plistlib.dumps(fields))
        command = await store.report_and_next(
            self.request(), report, skip_not_now=status == "NotNow"
        )
        return None if command is None else command.command_uuid

    async def report_in_two_steps(
        self, store: IStorage, status: str, command_uuid: str = ""
    ) -> str | None:
        """The same, through the two NanoMDM storage calls the single one combines."""
        fields = {"Status": status, **self.ids}
        if command_uuid:
            fields["CommandUUID"] = command_uuid
        report = decode_command_report(plistlib.dumps(fields))
        if not report.is_idle:
            await store.store_command_report(self.request(), report)
        command = await store.retrieve_next_command(
            self.request(), skip_not_now=status == "NotNow"
        )
        return None if command is None else command.command_uuid

    async def enqueue(self, store: IStorage, *command_uuids: str) -> None:
        for command_uuid in command_uuids:
            assert await store.enqueue_command([self.id], make_command(command_uuid)) == {}


DEVICE = Channel({"UDID": "DEVICE-1"})
USER = Channel({"UDID": "DEVICE-1", "UserID": "USER-1"})
SHARED_IPAD_USER = Channel(
    {"UDID": "DEVICE-1", "UserID": SHARED_IPAD_USER_ID, "UserShortName": "alice"}
)
OTHER_DEVICE = Channel({"UDID": "DEVICE-2"}, token=b"\xaa\xbb")
UE_DEVICE = Channel({"EnrollmentID": "ENROLLMENT-1"})
UE_USER = Channel({"EnrollmentID": "ENROLLMENT-1", "EnrollmentUserID": "EUSER-1"})
ALL_CHANNELS = [DEVICE, USER, SHARED_IPAD_USER, OTHER_DEVICE, UE_DEVICE, UE_USER]


async def enroll_all(store: IStorage) -> None:
    for channel in ALL_CHANNELS:
        await channel.enroll(store)


@pytest_twisted.ensureDeferred
async def test_ping_answers_when_open(storage):
    """/readyz's question: a trivial round trip, nothing read or written."""
    assert await storage.ping() is None


# -- the queue, as NanoMDM's e2e tests drive it ---------------------------------


@pytest_twisted.ensureDeferred
async def test_queue_basic(storage):
    await DEVICE.enroll(storage)
    assert await DEVICE.report(storage, "Idle") is None
    await DEVICE.enqueue(storage, "CMD1", "CMD2")
    assert await DEVICE.report(storage, "Idle") == "CMD1"
    assert await DEVICE.report(storage, "Acknowledged", "CMD1") == "CMD2"
    assert await DEVICE.report(storage, "Acknowledged", "CMD2") is None
    assert await DEVICE.report(storage, "Idle") is None


@pytest_twisted.ensureDeferred
async def test_queue_through_the_separate_calls(storage):
    await DEVICE.enroll(storage)
    await DEVICE.enqueue(storage, "CMD1", "CMD2")
    assert await DEVICE.report_in_two_steps(storage, "Idle") == "CMD1"
    assert await DEVICE.report_in_two_steps(storage, "NotNow", "CMD1") == "CMD2"
    # The next report that is not NotNow gets the passed-over command again.
    assert await DEVICE.report_in_two_steps(storage, "Acknowledged", "CMD2") == "CMD1"
    assert await DEVICE.report_in_two_steps(storage, "Error", "CMD1") is None


@pytest_twisted.ensureDeferred
async def test_queue_not_now(storage):
    await DEVICE.enroll(storage)
    await DEVICE.enqueue(storage, "CMD3")
    assert await DEVICE.report(storage, "Idle") == "CMD3"
    assert await DEVICE.report(storage, "NotNow", "CMD3") is None
    assert await DEVICE.report(storage, "Idle") == "CMD3"
    assert await DEVICE.report(storage, "NotNow", "CMD3") is None
    assert await DEVICE.report(storage, "Acknowledged", "CMD3") is None
    assert await DEVICE.report(storage, "Idle") is None


@pytest_twisted.ensureDeferred
async def test_not_now_passes_over_to_the_next_command(storage):
    await DEVICE.enroll(storage)
    await DEVICE.enqueue(storage, "CMD1", "CMD2")
    assert await DEVICE.report(storage, "NotNow", "CMD1") == "CMD2"
    assert await DEVICE.report(storage, "Acknowledged", "CMD2") == "CMD1"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("status", ["Acknowledged", "Error", "CommandFormatError"])
async def test_final_statuses_finish_the_command(storage, status):
    await DEVICE.enroll(storage)
    await DEVICE.enqueue(storage, "CMD1")
    assert await DEVICE.report(storage, status, "CMD1") is None
    assert await DEVICE.report(storage, "Idle") is None


@pytest_twisted.ensureDeferred
async def test_queue_clear(storage):
    await DEVICE.enroll(storage)
    await storage.clear_queue(DEVICE.request())
    await DEVICE.enqueue(storage, "CMD4")
    await storage.clear_queue(DEVICE.request())
    assert await DEVICE.report(storage, "Idle") is None


@pytest_twisted.ensureDeferred
async def test_clear_queue_covers_user_channels_and_keeps_other_devices(storage):
    await enroll_all(storage)
    for channel in (DEVICE, USER, SHARED_IPAD_USER, OTHER_DEVICE):
        await channel.enqueue(storage, "CMD-" + channel.id, "CMD-NOTNOW-" + channel.id)
        assert await channel.report(storage, "NotNow", "CMD-NOTNOW-" + channel.id)
    await storage.clear_queue(DEVICE.request())
    for channel in (DEVICE, USER, SHARED_IPAD_USER):
        assert await channel.report(storage, "Idle") is None
    assert await OTHER_DEVICE.report(storage, "Idle") == "CMD-" + OTHER_DEVICE.id


@pytest_twisted.ensureDeferred
async def test_reauthenticate_clears_queues_and_disables(storage):
    await enroll_all(storage)
    await DEVICE.enqueue(storage, "CMD1")
    await USER.enqueue(storage, "CMD2")
    await DEVICE.authenticate(storage)
    assert await DEVICE.report(storage, "Idle") is None
    assert await USER.report(storage, "Idle") is None
    assert await storage.retrieve_push_info([DEVICE.id, USER.id]) == {}
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 0
    # Live again after its TokenUpdate, with an empty queue.
    await DEVICE.token_update(storage)
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 1
    assert await DEVICE.report(storage, "Idle") is None


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "channel", ALL_CHANNELS, ids=lambda c: str(c.request().enroll_id.type)
)
async def test_each_enrollment_type_gets_its_own_commands(storage, channel):
    await enroll_all(storage)
    await channel.enqueue(storage, "CMD-OWN")
    assert await channel.report(storage, "Idle") == "CMD-OWN"
    for other in ALL_CHANNELS:
        if other is not channel:
            assert await other.report(storage, "Idle") is None
    assert await channel.report(storage, "Acknowledged", "CMD-OWN") is None


def test_channels_cover_every_enrollment_type():
    assert {c.request().enroll_id.type for c in ALL_CHANNELS} == set(EnrollType)


@pytest_twisted.ensureDeferred
async def test_user_channel_queue_is_independent_of_its_device(storage):
    await enroll_all(storage)
    await DEVICE.enqueue(storage, "CMD-D")
    await USER.enqueue(storage, "CMD-U")
    assert await USER.report(storage, "Idle") == "CMD-U"
    assert await USER.report(storage, "Acknowledged", "CMD-U") is None
    assert await DEVICE.report(storage, "Idle") == "CMD-D"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("status", ["Acknowledged", "Error", "NotNow"])
async def test_report_for_a_command_not_queued_changes_no_queue(storage, status):
    await enroll_all(storage)
    await DEVICE.enqueue(storage, "CMD-D")
    await OTHER_DEVICE.enqueue(storage, "CMD-O")
    before = await storage.row_counts()
    assert await OTHER_DEVICE.report(storage, status, "CMD-D") == "CMD-O"
    assert await OTHER_DEVICE.report(storage, status, "NO-SUCH-COMMAND") == "CMD-O"
    assert await storage.row_counts() == before
    assert await DEVICE.report(storage, "Idle") == "CMD-D"
    assert await OTHER_DEVICE.report(storage, "Idle") == "CMD-O"


@pytest_twisted.ensureDeferred
async def test_idle_stores_nothing(storage):
    await DEVICE.enroll(storage)
    await DEVICE.enqueue(storage, "CMD1")
    before = await storage.row_counts()
    assert await DEVICE.report(storage, "Idle") == "CMD1"
    assert await storage.row_counts() == before


@pytest_twisted.ensureDeferred
async def test_priority_then_enqueue_order(storage):
    await DEVICE.enroll(storage)
    for command_uuid, priority in [("LOW", 0), ("HIGH", 10), ("MID-1", 5), ("MID-2", 5)]:
        errors = await storage.enqueue_command(
            [DEVICE.id], make_command(command_uuid), priority=priority
        )
        assert errors == {}
    received = [await DEVICE.report(storage, "Idle")]
    while received[-1] is not None:
        received.append(await DEVICE.report(storage, "Acknowledged", received[-1]))
    assert received == ["HIGH", "MID-1", "MID-2", "LOW", None]


@pytest_twisted.ensureDeferred
async def test_commands_queued_in_the_same_second_keep_their_order(storage):
    await DEVICE.enroll(storage)
    # Names that sort differently from their queue order.
    command_uuids = [f"CMD-{(i * 7) % 20:02d}-{i}" for i in range(20)]
    await DEVICE.enqueue(storage, *command_uuids)
    received = [await DEVICE.report(storage, "Idle")]
    for _ in command_uuids:
        received.append(await DEVICE.report(storage, "Acknowledged", received[-1]))
    assert received == command_uuids + [None]


# -- enqueueing -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_enqueue_errors_only_for_unknown_enrollments(storage):
    await DEVICE.enroll(storage)
    errors = await storage.enqueue_command(
        [DEVICE.id, "NO-SUCH-DEVICE"], make_command("CMD1")
    )
    assert errors == {"NO-SUCH-DEVICE": QUEUE_ERROR_UNKNOWN}
    assert await DEVICE.report(storage, "Idle") == "CMD1"


@pytest_twisted.ensureDeferred
async def test_enqueue_to_only_unknown_enrollments_stores_nothing(storage):
    errors = await storage.enqueue_command(["A", "B"], make_command("CMD1"))
    assert errors == {"A": QUEUE_ERROR_UNKNOWN, "B": QUEUE_ERROR_UNKNOWN}
    assert await storage.row_counts() == QUEUE_EMPTY


@pytest_twisted.ensureDeferred
async def test_enqueue_stores_the_command_once(storage):
    await enroll_all(storage)
    ids = [DEVICE.id, USER.id, OTHER_DEVICE.id]
    assert await storage.enqueue_command(ids, make_command("CMD1")) == {}
    counts = await storage.row_counts()
    assert (counts["commands"], counts["enrollment_queue"]) == (1, 3)
    for channel in (DEVICE, USER, OTHER_DEVICE):
        assert await channel.report(storage, "Idle") == "CMD1"


@pytest_twisted.ensureDeferred
async def test_requeueing_a_command_uuid_is_a_per_enrollment_error(storage):
    await enroll_all(storage)
    await DEVICE.enqueue(storage, "CMD1")
    errors = await storage.enqueue_command([DEVICE.id, USER.id], make_command("CMD1"))
    assert errors == {DEVICE.id: QUEUE_ERROR_ALREADY_QUEUED}
    assert await USER.report(storage, "Idle") == "CMD1"
    # The same UUID naming a different command is refused everywhere.
    errors = await storage.enqueue_command(
        [OTHER_DEVICE.id], make_command("CMD1", "ProfileList")
    )
    assert errors == {OTHER_DEVICE.id: QUEUE_ERROR_UUID_CONFLICT}
    assert await OTHER_DEVICE.report(storage, "Idle") is None


@pytest_twisted.ensureDeferred
async def test_enqueue_needs_enrollment_ids(storage):
    with pytest.raises(ValueError):
        await storage.enqueue_command([], make_command("CMD1"))


@pytest_twisted.ensureDeferred
async def test_next_command_is_the_raw_command(storage):
    await DEVICE.enroll(storage)
    command = make_command("CMD1", "InstallProfile")
    await storage.enqueue_command([DEVICE.id], command)
    assert await storage.retrieve_next_command(DEVICE.request(), False) == command


# -- delete=1 and row bookkeeping -------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_answered_commands_leave_rows_only_without_delete(storage, deletes):
    await enroll_all(storage)
    await storage.enqueue_command([DEVICE.id, USER.id], make_command("CMD1"))
    await DEVICE.enqueue(storage, "CMD2")
    assert await DEVICE.report(storage, "NotNow", "CMD1") == "CMD2"
    assert await DEVICE.report(storage, "Acknowledged", "CMD2") == "CMD1"
    assert await DEVICE.report(storage, "Error", "CMD1") is None
    assert await USER.report(storage, "Acknowledged", "CMD1") is None
    if deletes:
        assert await storage.row_counts() == QUEUE_EMPTY
    else:
        # NanoMDM keeps the history: every result and queue row.
        assert await storage.row_counts() == {
            "commands": 2,
            "command_results": 3,
            "enrollment_queue": 3,
        }


@pytest_twisted.ensureDeferred
async def test_a_shared_command_stays_until_the_last_enrollment_answers(storage, deletes):
    await enroll_all(storage)
    await storage.enqueue_command([DEVICE.id, OTHER_DEVICE.id], make_command("CMD1"))
    await DEVICE.report(storage, "Acknowledged", "CMD1")
    assert await OTHER_DEVICE.report(storage, "Idle") == "CMD1"
    await OTHER_DEVICE.report(storage, "Acknowledged", "CMD1")
    assert (await storage.row_counts())["commands"] == (0 if deletes else 1)


@pytest_twisted.ensureDeferred
async def test_cleared_queue_leaves_no_rows_with_delete(storage, deletes):
    await enroll_all(storage)
    await DEVICE.enqueue(storage, "CMD1")
    await USER.enqueue(storage, "CMD2")
    await USER.report(storage, "NotNow", "CMD2")
    await DEVICE.authenticate(storage)
    if deletes:
        assert await storage.row_counts() == QUEUE_EMPTY


@pytest_twisted.ensureDeferred
async def test_many_enrollments_answer_one_command_concurrently(storage, deletes):
    channels = [Channel({"UDID": f"BULK-{i:03d}"}) for i in range(200)]
    for channel in channels:
        await channel.enroll(storage)
    errors = await storage.enqueue_command([c.id for c in channels], make_command("CMD1"))
    assert errors == {}
    replies = await defer.gatherResults(
        [
            defer.ensureDeferred(c.report(storage, "Acknowledged", "CMD1"))
            for c in channels
        ],
        consumeErrors=True,
    )
    assert replies == [None] * len(channels)
    counts = await storage.row_counts()
    if deletes:
        assert counts == QUEUE_EMPTY
    else:
        assert counts == {"commands": 1, "command_results": 200, "enrollment_queue": 200}


# -- check-ins ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_token_update_tally(storage):
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 0
    await DEVICE.enroll(storage)
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 1
    await DEVICE.token_update(storage)
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 2
    await USER.token_update(storage)
    assert await storage.retrieve_token_update_tally(USER.id) == 1
    await DEVICE.authenticate(storage)
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 0
    await DEVICE.token_update(storage)
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 1


@pytest_twisted.ensureDeferred
async def test_token_update_needs_an_authenticated_device(storage):
    with pytest.raises(UnknownEnrollment):
        await DEVICE.token_update(storage)
    with pytest.raises(UnknownEnrollment):
        await USER.token_update(storage)


@pytest_twisted.ensureDeferred
async def test_disable_cascades_to_user_channels(storage):
    await enroll_all(storage)
    await storage.disable(DEVICE.request())
    assert await storage.retrieve_push_info([DEVICE.id, USER.id, SHARED_IPAD_USER.id]) == {}
    assert await storage.retrieve_token_update_tally(USER.id) == 0
    assert set(await storage.retrieve_push_info([OTHER_DEVICE.id, UE_USER.id])) == {
        OTHER_DEVICE.id,
        UE_USER.id,
    }
    # A user channel's TokenUpdate brings back that channel only.
    await USER.token_update(storage)
    assert set(await storage.retrieve_push_info([DEVICE.id, USER.id])) == {USER.id}


@pytest_twisted.ensureDeferred
async def test_disable_of_a_user_channel_leaves_its_device(storage):
    await enroll_all(storage)
    await storage.disable(UE_USER.request())  # a user channel's CheckOut
    assert set(await storage.retrieve_push_info([UE_DEVICE.id, UE_USER.id])) == {
        UE_DEVICE.id
    }


@pytest_twisted.ensureDeferred
async def test_push_info_only_for_enabled_enrollments(storage):
    assert await storage.retrieve_push_info([]) == {}
    await DEVICE.authenticate(storage)
    assert await storage.retrieve_push_info([DEVICE.id]) == {}
    await DEVICE.token_update(storage)
    await OTHER_DEVICE.enroll(storage)
    infos = await storage.retrieve_push_info([DEVICE.id, OTHER_DEVICE.id, "UNKNOWN"])
    assert infos == {
        DEVICE.id: PushInfo(DEVICE.id, TOPIC, DEVICE.token, DEVICE.push_magic),
        OTHER_DEVICE.id: PushInfo(
            OTHER_DEVICE.id, TOPIC, OTHER_DEVICE.token, OTHER_DEVICE.push_magic
        ),
    }
    await storage.disable(OTHER_DEVICE.request())  # CheckOut
    assert set(await storage.retrieve_push_info([DEVICE.id, OTHER_DEVICE.id])) == {
        DEVICE.id
    }


@pytest_twisted.ensureDeferred
async def test_user_authenticate_is_kept_for_known_devices(storage):
    await DEVICE.enroll(storage)
    first = USER.checkin("UserAuthenticate")
    second = USER.checkin("UserAuthenticate", DigestResponse="response")
    await storage.store_user_authenticate(USER.request(), first)
    await storage.store_user_authenticate(USER.request(), second)
    with pytest.raises(UnknownEnrollment):
        await storage.store_user_authenticate(OTHER_DEVICE.request(), first)


@pytest_twisted.ensureDeferred
async def test_bootstrap_token(storage):
    await DEVICE.enroll(storage)
    get = DEVICE.checkin("GetBootstrapToken")
    assert await storage.retrieve_bootstrap_token(DEVICE.request(), get) is None
    set_token = DEVICE.checkin("SetBootstrapToken", BootstrapToken=b"hello world")
    await storage.store_bootstrap_token(DEVICE.request(), set_token)
    assert await storage.retrieve_bootstrap_token(DEVICE.request(), get) == b"hello world"
    other_get = OTHER_DEVICE.checkin("GetBootstrapToken")
    assert await storage.retrieve_bootstrap_token(OTHER_DEVICE.request(), other_get) is None
    await storage.store_bootstrap_token(
        DEVICE.request(), DEVICE.checkin("SetBootstrapToken")
    )
    assert await storage.retrieve_bootstrap_token(DEVICE.request(), get) is None


@pytest_twisted.ensureDeferred
async def test_reenrollment_forgets_the_bootstrap_token(storage):
    """As NanoMDM: an erased, re-enrolled Mac must not be handed the old token."""
    await DEVICE.enroll(storage)
    await storage.store_bootstrap_token(
        DEVICE.request(), DEVICE.checkin("SetBootstrapToken", BootstrapToken=b"old token")
    )
    await DEVICE.authenticate(storage)
    get = DEVICE.checkin("GetBootstrapToken")
    assert await storage.retrieve_bootstrap_token(DEVICE.request(), get) is None
    await DEVICE.token_update(storage)
    assert await storage.retrieve_token_update_tally(DEVICE.id) == 1


# -- push certificates, cert auth, migration ---------------------------------------

CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


@pytest_twisted.ensureDeferred
async def test_push_cert_stale_token(storage):
    assert await storage.retrieve_push_cert(TOPIC) is None
    assert await storage.is_push_cert_stale(TOPIC, "1") is True
    first = await storage.store_push_cert(TOPIC, CERT_PEM, KEY_PEM)
    cert = await storage.retrieve_push_cert(TOPIC)
    assert (cert.topic, cert.cert_pem, cert.key_pem, cert.stale_token) == (
        TOPIC,
        CERT_PEM,
        KEY_PEM,
        first,
    )
    assert await storage.is_push_cert_stale(TOPIC, first) is False
    renewed_pem = CERT_PEM.replace(b"MIIB", b"MIIC")
    second = await storage.store_push_cert(TOPIC, renewed_pem, KEY_PEM)
    assert second != first
    assert await storage.is_push_cert_stale(TOPIC, first) is True
    assert await storage.is_push_cert_stale(TOPIC, second) is False
    assert (await storage.retrieve_push_cert(TOPIC)).cert_pem == renewed_pem
    assert await storage.retrieve_push_cert("com.apple.mgmt.other") is None


@pytest_twisted.ensureDeferred
async def test_push_certs_listed_by_topic(storage):
    assert await storage.retrieve_push_certs() == []
    topics = [TOPIC, "com.apple.mgmt.Z", "com.apple.mgmt.b", "com.apple.mgmt.A"]
    tokens = {topic: await storage.store_push_cert(topic, CERT_PEM, KEY_PEM) for topic in topics}
    renewed_pem = CERT_PEM.replace(b"MIIB", b"MIIC")
    tokens[TOPIC] = await storage.store_push_cert(TOPIC, renewed_pem, KEY_PEM)
    listed = await storage.retrieve_push_certs()
    assert [cert.topic for cert in listed] == sorted(topics)  # code points, not a collation
    assert listed == [await storage.retrieve_push_cert(topic) for topic in sorted(topics)]
    assert {cert.topic: cert.stale_token for cert in listed} == tokens


@pytest_twisted.ensureDeferred
async def test_cert_auth_associations(storage):
    hash_a, hash_b = "AB" * 32, "cd" * 32
    assert await storage.has_cert_hash(hash_a) is False
    assert await storage.enrollment_has_cert_hash(DEVICE.id) is False
    assert await storage.enrollment_id_for_cert_hash(hash_a) is None
    await storage.associate_cert_hash(DEVICE.id, hash_a)
    await storage.associate_cert_hash(DEVICE.id, hash_a.lower())  # idempotent
    assert await storage.has_cert_hash(hash_a.lower()) is True
    assert await storage.has_cert_hash(hash_b) is False
    assert await storage.enrollment_has_cert_hash(DEVICE.id) is True
    assert await storage.enrollment_has_cert_hash(OTHER_DEVICE.id) is False
    assert await storage.is_cert_hash_associated(DEVICE.id, hash_a) is True
    assert await storage.is_cert_hash_associated(OTHER_DEVICE.id, hash_a) is False
    assert await storage.is_cert_hash_associated(DEVICE.id, hash_b) is False
    assert await storage.enrollment_id_for_cert_hash(hash_a) == DEVICE.id
    # A renewed identity: the enrollment now has two hashes.
    await storage.associate_cert_hash(DEVICE.id, hash_b)
    assert await storage.enrollment_id_for_cert_hash(hash_b) == DEVICE.id
    assert await storage.is_cert_hash_associated(DEVICE.id, hash_a) is True


@pytest_twisted.ensureDeferred
async def test_migration_checkins(storage):
    assert await storage.retrieve_migration_checkins() == []
    await DEVICE.authenticate(storage)  # never sent its TokenUpdate
    await OTHER_DEVICE.enroll(storage)
    await USER.token_update(storage)
    checkins = [plistlib.loads(c) for c in await storage.retrieve_migration_checkins()]
    summary = [(c["MessageType"], c["UDID"], c.get("UserID")) for c in checkins]
    assert summary == [
        ("Authenticate", "DEVICE-1", None),
        ("TokenUpdate", "DEVICE-1", "USER-1"),
        ("Authenticate", "DEVICE-2", None),
        ("TokenUpdate", "DEVICE-2", None),
    ]
    assert checkins[2]["SerialNumber"] == "SERIAL1"
    assert (checkins[3]["Token"], checkins[3]["PushMagic"], checkins[3]["Topic"]) == (
        OTHER_DEVICE.token,
        OTHER_DEVICE.push_magic,
        TOPIC,
    )


@pytest_twisted.ensureDeferred
async def test_real_device_messages(storage):
    authenticate = decode_checkin((FIXTURES / "Authenticate.1.plist").read_bytes())
    token_update = decode_checkin((FIXTURES / "TokenUpdate.1.plist").read_bytes())
    request = MDMRequest(authenticate.enroll_id)
    await storage.store_authenticate(request, authenticate)
    await storage.clear_queue(request)
    await storage.disable(request)
    await storage.store_token_update(request, token_update)
    udid = authenticate.enroll_id.id
    info = (await storage.retrieve_push_info([udid]))[udid]
    assert (info.token, info.push_magic, info.topic) == (
        token_update.token,
        token_update.push_magic,
        token_update.topic,
    )
    assert await storage.retrieve_migration_checkins() == [
        authenticate.raw,
        token_update.raw,
    ]
    report = decode_command_report((FIXTURES / "DeviceInformation.1.plist").read_bytes())
    await storage.enqueue_command(
        [udid], make_command(report.command_uuid, report.request_type)
    )
    await storage.store_command_report(request, report)
    assert await storage.retrieve_next_command(request, False) is None


# -- SQLite specifics -----------------------------------------------------------


def self_signed_cert() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device identity")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


async def select(store: SQLiteStorage, query: str, *args) -> list:
    return await store._interact(store._all, query, args)


@pytest_twisted.async_yield_fixture
async def sqlite_storage(tmp_path):
    store = await make_sqlite(tmp_path, {})
    yield store
    await store.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_rows_are_nanomdm_rows(sqlite_storage):
    cert = self_signed_cert()
    message = DEVICE.checkin("Authenticate", Topic=TOPIC, SerialNumber="SERIAL1")
    request = MDMRequest(message.enroll_id, certificate=cert)
    await sqlite_storage.store_authenticate(request, message)
    update = DEVICE.checkin(
        "TokenUpdate", Topic=TOPIC, Token=b"\xde\xad", PushMagic="M", UnlockToken=b"UT"
    )
    await sqlite_storage.store_token_update(request, update)
    await USER.token_update(sqlite_storage)
    devices = await select(
        sqlite_storage,
        "SELECT identity_cert, serial_number, unlock_token, authenticate FROM devices",
    )
    assert devices == [
        (cert.public_bytes(Encoding.PEM).decode(), "SERIAL1", b"UT", message.raw)
    ]
    enrollments = await select(
        sqlite_storage,
        "SELECT id, device_id, user_id, type, token_hex, enabled, token_update_tally "
        "FROM enrollments ORDER BY id",
    )
    assert enrollments == [
        (DEVICE.id, DEVICE.id, None, "Device", "dead", 1, 1),
        (USER.id, DEVICE.id, USER.id, "User", USER.token.hex(), 1, 1),
    ]
    assert await select(sqlite_storage, "SELECT id, device_id FROM users") == [
        (USER.id, DEVICE.id)
    ]
    await sqlite_storage.store_bootstrap_token(
        request, DEVICE.checkin("SetBootstrapToken", BootstrapToken=b"BT")
    )
    await sqlite_storage.store_authenticate(request, message)
    assert await select(
        sqlite_storage,
        "SELECT unlock_token, unlock_token_at, bootstrap_token_b64, bootstrap_token_at "
        "FROM devices",
    ) == [(None, None, None, None)]


@pytest_twisted.ensureDeferred
async def test_sqlite_next_command_query_uses_the_queue_index(sqlite_storage):
    plan = await select(
        sqlite_storage,
        "EXPLAIN QUERY PLAN SELECT c.command_uuid FROM enrollment_queue AS q "
        "INNER JOIN commands AS c ON c.command_uuid = q.command_uuid "
        "LEFT JOIN command_results AS r "
        "ON r.id = q.id AND r.command_uuid = q.command_uuid "
        "WHERE q.id = ? AND q.active = TRUE AND r.status IS NULL "
        "ORDER BY q.priority DESC, q.seq LIMIT 1",
        "x",
    )
    details = [row[3] for row in plan]
    assert any("USING INDEX enrollment_queue_next" in d for d in details)
    assert not any(d.startswith("SCAN") or "TEMP B-TREE" in d for d in details)


@pytest_twisted.ensureDeferred
async def test_sqlite_schema_is_versioned_and_persistent(tmp_path):
    store = await make_sqlite(tmp_path, {})
    await DEVICE.enroll(store)
    assert await select(store, "PRAGMA user_version") == [(schema_files("sqlite")[-1][0],)]
    assert await select(store, "PRAGMA journal_mode") == [("wal",)]
    assert await select(store, "PRAGMA foreign_keys") == [(1,)]
    await store.close()
    reopened = await make_sqlite(tmp_path, {})
    assert await reopened.retrieve_token_update_tally(DEVICE.id) == 1
    await select(reopened, "PRAGMA user_version = 99")
    await reopened.close()
    with pytest.raises(RuntimeError, match="newer"):
        await make_sqlite(tmp_path, {})


def test_sqlite_dsn_is_a_folder_or_a_database_file(tmp_path):
    assert database_path(str(tmp_path / "db")) == tmp_path / "db" / DB_FILE_NAME
    for name in ("nano.db", "nano.sqlite", "nano.sqlite3"):
        assert database_path(str(tmp_path / name)) == tmp_path / name


@pytest_twisted.ensureDeferred
async def test_sqlite_creates_its_folder(tmp_path):
    store = SQLiteStorage(str(tmp_path / "new" / "folder"))
    await store.open()
    await store.close()
    assert (tmp_path / "new" / "folder" / DB_FILE_NAME).is_file()


# -- factory and options --------------------------------------------------------


def test_parse_storage_options():
    assert parse_storage_options("") == {}
    assert parse_storage_options("delete=1") == {"delete": True}
    assert parse_storage_options("delete=0") == {"delete": False}
    with pytest.raises(ValueError, match="unknown storage option 'x'"):
        parse_storage_options("delete=1,x=y")
    with pytest.raises(ValueError, match="invalid value for delete"):
        parse_storage_options("delete=yes")
    with pytest.raises(ValueError, match="key=value"):
        parse_storage_options("delete")


def test_make_storage(tmp_path):
    memory = make_storage("inmem", "", "delete=1")
    assert isinstance(memory, MemoryStorage)
    assert memory._delete is True
    sqlite = make_storage("sqlite", str(tmp_path / "db"), "")
    assert isinstance(sqlite, SQLiteStorage)
    assert sqlite.path == tmp_path / "db" / DB_FILE_NAME
    file_alias = make_storage("file", str(tmp_path / "nano.db"), "")
    assert isinstance(file_alias, SQLiteStorage)
    assert file_alias.path == tmp_path / "nano.db"
    assert make_storage("sqlite", "", "").path == Path("db") / DB_FILE_NAME
    assert set(STORAGE_NAMES) >= {"inmem", "sqlite", "file"}
    with pytest.raises(ValueError, match="inmem, sqlite, file"):
        make_storage("dynamodb", "", "")
    with pytest.raises(ValueError, match="unknown storage option"):
        make_storage("sqlite", "", "bogus=1")
