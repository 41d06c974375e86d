"""/authproxy/: MDM-authenticated reverse proxy to a loopback target."""

import base64
import hashlib
import os
from pathlib import Path

import pytest_twisted
from treq import collect

from nanomdm_tw.crypto.cms import sign_detached
from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from .receivers import Answer, Receiver
from .serving import serve


@pytest_twisted.async_yield_fixture
async def target():
    receiver = await Receiver().start()
    receiver.answer = Answer(body=b"asset bytes", headers={b"Content-Type": b"text/plain"})
    yield receiver
    await receiver.stop()


async def proxied(server, identity, path: str, method: str = "GET", body: bytes = b"", **headers):
    if identity is not None:
        signature = sign_detached(body, identity.cert, identity.key)
        headers["Mdm-Signature"] = base64.b64encode(signature).decode()
    response = await server.http.request(
        method,
        server.url + path,
        data=body or None,
        headers={name.replace("_", "-"): [value] for name, value in headers.items()},
    )
    return response, await response.content()


async def enrolled(server) -> SimulatedDevice:
    d = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
    await d.enroll()
    return d


@pytest_twisted.ensureDeferred
async def test_authenticated_request_reaches_the_target(tmp_path: Path, target: Receiver) -> None:
    async with serve(tmp_path, auth_proxy_url=target.url + "/base/") as server:
        d = await enrolled(server)
        response, body = await proxied(
            server, d.identity, "/authproxy/assets/1?v=2", X_Enrollment_ID="SPOOFED"
        )
    assert (response.code, body) == (200, b"asset bytes")
    assert response.headers.getRawHeaders("Content-Type") == ["text/plain"]
    (recorded,) = target.requests
    assert (recorded.method, recorded.path) == (b"GET", b"/base/assets/1?v=2")
    assert recorded.headers.getRawHeaders(b"X-Enrollment-ID") == [d.id.encode()]
    assert len(recorded.header("X-Trace-ID")) == 16
    assert recorded.header("Mdm-Signature") is None
    assert recorded.header("X-Forwarded-For") == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_request_body_and_status_pass_through(tmp_path: Path, target: Receiver) -> None:
    target.answer = Answer(status=201, body=b"created")
    async with serve(tmp_path, auth_proxy_url=target.url) as server:
        d = await enrolled(server)
        response, body = await proxied(server, d.identity, "/authproxy/up", "PUT", b"payload")
    assert (response.code, body) == (201, b"created")
    assert (target.requests[0].method, target.requests[0].body) == (b"PUT", b"payload")


@pytest_twisted.ensureDeferred
async def test_unauthenticated_requests_are_refused(tmp_path: Path, target: Receiver) -> None:
    async with serve(tmp_path, auth_proxy_url=target.url) as server:
        await enrolled(server)
        unsigned, _ = await proxied(server, None, "/authproxy/x")
        not_enrolled, _ = await proxied(server, make_identity(server.ca), "/authproxy/x")
        stranger = make_identity(DevelopmentCA.create())
        untrusted, _ = await proxied(server, stranger, "/authproxy/x")
    assert (unsigned.code, not_enrolled.code, untrusted.code) == (400, 400, 403)
    assert target.requests == []


@pytest_twisted.ensureDeferred
async def test_target_down_is_a_bad_gateway(tmp_path: Path, target: Receiver) -> None:
    url = target.url
    await target.go_down()
    async with serve(tmp_path, auth_proxy_url=url) as server:
        d = await enrolled(server)
        response, _ = await proxied(server, d.identity, "/authproxy/x")
    assert response.code == 502


@pytest_twisted.ensureDeferred
async def test_large_answer_streams_through_intact(tmp_path: Path, target: Receiver) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    target.answer = Answer(body=payload)
    async with serve(tmp_path, auth_proxy_url=target.url) as server:
        d = await enrolled(server)
        signature = base64.b64encode(sign_detached(b"", d.identity.cert, d.identity.key))
        response = await server.http.get(
            server.url + "/authproxy/big",
            headers={"Mdm-Signature": [signature.decode()]},
            unbuffered=True,
        )
        chunks: list[int] = []
        digest = hashlib.sha256()

        def received(data: bytes) -> None:
            chunks.append(len(data))
            digest.update(data)

        await collect(response, received)
    assert response.code == 200
    assert sum(chunks) == len(payload)
    assert digest.digest() == hashlib.sha256(payload).digest()
    # It arrived in pieces, as the target sent them, not as one buffered blob.
    assert len(chunks) > 10 and max(chunks) < len(payload) // 4
