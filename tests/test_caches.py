"""
Every per-process cache is bounded and forgets in time (nanomdm_tw/cache.py):
an association deleted or a push cert replaced in the shared database, by
whatever process, takes effect here within the cache's TTL.  Time is a
task.Clock: nothing sleeps.
"""

import datetime
import plistlib
import sqlite3
import threading

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from twisted.internet import reactor, task

from nanomdm_tw.cache import LRUCache, memoize
from nanomdm_tw.crypto import cms_der, signers
from nanomdm_tw.crypto.cms import sign_detached
from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.crypto.identity import cert_hash
from nanomdm_tw.crypto.memo import CertificateMemo
from nanomdm_tw.crypto.trust import TrustStore
from nanomdm_tw.errors import AuthenticationError
from nanomdm_tw.mdm.messages import decode_checkin, decode_command_report
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.push.service import PushService
from nanomdm_tw.services.certauth import CACHE_TTL, NO_CERT_ASSOC, CertAuthService
from nanomdm_tw.storage.sqlite import SQLiteStorage

from .fake_apns import TOPIC, ca, fake, issue_push_cert, push_certs, token  # noqa: F401
from .mysqlserver import ThrowawayDatabase
from .storage_backends import ThrowawayMySQLStorage
from .test_certauth import RecordingService
from .test_push_service import enroll

BODY = b"<?xml version='1.0'?><plist><dict><key>MessageType</key></dict></plist>"


def identities(device_ca: DevelopmentCA, count: int, prefix: str = "device") -> list:
    """(certificate, key) pairs of ``count`` devices (EC keys: quick to make)."""
    return [
        device_ca.issue_device_identity(f"{prefix}-{n}", key_type="ec") for n in range(count)
    ]


# The cache itself.


def test_lru_cache_is_bounded_least_recently_used_out_first() -> None:
    evicted = []
    cache = LRUCache(3, on_evict=evicted.append)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # now the most recently used
    cache.put("d", "D")
    assert (cache.get("b"), len(cache), evicted) == (None, 3, ["B"])
    for number in range(1000):
        cache.put(number, number)
    assert len(cache) == 3
    assert cache.values() == [997, 998, 999]


def test_lru_cache_forgets_after_its_ttl_counted_from_the_put() -> None:
    clock = task.Clock()
    evicted = []
    cache = LRUCache(10, ttl=60, clock=clock, on_evict=evicted.append)
    cache.put("pair", True)
    cache.put("short", True, until=30)
    clock.advance(29)
    assert cache.get("pair") and cache.get("short")
    clock.advance(1)
    assert cache.get("short") is None  # its own, earlier end
    clock.advance(29.9)
    assert cache.get("pair")  # uses do not extend it
    clock.advance(0.1)
    assert cache.get("pair") is None
    assert (len(cache), evicted) == (0, [True, True])
    cache.put("pair", True)
    assert cache.pop("pair") and cache.pop("pair") is None
    with pytest.raises(ValueError):
        LRUCache(0)


def test_lru_cache_bounded_in_bytes() -> None:
    cache = LRUCache(100, max_bytes=1000)
    for number in range(50):
        cache.put(number, number, weight=300)
    assert (len(cache), cache.held_bytes, cache.values()) == (3, 900, [47, 48, 49])
    cache.put(49, "lighter", weight=100)
    cache.put("huge", "never kept", weight=1001)
    assert (cache.held_bytes, cache.get("huge")) == (700, None)
    cache.pop(48)
    cache.clear()
    assert cache.held_bytes == 0


def test_lru_cache_shared_by_threads_keeps_its_bounds() -> None:
    cache = LRUCache(50, max_bytes=4000)

    def hammer(seed: int) -> None:
        for number in range(20_000):
            key = (seed * 7919 + number) % 300
            if cache.get(key) is None:
                cache.put(key, key, weight=key % 100)
            if number % 97 == 0:
                cache.pop(key)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50
    assert cache.held_bytes == sum(key % 100 for key in cache.values()) <= 4000


def test_memoized_function_holds_at_most_its_bytes() -> None:
    calls = []

    @memoize(100, max_bytes=1000)
    def measured(data: bytes) -> int:
        calls.append(data)
        return len(data)

    assert measured(b"a" * 300) == measured(b"a" * 300) == 300
    assert len(calls) == 1
    for number in range(20):
        measured(bytes([number]) * 300)
    assert measured.cache.held_bytes == 900


def self_signed_with_padding(key, padding: int) -> x509.Certificate:
    """A certificate anyone can make, with ``padding`` bytes of an unknown extension."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\0" * padding),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def test_signature_caches_hold_bounded_bytes_of_strangers_signatures() -> None:
    """Signatures verify before trust is asked: anyone can fill these caches, not past their bytes."""
    key = ec.generate_private_key(ec.SECP256R1())
    for _ in range(160):  # 40 MB of signatures, each valid and distinct
        cert = self_signed_with_padding(key, 250_000)
        assert cms_der.verify_der(sign_detached(BODY, cert, key), BODY) == cert
    assert 0 < cms_der._layouts.held_bytes <= cms_der._CACHE_BYTES
    assert 0 < cms_der._signer.cache.held_bytes <= cms_der._CACHE_BYTES
    assert 0 < signers.load_certificate.cache.held_bytes <= signers.CACHE_BYTES


# Cert auth: an association deleted in the shared database.


def association_deleter(store):
    """Deletes one association through a connection of its own, as another process would."""
    if isinstance(store, SQLiteStorage):

        def delete(enrollment_id: str) -> None:
            with sqlite3.connect(store.path) as connection:
                connection.execute(
                    "DELETE FROM cert_auth_associations WHERE id = ?", (enrollment_id,)
                )
            connection.close()

        return delete

    def delete(enrollment_id: str) -> None:
        connection = store.database.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM cert_auth_associations WHERE id = %s", (enrollment_id,)
                )
            connection.commit()
        finally:
            connection.close()

    return delete


@pytest_twisted.async_yield_fixture(params=["sqlite", "mysql"])
async def sql_store(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStorage(str(tmp_path / "db"))
    else:
        store = ThrowawayMySQLStorage(ThrowawayDatabase(), {})
    await store.open()
    yield store
    await store.close()


def message(message_type: str, udid: str):
    if message_type == "Idle":
        return decode_command_report(plistlib.dumps({"Status": "Idle", "UDID": udid}))
    fields = {"MessageType": message_type, "UDID": udid, "Topic": TOPIC}
    return decode_checkin(plistlib.dumps(fields))


async def send(service: CertAuthService, message, cert) -> None:
    request = MDMRequest(enroll_id=message.enroll_id, certificate=cert)
    if hasattr(message, "message_type"):
        await service.checkin(request, message)
    else:
        await service.command_report(request, message)


async def refusal(service: CertAuthService, message, cert) -> tuple[int, str]:
    with pytest.raises(AuthenticationError) as refused:
        await send(service, message, cert)
    return refused.value.status, str(refused.value)


@pytest_twisted.ensureDeferred
async def test_deleted_association_stops_being_honoured_after_the_ttl(sql_store) -> None:
    device_ca = DevelopmentCA.create()
    (cert, _), (stranger, _) = identities(device_ca, 2)
    clock = task.Clock()
    recorder = RecordingService()
    service = CertAuthService(recorder, sql_store, clock=clock)
    await send(service, message("Authenticate", "CUT-OFF"), cert)
    await send(service, message("Idle", "CUT-OFF"), cert)

    association_deleter(sql_store)("CUT-OFF")
    assert not await sql_store.is_cert_hash_associated("CUT-OFF", cert_hash(cert))
    clock.advance(CACHE_TTL - 1)
    await send(service, message("Idle", "CUT-OFF"), cert)  # still remembered
    clock.advance(1)

    # Now answered as a device that was never associated is.
    cut_off = await refusal(service, message("Idle", "CUT-OFF"), cert)
    never = await refusal(service, message("Idle", "NEVER"), stranger)
    assert cut_off == never == (403, "cert auth: " + NO_CERT_ASSOC)
    assert recorder.seen == ["Authenticate", "report:Idle", "report:Idle"]


@pytest_twisted.ensureDeferred
async def test_cert_auth_cache_is_bounded(sql_store) -> None:
    device_ca = DevelopmentCA.create()
    ((cert, _),) = identities(device_ca, 1)
    service = CertAuthService(RecordingService(), sql_store, cache_size=5)
    for number in range(40):
        await send(service, message("Authenticate", f"DEVICE-{number}"), cert)
        association_deleter(sql_store)(f"DEVICE-{number}")  # the next may take the cert
    assert len(service._confirmed) == 5


# Trust and the Mdm-Signature caches.


def test_trust_verdicts_expire_and_stay_bounded() -> None:
    device_ca = DevelopmentCA.create()
    clock = task.Clock()
    clock.advance(device_ca.cert.not_valid_before_utc.timestamp() + 3600)
    trust = TrustStore(device_ca.cert_pem, clock=clock, cache_size=4, cache_ttl=60)
    ((cert, _),) = identities(device_ca, 1)
    trust.verify(cert)
    checks = []
    original = trust._verify_chain

    def counted(*args):
        checks.append(args)
        return original(*args)

    trust._verify_chain = counted
    trust.verify(cert)
    clock.advance(59)
    trust.verify(cert)
    assert checks == []
    clock.advance(1)
    trust.verify(cert)
    assert len(checks) == 1  # checked again once its verdict expired
    for other, _ in identities(device_ca, 20, "other"):
        trust.verify(other)
    assert len(trust._verified) == len(trust._recent) == 4


def test_certificate_memo_is_bounded() -> None:
    device_ca = DevelopmentCA.create()
    memo = CertificateMemo(3)
    certs = [cert for cert, _ in identities(device_ca, 10)]
    for cert in certs:
        memo.put(cert, cert_hash(cert))
    assert len(memo) == 3
    assert memo.get(certs[-1]) == cert_hash(certs[-1]) and memo.get(certs[0]) is None


def test_signature_layouts_are_bounded(monkeypatch) -> None:
    device_ca = DevelopmentCA.create()
    monkeypatch.setattr(cms_der, "_layouts", LRUCache(3))
    for cert, key in identities(device_ca, 8):
        assert cms_der.verify_der(sign_detached(BODY, cert, key), BODY) == cert
    assert len(cms_der._layouts) == 3


# Push clients: a push cert replaced in the shared database.


@pytest_twisted.async_yield_fixture
async def sqlite_pair(tmp_path):
    """Two storages on one SQLite database: this server's and another process's."""
    ours, theirs = (SQLiteStorage(str(tmp_path / "db")) for _ in range(2))
    await ours.open()
    await theirs.open()
    yield ours, theirs
    await theirs.close()
    await ours.close()


@pytest_twisted.ensureDeferred
async def test_push_cert_replaced_in_the_database_is_used_after_the_check_interval(
    fake, ca, push_certs, sqlite_pair  # noqa: F811
) -> None:
    ours, theirs = sqlite_pair
    clock = task.Clock()
    service = PushService(
        ours, reactor, base_url=fake.base_url, extra_ca_pem=ca.cert_pem,
        stale_check_interval=2, clock=clock,
    )  # fmt: skip
    try:
        await theirs.store_push_cert(TOPIC, *push_certs[TOPIC])
        await enroll(ours, "DEV-1", TOPIC, token(1))
        await service.push(["DEV-1"])
        await theirs.store_push_cert(TOPIC, *issue_push_cert(ca, TOPIC))
        await service.push(["DEV-1"])  # within the interval: the cached client
        clock.advance(2)
        renewed = await service.push(["DEV-1"])
        with sqlite3.connect(ours.path) as connection:
            connection.execute("DELETE FROM push_certs WHERE topic = ?", (TOPIC,))
        connection.close()
        clock.advance(2)
        deleted = await service.push(["DEV-1"])
    finally:
        await service.stopService()
    assert renewed["DEV-1"].status == 200
    assert deleted["DEV-1"].reason == "no push certificate for topic"
    first, cached, after = fake.requests
    assert (first.connection, cached.connection, after.connection) == (1, 1, 2)
    assert after.client_certificate != first.client_certificate


@pytest_twisted.ensureDeferred
async def test_push_clients_are_bounded_and_evicted_ones_closed(
    fake, ca, push_certs, sqlite_pair  # noqa: F811
) -> None:
    ours, _ = sqlite_pair
    service = PushService(
        ours, reactor, base_url=fake.base_url, extra_ca_pem=ca.cert_pem, max_clients=2
    )
    topics = [f"{TOPIC}.{number}" for number in range(5)]
    try:
        for number, topic in enumerate(topics):
            await ours.store_push_cert(topic, *issue_push_cert(ca, topic))
            await enroll(ours, f"DEV-{number}", topic, token(number))
            result = await service.push([f"DEV-{number}"])
            assert result[f"DEV-{number}"].status == 200
        assert len(service._providers) == 2
        assert len(service._locks) == 0  # none held, none kept
        await service.push(["DEV-0"])  # evicted: a new client, a new connection
    finally:
        await service.stopService()
    assert [r.connection for r in fake.requests] == [1, 2, 3, 4, 5, 6]
