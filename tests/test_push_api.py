"""Enqueue with push and /v1/push end to end: simulator, server and a fake APNs over TLS."""

import json
from pathlib import Path

import pytest_twisted

from nanomdm_tw.tools.sim import DEFAULT_TOPIC, SimulatedDevice, make_command, make_identity

from .fake_apns import ca, fake, issue_push_cert  # noqa: F401 (fixtures)
from .serving import serve


async def push_ready_server(tmp_path: Path, ca, fake):  # noqa: F811
    (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
    return serve(tmp_path, apns_url=fake.base_url, apns_ca=str(tmp_path / "apns-ca.pem"))


async def upload_push_cert(server, ca) -> None:  # noqa: F811
    cert, key = issue_push_cert(ca, DEFAULT_TOPIC)
    answer = await server.http.put(
        server.url + "/v1/pushcert", data=cert + key, auth=server.api_auth()
    )
    assert answer.code == 200


async def enrolled(server, count: int) -> list[SimulatedDevice]:
    devices = []
    for _ in range(count):
        d = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        await d.enroll()
        devices.append(d)
    return devices


@pytest_twisted.ensureDeferred
async def test_enqueue_pushes_to_the_enrolled(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        a, b = await enrolled(server, 2)
        command = make_command("ProfileList", "CMD-PUSH")
        answer = await server.http.put(
            server.url + f"/v1/enqueue/{a.id},{b.id},UNKNOWN",
            data=command, auth=server.api_auth(),
        )  # fmt: skip
        assert answer.code == 207
        document = json.loads(await answer.content())
        status = document["status"]
        assert status["UNKNOWN"] == {"command_error": "unknown enrollment"}
        for d in (a, b):
            assert set(status[d.id]) == {"push_result"}
            assert len(status[d.id]["push_result"]) == 36  # the fake's apns-id UUID
        assert document["command_uuid"] == "CMD-PUSH"
        assert "no_push" not in document
        pushed = {r.token_hex: r for r in fake.requests}
        assert set(pushed) == {a.push_token.hex(), b.push_token.hex()}
        for d in (a, b):
            request = pushed[d.push_token.hex()]
            assert json.loads(request.body) == {"mdm": d.push_magic}
            assert request.headers["apns-topic"] == DEFAULT_TOPIC
            assert request.headers["apns-push-type"] == "mdm"
            assert request.client_topic == DEFAULT_TOPIC
        # The woken devices fetch the command.
        for d in (a, b):
            assert (await d.idle()).plist["CommandUUID"] == "CMD-PUSH"


@pytest_twisted.ensureDeferred
async def test_nopush_sends_nothing(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        (a,) = await enrolled(server, 1)
        answer = await server.http.put(
            server.url + f"/v1/enqueue/{a.id}?nopush=1",
            data=make_command("ProfileList"), auth=server.api_auth(),
        )  # fmt: skip
        assert answer.code == 200
        assert json.loads(await answer.content())["no_push"] is True
        assert fake.requests == []


@pytest_twisted.ensureDeferred
async def test_push_endpoint_maps_errors_per_id(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        good, gone = await enrolled(server, 2)
        fake.unregistered.add(gone.push_token.hex())
        answer = await server.http.get(
            server.url + f"/v1/push/{good.id},{gone.id},NOBODY", auth=server.api_auth()
        )
        assert answer.code == 207
        body = await answer.content()
        status = json.loads(body)["status"]
        # Byte for byte what NanoMDM's encoding (tab-indented, newline-ended) gives.
        assert body == (json.dumps(json.loads(body), indent="\t") + "\n").encode()
        assert set(status[good.id]) == {"push_result"}
        assert status[gone.id] == {"push_error": "Unregistered (HTTP 410)"}
        assert status["NOBODY"] == {"push_error": "no push info"}


@pytest_twisted.ensureDeferred
async def test_push_without_certificate(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    async with await push_ready_server(tmp_path, ca, fake) as server:
        (a,) = await enrolled(server, 1)
        answer = await server.http.get(server.url + f"/v1/push/{a.id}", auth=server.api_auth())
        assert answer.code == 500
        status = json.loads(await answer.content())["status"]
        assert status[a.id] == {"push_error": "no push certificate for topic"}


@pytest_twisted.ensureDeferred
async def test_the_next_push_after_an_upload_uses_the_new_cert(
    tmp_path: Path, ca, fake  # noqa: F811
) -> None:
    """PUT /v1/pushcert replaces the topic's APNs client at once in this process."""
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        (d,) = await enrolled(server, 1)
        push = server.url + f"/v1/push/{d.id}"
        assert (await server.http.get(push, auth=server.api_auth())).code == 200
        await upload_push_cert(server, ca)  # a renewed certificate for the same topic
        assert (await server.http.get(push, auth=server.api_auth())).code == 200
        before, after = fake.requests
        assert after.client_certificate != before.client_certificate
        assert after.connection != before.connection
        assert after.client_topic == DEFAULT_TOPIC
