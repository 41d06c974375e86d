"""/v1/escrowkeyunlock against a fake Apple endpoint over mutual TLS, and /migration."""

import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest_twisted
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.web.resource import Resource
from twisted.web.server import Site

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, key_pem
from nanomdm_tw.tools.fake_apns import issue_server_certificate
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from .serving import serve

TOPIC = "com.apple.mgmt.External.escrow-test"


class FakeEscrowKeyUnlock(Resource):
    """Apple's endpoint: records what arrives and who presented which client cert."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received = []

    def render_POST(self, request):
        client = request.transport.getPeerCertificate()
        request.content.seek(0)
        self.received.append(
            {
                "query": parse_qs(request.uri.partition(b"?")[2].decode()),
                "form": parse_qs(request.content.read().decode()),
                "content_type": request.getHeader("content-type"),
                "client_uid": client.to_cryptography()
                .subject.get_attributes_for_oid(NameOID.USER_ID)[0]
                .value,
            }
        )
        request.setResponseCode(202)
        request.setHeader("content-type", "text/plain")
        return b"accepted by fake Apple"


async def start_fake_apple(ca: DevelopmentCA):
    cert, key = issue_server_certificate(ca)
    server = PrivateCertificate.loadPEM(cert_pem(cert) + key_pem(key))
    tls = CertificateOptions(
        privateKey=server.privateKey.original,
        certificate=server.original,
        verify=True,
        caCerts=[Certificate.loadPEM(ca.cert_pem).original],
        requireCertificate=True,
    )
    resource = FakeEscrowKeyUnlock()
    site = Site(resource)
    port = await SSL4ServerEndpoint(reactor, 0, tls, interface="127.0.0.1").listen(site)
    return resource, port


FORM = {
    "topic": TOPIC,
    "serial": "C02XYZ",
    "productType": "iPad4,1",
    "imei": "35 000000 000000 0",
    "orgName": "Example Org",
    "guid": "admin@example.com",
    "escrowKey": "ABCD-EFGH-IJKL",
}


@pytest_twisted.ensureDeferred
async def test_escrow_key_unlock_passes_through(tmp_path: Path) -> None:
    apple_ca = DevelopmentCA.create("fake Apple CA")
    (tmp_path / "apple-ca.pem").write_bytes(apple_ca.cert_pem)
    fake, port = await start_fake_apple(apple_ca)
    url = f"https://127.0.0.1:{port.getHost().port}/deviceservicesworkers/escrowKeyUnlock"
    try:
        async with serve(
            tmp_path, apns_ca=str(tmp_path / "apple-ca.pem"), escrow_key_unlock_url=url
        ) as server:
            cert, key = apple_ca.issue_push_certificate(TOPIC)
            upload = await server.http.put(
                server.url + "/v1/pushcert", data=cert_pem(cert) + key_pem(key),
                auth=server.api_auth(),
            )  # fmt: skip
            assert upload.code == 200
            answer = await server.http.post(
                server.url + "/v1/escrowkeyunlock",
                data=urlencode(FORM).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                auth=server.api_auth(),
            )
            assert answer.code == 202
            assert await answer.content() == b"accepted by fake Apple"
            (received,) = fake.received
            assert received["query"] == {
                "serial": ["C02XYZ"], "productType": ["iPad4,1"], "imei": ["35 000000 000000 0"],
            }  # fmt: skip
            assert received["form"] == {
                "orgName": ["Example Org"], "guid": ["admin@example.com"],
                "escrowKey": ["ABCD-EFGH-IJKL"],
            }  # fmt: skip
            assert received["content_type"] == "application/x-www-form-urlencoded"
            assert received["client_uid"] == TOPIC
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_escrow_key_unlock_bad_requests(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        for form, code in [
            ({k: v for k, v in FORM.items() if k != "escrowKey"}, 400),
            ({k: v for k, v in FORM.items() if k != "topic"}, 400),
            (FORM, 404),  # no push certificate stored for the topic
        ]:
            answer = await server.http.post(
                server.url + "/v1/escrowkeyunlock", data=urlencode(form).encode(),
                auth=server.api_auth(),
            )  # fmt: skip
            assert answer.code == code
            assert "error" in json.loads(await answer.content())


@pytest_twisted.ensureDeferred
async def test_migration_creates_working_enrollments(tmp_path: Path) -> None:
    for retro in (False, True):
        async with serve(tmp_path / str(retro), migration=True, retro=retro) as server:
            d = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
            for prepared in (
                d.prepare_checkin("Authenticate", Topic=d.topic),
                d.prepare_token_update(),
            ):
                unauthenticated = await server.http.put(
                    server.url + "/migration", data=prepared.body
                )
                assert unauthenticated.code == 401
                answer = await server.http.put(
                    server.url + "/migration", data=prepared.body, auth=server.api_auth()
                )
                assert answer.code == 200, await answer.content()
            push = await server.storage.retrieve_push_info([d.id])
            assert push[d.id].push_magic == d.push_magic
            # The device itself then needs -retro to associate its certificate.
            assert (await d.idle()).code == (200 if retro else 403)
