"""
Cert auth against the real in-memory storage.

Each refusal must be a 403 raised before the next service runs, so a
refused request leaves nothing behind.
"""

import plistlib

import pytest
import pytest_twisted
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.crypto.identity import cert_hash
from nanomdm_tw.errors import AuthenticationError, MessageError
from nanomdm_tw.mdm.messages import (
    CheckinMessage,
    Command,
    CommandReport,
    decode_checkin,
    decode_command_report,
)
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.services.certauth import CertAuthService
from nanomdm_tw.services.interfaces import IMDMService
from nanomdm_tw.storage.memory import MemoryStorage

UDID_A = "00008030-000A11112222802E"
UDID_B = "00008030-000B33334444802E"
USER_ID = "6E9C2B2D-1B1B-4B6A-9D1E-3C5E0A9B7F11"
TOPIC = "com.apple.mgmt.External.2d3c1d8e-1f7f-4b5a-9a0e-6f2c1f0e9a11"


@implementer(IMDMService)
class RecordingService:
    """The next link: remembers what reached it."""

    def __init__(self):
        self.seen: list[str] = []

    async def checkin(self, request: MDMRequest, message: CheckinMessage):
        self.seen.append(message.message_type)
        return None

    async def command_report(
        self, request: MDMRequest, report: CommandReport
    ) -> Command | None:
        self.seen.append("report:" + report.status)
        return None


@pytest.fixture(scope="module")
def ca() -> DevelopmentCA:
    return DevelopmentCA.create()


@pytest.fixture(scope="module")
def cert_a(ca):
    return ca.issue_device_identity("device-a", key_type="ec")[0]


@pytest.fixture(scope="module")
def cert_b(ca):
    return ca.issue_device_identity("device-b", key_type="ec")[0]


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def recorder() -> RecordingService:
    return RecordingService()


def checkin(message_type: str, udid: str, **fields) -> CheckinMessage:
    values = {"MessageType": message_type, "UDID": udid, **fields}
    if message_type in ("Authenticate", "TokenUpdate"):
        values.setdefault("Topic", TOPIC)
    if message_type == "TokenUpdate":
        values.setdefault("Token", b"\x01\x02")
        values.setdefault("PushMagic", "2E3D1A6B-6A43-4E3F-8F36-5B0D3C6F7A01")
    return decode_checkin(plistlib.dumps(values))


def idle(udid: str, **fields) -> CommandReport:
    values = {"Status": "Idle", "UDID": udid, **fields}
    return decode_command_report(plistlib.dumps(values))


def request_for(message, cert) -> MDMRequest:
    return MDMRequest(enroll_id=message.enroll_id, certificate=cert)


async def send(service: CertAuthService, message, cert):
    """Deliver a check-in or report as the MDM resource would."""
    if isinstance(message, CommandReport):
        return await service.command_report(request_for(message, cert), message)
    return await service.checkin(request_for(message, cert), message)


async def refused(service, message, cert) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as refusal:
        await send(service, message, cert)
    assert refusal.value.status == 403
    return refusal.value


def test_provides_the_service_interface(storage, recorder):
    assert verifyObject(IMDMService, CertAuthService(recorder, storage))


@pytest_twisted.ensureDeferred
async def test_authenticate_associates(storage, recorder, cert_a):
    service = CertAuthService(recorder, storage)
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    assert await storage.is_cert_hash_associated(UDID_A, cert_hash(cert_a))
    assert await storage.enrollment_id_for_cert_hash(cert_hash(cert_a)) == UDID_A
    await send(service, checkin("TokenUpdate", UDID_A), cert_a)
    await send(service, idle(UDID_A), cert_a)
    # The same device re-enrolling with its own certificate is not a reuse.
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    assert recorder.seen == [
        "Authenticate",
        "TokenUpdate",
        "report:Idle",
        "Authenticate",
    ]


@pytest_twisted.ensureDeferred
async def test_certificate_reuse_by_another_device_refused(
    storage, recorder, cert_a
):
    service = CertAuthService(recorder, storage)
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    await refused(service, checkin("Authenticate", UDID_B), cert_a)
    assert not await storage.enrollment_has_cert_hash(UDID_B)
    assert recorder.seen == ["Authenticate"]


@pytest.mark.parametrize("retro", [False, True])
@pytest_twisted.ensureDeferred
async def test_other_device_certificate_refused(
    storage, recorder, cert_a, cert_b, retro
):
    """Device B cannot speak for device A with its own (valid) certificate."""
    service = CertAuthService(recorder, storage, retro=retro)
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    await send(service, checkin("Authenticate", UDID_B), cert_b)
    await refused(service, checkin("TokenUpdate", UDID_A), cert_b)
    await refused(service, idle(UDID_A), cert_b)
    assert not await storage.is_cert_hash_associated(UDID_A, cert_hash(cert_b))
    assert recorder.seen == ["Authenticate", "Authenticate"]


@pytest.mark.parametrize(
    "message",
    [
        lambda: checkin("TokenUpdate", UDID_A),
        lambda: checkin("CheckOut", UDID_A),
        lambda: checkin("SetBootstrapToken", UDID_A),
        lambda: checkin("GetBootstrapToken", UDID_A),
        lambda: checkin("DeclarativeManagement", UDID_A, Endpoint="tokens"),
        lambda: idle(UDID_A),
    ],
)
@pytest_twisted.ensureDeferred
async def test_unassociated_request_refused(storage, recorder, cert_a, message):
    service = CertAuthService(recorder, storage)
    refusal = await refused(service, message(), cert_a)
    assert "not associated" in str(refusal)
    assert not await storage.has_cert_hash(cert_hash(cert_a))
    assert recorder.seen == []


@pytest_twisted.ensureDeferred
async def test_retro_associates_an_unassociated_enrollment(storage, recorder, cert_a):
    service = CertAuthService(recorder, storage, retro=True)
    await send(service, idle(UDID_A), cert_a)
    assert await storage.is_cert_hash_associated(UDID_A, cert_hash(cert_a))
    await send(service, checkin("TokenUpdate", UDID_A), cert_a)
    assert recorder.seen == ["report:Idle", "TokenUpdate"]


@pytest_twisted.ensureDeferred
async def test_retro_never_replaces_an_association(storage, recorder, cert_a, cert_b):
    service = CertAuthService(recorder, storage, retro=True)
    await send(service, checkin("TokenUpdate", UDID_A), cert_a)
    await refused(service, checkin("TokenUpdate", UDID_A), cert_b)
    assert not await storage.has_cert_hash(cert_hash(cert_b))
    assert recorder.seen == ["TokenUpdate"]


@pytest_twisted.ensureDeferred
async def test_retro_refuses_a_certificate_associated_elsewhere(
    storage, recorder, cert_a
):
    service = CertAuthService(recorder, storage, retro=True)
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    await refused(service, idle(UDID_B), cert_a)
    assert not await storage.enrollment_has_cert_hash(UDID_B)
    assert recorder.seen == ["Authenticate"]


@pytest_twisted.ensureDeferred
async def test_user_channel_uses_the_device_association(
    storage, recorder, cert_a, cert_b
):
    service = CertAuthService(recorder, storage)
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    user_token_update = checkin("TokenUpdate", UDID_A, UserID=USER_ID)
    assert user_token_update.enroll_id.id == UDID_A + ":" + USER_ID
    await send(service, user_token_update, cert_a)
    await send(service, idle(UDID_A, UserID=USER_ID), cert_a)
    await refused(service, checkin("TokenUpdate", UDID_A, UserID=USER_ID), cert_b)
    assert not await storage.enrollment_has_cert_hash(UDID_A + ":" + USER_ID)
    assert recorder.seen == ["Authenticate", "TokenUpdate", "report:Idle"]


@pytest_twisted.ensureDeferred
async def test_user_enrollment_uses_the_device_channel(storage, recorder, cert_a):
    service = CertAuthService(recorder, storage)
    enrollment_id = "B0B0B0B0-1111-2222-3333-444455556666"
    await send(
        service, checkin("Authenticate", "", EnrollmentID=enrollment_id), cert_a
    )
    assert await storage.is_cert_hash_associated(enrollment_id, cert_hash(cert_a))
    user_channel = checkin(
        "TokenUpdate", "", EnrollmentID=enrollment_id, EnrollmentUserID="user-1"
    )
    await send(service, user_channel, cert_a)
    assert recorder.seen == ["Authenticate", "TokenUpdate"]


@pytest_twisted.ensureDeferred
async def test_missing_certificate_is_400(storage, recorder):
    service = CertAuthService(recorder, storage)
    for message in (checkin("Authenticate", UDID_A), idle(UDID_A)):
        with pytest.raises(MessageError) as missing:
            await send(service, message, None)
        assert missing.value.status == 400
    assert recorder.seen == []


class CountingStore:
    """The real in-memory store, counting the association lookups made of it."""

    def __init__(self, store: MemoryStorage):
        self._store = store
        self.lookups = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def is_cert_hash_associated(self, enrollment_id, cert_hash):
        self.lookups += 1
        return await self._store.is_cert_hash_associated(enrollment_id, cert_hash)


@pytest_twisted.ensureDeferred
async def test_confirmed_pairs_are_not_looked_up_again(storage, recorder, cert_a, cert_b):
    store = CountingStore(storage)
    service = CertAuthService(recorder, store, cache_size=1)
    await send(service, checkin("Authenticate", UDID_A), cert_a)
    for _ in range(3):
        await send(service, idle(UDID_A), cert_a)
    assert store.lookups == 0  # associated by this server: known without asking
    # A second device pushes the first out of the (size 1) cache.
    await storage.associate_cert_hash(UDID_B, cert_hash(cert_b))
    await send(service, idle(UDID_B), cert_b)
    await send(service, idle(UDID_B), cert_b)
    assert store.lookups == 1
    await send(service, idle(UDID_A), cert_a)
    assert store.lookups == 2
    # A refused pair is never remembered.
    await refused(service, idle(UDID_A), cert_b)
    await refused(service, idle(UDID_A), cert_b)
    assert store.lookups == 4
