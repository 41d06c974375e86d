"""PUT/GET /v1/pushcert over loopback: good pairs stored, each bad upload a 400."""

import json
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, generate_key, key_pem

from .serving import serve

TOPIC = "com.apple.mgmt.External.e3b8ceac-1f18-2c8e-8a63-dd17d99435d9"


def push_pair(key_type: str = "rsa", topic: str | None = TOPIC):
    ca = DevelopmentCA.create("push CA")
    key = generate_key(key_type)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, "APSP:test")]
    if topic:
        names.insert(0, x509.NameAttribute(NameOID.USER_ID, topic))
    cert = ca.issue(x509.Name(names), key.public_key(), None)
    return cert, key


def pkcs1(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


async def upload(server, body: bytes):
    answer = await server.http.put(server.url + "/v1/pushcert", data=body, auth=server.api_auth())
    return answer.code, json.loads(await answer.content())


@pytest.mark.parametrize("key_type, key_format", [("rsa", "pkcs8"), ("rsa", "pkcs1"), ("ec", "pkcs8"), ("ec", "sec1")])
@pytest.mark.parametrize("key_first", [False, True])
@pytest_twisted.ensureDeferred
async def test_good_pairs(tmp_path: Path, key_type: str, key_format: str, key_first: bool) -> None:
    cert, key = push_pair(key_type)
    key_text = key_pem(key) if key_format == "pkcs8" else pkcs1(key)
    body = key_text + cert_pem(cert) if key_first else cert_pem(cert) + key_text
    async with serve(tmp_path) as server:
        code, document = await upload(server, body)
        assert code == 200, document
        not_after = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert document == {"topic": TOPIC, "not_after": not_after}
        stored = await server.storage.retrieve_push_cert(TOPIC)
        assert stored.cert_pem.strip() == cert_pem(cert).strip()
        answer = await server.http.get(
            server.url + "/v1/pushcert", params={"topic": TOPIC}, auth=server.api_auth()
        )
        assert answer.code == 200
        assert json.loads(await answer.content()) == document


def bad_bodies() -> dict[str, bytes]:
    cert, key = push_pair()
    _, other_key = push_pair()
    no_uid_cert, no_uid_key = push_pair(topic=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    return {
        "no cert": key_pem(key),
        "no key": cert_pem(cert),
        "encrypted key": cert_pem(cert) + encrypted,
        "mismatch": cert_pem(cert) + key_pem(other_key),
        "no UID": cert_pem(no_uid_cert) + key_pem(no_uid_key),
        "garbage": b"hello",
        "empty": b"",
        "odd PEM type": cert_pem(cert) + key_pem(key) + b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
    }


@pytest.mark.parametrize("case", sorted(bad_bodies()))
@pytest_twisted.ensureDeferred
async def test_bad_uploads(tmp_path: Path, case: str) -> None:
    async with serve(tmp_path) as server:
        code, document = await upload(server, bad_bodies()[case])
        assert code == 400
        assert set(document) == {"error"}
        assert await server.storage.retrieve_push_cert(TOPIC) is None


@pytest_twisted.ensureDeferred
async def test_a_topic_that_is_not_mdm_is_refused(tmp_path: Path) -> None:
    """As NanoMDM: a push certificate for another APNs service is no MDM push certificate."""
    cert, key = push_pair(topic="com.example.chat")
    async with serve(tmp_path) as server:
        code, document = await upload(server, cert_pem(cert) + key_pem(key))
        assert code == 400
        assert document == {"error": 'invalid APNs Topic: "com.example.chat"'}
        assert await server.storage.retrieve_push_cert("com.example.chat") is None


@pytest_twisted.ensureDeferred
async def test_get_needs_topic_and_a_known_one(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.get(server.url + "/v1/pushcert", auth=server.api_auth())
        assert answer.code == 400
        answer = await server.http.get(
            server.url + "/v1/pushcert", params={"topic": "nope"}, auth=server.api_auth()
        )
        assert answer.code == 404  # NanoMDM: 500, as for a storage failure
        assert "error" in json.loads(await answer.content())
