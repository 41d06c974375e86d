"""The push service over the in-memory storage and the fake APNs."""

import json
import plistlib

import pytest_twisted
from twisted.internet import reactor, task

from nanomdm_tw.mdm.messages import decode_checkin
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.push.apns import PushResult
from nanomdm_tw.push.service import PushService
from nanomdm_tw.storage.memory import MemoryStorage

from .fake_apns import (  # noqa: F401
    OTHER_TOPIC,
    TOPIC,
    ca,
    fake,
    issue_push_cert,
    push_certs,
    token,
)


async def enroll(store, udid: str, topic: str, device_token: bytes) -> None:
    """Authenticate then TokenUpdate, as a device does."""
    for message_type, fields in (
        ("Authenticate", {}),
        ("TokenUpdate", {"Token": device_token, "PushMagic": "magic-" + udid}),
    ):
        message = decode_checkin(
            plistlib.dumps(
                {"MessageType": message_type, "UDID": udid, "Topic": topic, **fields}
            )
        )
        request = MDMRequest(message.enroll_id)
        if message_type == "Authenticate":
            await store.store_authenticate(request, message)
        else:
            await store.store_token_update(request, message)


@pytest_twisted.async_yield_fixture
async def store():
    storage = MemoryStorage()
    await storage.open()
    yield storage
    await storage.close()


@pytest_twisted.async_yield_fixture
async def make_service(fake, ca, store):
    """Builds push services against the fake; closed before the fake stops."""
    services = []

    def build(**options):
        service = PushService(
            store, reactor, base_url=fake.base_url, extra_ca_pem=ca.cert_pem, **options
        )
        services.append(service)
        return service

    yield build
    for service in services:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_push_to_enrolled_and_unknown_ids(fake, store, push_certs, make_service):
    await store.store_push_cert(TOPIC, *push_certs[TOPIC])
    await enroll(store, "DEV-1", TOPIC, token(1))
    await enroll(store, "DEV-2", TOPIC, token(2))

    results = await make_service().push(["DEV-1", "UNKNOWN", "DEV-2"])

    assert results["UNKNOWN"] == PushResult(reason="no push info")
    assert results["DEV-1"].status == results["DEV-2"].status == 200
    sent = {r.token_hex: json.loads(r.body)["mdm"] for r in fake.requests}
    assert sent == {token(1).hex(): "magic-DEV-1", token(2).hex(): "magic-DEV-2"}
    assert fake.connections_accepted == 1


@pytest_twisted.ensureDeferred
async def test_each_topic_pushes_with_its_own_cert(fake, store, push_certs, make_service):
    for topic in (TOPIC, OTHER_TOPIC):
        await store.store_push_cert(topic, *push_certs[topic])
    await enroll(store, "DEV-1", TOPIC, token(1))
    await enroll(store, "DEV-2", OTHER_TOPIC, token(2))

    results = await make_service().push(["DEV-1", "DEV-2"])

    assert {r.status for r in results.values()} == {200}
    assert sorted((r.headers["apns-topic"], r.client_topic) for r in fake.requests) == [
        (TOPIC, TOPIC),
        (OTHER_TOPIC, OTHER_TOPIC),
    ]
    assert fake.connections_accepted == 2


@pytest_twisted.ensureDeferred
async def test_topic_without_push_cert_fails_per_id(fake, store, push_certs, make_service):
    await store.store_push_cert(TOPIC, *push_certs[TOPIC])
    await enroll(store, "DEV-1", TOPIC, token(1))
    await enroll(store, "DEV-2", OTHER_TOPIC, token(2))

    results = await make_service().push(["DEV-1", "DEV-2"])

    assert results["DEV-1"].status == 200
    assert results["DEV-2"] == PushResult(reason="no push certificate for topic")


@pytest_twisted.ensureDeferred
async def test_unusable_push_cert_fails_per_id(store, make_service):
    await store.store_push_cert(TOPIC, b"not a certificate", b"not a key")
    await enroll(store, "DEV-1", TOPIC, token(1))

    result = (await make_service().push(["DEV-1"]))["DEV-1"]

    assert result.status is None
    assert result.reason.startswith("push certificate for topic unusable")


@pytest_twisted.ensureDeferred
async def test_renewed_push_cert_is_picked_up(fake, ca, store, push_certs, make_service):
    clock = task.Clock()
    service = make_service(stale_check_interval=2, clock=clock)
    await store.store_push_cert(TOPIC, *push_certs[TOPIC])
    await enroll(store, "DEV-1", TOPIC, token(1))
    await service.push(["DEV-1"])

    # The renewal may come from another server sharing the storage.
    await store.store_push_cert(TOPIC, *issue_push_cert(ca, TOPIC))
    await service.push(["DEV-1"])  # within the check interval: the cached client
    clock.advance(2)
    results = await service.push(["DEV-1"])

    assert results["DEV-1"].status == 200
    first, cached, renewed = fake.requests
    assert (first.connection, cached.connection, renewed.connection) == (1, 1, 2)
    assert cached.client_certificate == first.client_certificate
    assert renewed.client_certificate != first.client_certificate
    assert renewed.client_topic == TOPIC
