"""
``GET /v1/pushcerts`` over real loopback HTTP on every backend: each stored
push certificate's topic and expiry, by topic, and an unreadable one listed
with its error instead of failing the list.
"""

import datetime
import json
from pathlib import Path

import pytest_twisted
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from nanomdm_tw.crypto.devca import UID_OID, DevelopmentCA, cert_pem, generate_key
from nanomdm_tw.resources.pushcerts import push_cert_entries
from nanomdm_tw.storage.memory import MemoryStorage

from .fake_apns import OTHER_TOPIC, TOPIC, ca, push_certs  # noqa: F401 (fixtures)
from .inspection_client import storage_spec  # noqa: F401 (fixture: every backend)
from .serving import serve

KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc)


def push_cert_until(issuer: DevelopmentCA, topic: str, not_after: datetime.datetime) -> bytes:
    key = generate_key("ec")
    subject = x509.Name([x509.NameAttribute(UID_OID, topic)])
    cert = issuer.issue(
        subject, key.public_key(), [ExtendedKeyUsageOID.CLIENT_AUTH],
        not_before=not_after - datetime.timedelta(days=365), not_after=not_after,
    )  # fmt: skip
    return cert_pem(cert)


async def get(server, path: str, auth=True):
    answer = await server.http.get(server.url + path, auth=server.api_auth() if auth else None)
    return answer.code, answer.headers, await answer.content()


@pytest_twisted.ensureDeferred
async def test_days_left_rounds_down_and_goes_negative(ca) -> None:  # noqa: F811
    store = MemoryStorage()
    soon = NOW + datetime.timedelta(days=29, hours=23)
    gone = NOW - datetime.timedelta(hours=1)
    for topic, not_after in (("com.apple.mgmt.soon", soon), ("com.apple.mgmt.gone", gone),
                             ("com.apple.mgmt.now", NOW)):  # fmt: skip
        await store.store_push_cert(topic, push_cert_until(ca, topic, not_after), b"key")
    assert await push_cert_entries(store, NOW) == [
        {"topic": "com.apple.mgmt.gone", "not_after": "2026-11-29T11:00:00Z", "days_left": -1},
        {"topic": "com.apple.mgmt.now", "not_after": "2026-11-29T12:00:00Z", "days_left": 0},
        {"topic": "com.apple.mgmt.soon", "not_after": "2026-12-29T11:00:00Z", "days_left": 29},
    ]


@pytest_twisted.ensureDeferred
async def test_push_certs_listed_on_every_backend(
    tmp_path: Path, storage_spec, ca, push_certs  # noqa: F811
) -> None:
    async with serve(tmp_path, storage_spec) as server:
        code, headers, body = await get(server, "/v1/pushcerts")
        assert (code, body) == (200, b'{\n\t"push_certs": []\n}\n')
        assert headers.getRawHeaders("content-type") == ["application/json"]
        for topic in (OTHER_TOPIC, TOPIC):
            cert, key = push_certs[topic]
            answer = await server.http.put(
                server.url + "/v1/pushcert", data=cert + key, auth=server.api_auth()
            )
            assert answer.code == 200
        # What the databases' checks let through: the PEM frame around no certificate.
        unreadable = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        await server.storage.store_push_cert("com.apple.mgmt.broken", unreadable, KEY_PEM)
        before = datetime.datetime.now(datetime.timezone.utc)
        code, _, body = await get(server, "/v1/pushcerts")
        after = datetime.datetime.now(datetime.timezone.utc)
        assert code == 200
        entries = json.loads(body)["push_certs"]
        assert [entry["topic"] for entry in entries] == sorted(
            ["com.apple.mgmt.broken", TOPIC, OTHER_TOPIC]
        )
        (broken,) = [entry for entry in entries if entry["topic"] == "com.apple.mgmt.broken"]
        assert set(broken) == {"topic", "error"}
        assert broken["error"].startswith("cannot read the certificate: ")
        for entry in entries:
            if entry is broken:
                continue
            cert = x509.load_pem_x509_certificate(push_certs[entry["topic"]][0])
            not_after = cert.not_valid_after_utc
            assert entry["not_after"] == not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
            one_day = datetime.timedelta(days=1)
            assert entry["days_left"] in {(not_after - now) // one_day for now in (before, after)}
            assert set(entry) == {"topic", "not_after", "days_left"}


@pytest_twisted.ensureDeferred
async def test_push_certs_need_the_key(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        code, headers, _ = await get(server, "/v1/pushcerts", auth=False)
        assert code == 401
        assert headers.getRawHeaders("www-authenticate") == ['Basic realm="nanomdm"']
