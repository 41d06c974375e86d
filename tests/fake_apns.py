"""Fixtures shared by the push tests: a test CA, push certs it issued, a running fake APNs."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, key_pem
from nanomdm_tw.tools.fake_apns import FakeAPNs

TOPIC = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
OTHER_TOPIC = "com.apple.mgmt.External.66666666-7777-8888-9999-000000000000"


def token(n: int) -> bytes:
    """A 32-byte device token, distinct per ``n``."""
    return n.to_bytes(32, "big")


def issue_push_cert(ca: DevelopmentCA, topic: str) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) of a push cert for ``topic`` that the fake trusts."""
    cert, key = ca.issue_push_certificate(topic)
    return cert_pem(cert), key_pem(key)


@pytest.fixture(scope="module")
def ca():
    return DevelopmentCA.create()


@pytest.fixture(scope="module")
def push_certs(ca):
    return {topic: issue_push_cert(ca, topic) for topic in (TOPIC, OTHER_TOPIC)}


@pytest_twisted.async_yield_fixture
async def fake(ca):
    server = FakeAPNs(reactor, ca)
    await server.start()
    yield server
    await server.stop()
