"""
``GET /v1/overview`` over real loopback HTTP: enrollment counts on every
backend, the push and webhook counters exactly as ``/metrics`` shows them,
push certificate expiry as ``/v1/pushcerts``, and a 503 when storage does
not answer, as ``/readyz`` says.
"""

import json
from pathlib import Path

import pytest_twisted

from nanomdm_tw import __version__
from nanomdm_tw.resources.overview import enrollment_summary
from nanomdm_tw.tools.sim import DEFAULT_TOPIC, SimulatedDevice, make_identity

from .fake_apns import ca, fake, issue_push_cert  # noqa: F401 (fixtures)
from .inspection_client import storage_spec  # noqa: F401 (fixture: every backend)
from .receivers import Receiver
from .serving import serve
from .test_metrics import eventually, scrape, value
from .test_webhook import receiver  # noqa: F401 (fixture)


async def get(server, path: str):
    answer = await server.http.get(server.url + path, auth=server.api_auth())
    return answer.code, answer.headers, await answer.content()


async def overview(server) -> dict:
    code, headers, body = await get(server, "/v1/overview")
    assert code == 200, body
    assert headers.getRawHeaders("content-type") == ["application/json"]
    return json.loads(body)


def test_enrollment_summary() -> None:
    counts = {("Device", True): 2, ("Device", False): 1, ("User", True): 4}
    assert enrollment_summary(counts) == {
        "total": 7, "enabled": 6, "disabled": 1, "by_type": {"Device": 3, "User": 4},
    }  # fmt: skip
    assert enrollment_summary({}) == {"total": 0, "enabled": 0, "disabled": 0, "by_type": {}}


@pytest_twisted.ensureDeferred
async def test_overview_on_every_backend(tmp_path: Path, storage_spec, ca) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        empty = await overview(server)
        assert {key: empty[key] for key in ("version", "storage", "ready", "not_ready_reason")} == {
            "version": __version__, "storage": storage_spec.name, "ready": True,
            "not_ready_reason": "",
        }  # fmt: skip
        assert empty["enrollments"] == {"total": 0, "enabled": 0, "disabled": 0, "by_type": {}}
        assert empty["push_certs"] == []
        assert empty["webhook"]["configured"] is False
        cert, key = issue_push_cert(ca, DEFAULT_TOPIC)
        answer = await server.http.put(
            server.url + "/v1/pushcert", data=cert + key, auth=server.api_auth()
        )
        assert answer.code == 200
        devices = [
            SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
            for _ in range(2)
        ]
        for device in devices:
            await device.enroll()
        await devices[0].user_channel().enroll()
        await devices[1].checkout()
        document = await overview(server)
        assert document["enrollments"] == {
            "total": 3, "enabled": 2, "disabled": 1, "by_type": {"Device": 2, "User": 1},
        }  # fmt: skip
        _, _, listed = await get(server, "/v1/pushcerts")
        assert document["push_certs"] == json.loads(listed)["push_certs"]
        assert [entry["topic"] for entry in document["push_certs"]] == [DEFAULT_TOPIC]


@pytest_twisted.ensureDeferred
async def test_counters_are_those_of_metrics(
    tmp_path: Path, ca, fake, receiver: Receiver  # noqa: F811
) -> None:
    (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
    settings = dict(
        apns_url=fake.base_url,
        apns_ca=str(tmp_path / "apns-ca.pem"),
        webhook_url=receiver.url + "/hook",
    )
    async with serve(tmp_path, **settings) as server:
        cert, key = issue_push_cert(ca, DEFAULT_TOPIC)
        answer = await server.http.put(
            server.url + "/v1/pushcert", data=cert + key, auth=server.api_auth()
        )
        assert answer.code == 200
        device = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        await device.enroll()
        for path in (f"/v1/push/{device.id}", "/v1/push/UNKNOWN-ID"):
            await (await server.http.get(server.url + path, auth=server.api_auth())).content()

        async def delivered():
            samples = await scrape(server.http, server.url)
            return samples if value(samples, "nanomdm_webhook_deliveries_total") >= 2 else None

        await eventually(delivered, "the enrollment's webhook deliveries")
        samples = await scrape(server.http, server.url)
        document = await overview(server)
    pushes = {
        dict(labels)["result"]: int(count)
        for (name, labels), count in samples.items()
        if name == "nanomdm_pushes_total"
    }
    assert document["pushes"] == pushes
    assert pushes["success"] >= 1 and pushes["no_push_info"] >= 1
    drops = {
        dict(labels)["reason"]: int(count)
        for (name, labels), count in samples.items()
        if name == "nanomdm_webhook_drops_total"
    }
    assert document["webhook"] == {
        "configured": True,
        "delivered": int(value(samples, "nanomdm_webhook_deliveries_total")),
        "retries": int(value(samples, "nanomdm_webhook_retries_total")),
        "dropped": drops,
    }


@pytest_twisted.ensureDeferred
async def test_storage_not_answering_is_503_with_the_reason(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:

        async def unreachable() -> None:
            raise ConnectionRefusedError("database gone")

        server.storage.ping = unreachable
        code, headers, body = await get(server, "/v1/overview")
        assert code == 503
        assert headers.getRawHeaders("retry-after") == ["10"]
        assert headers.getRawHeaders("content-type") == ["application/json"]
        assert json.loads(body) == {"error": "storage not ready: storage unreachable"}
        readyz = await server.http.get(server.url + "/readyz")
        assert (readyz.code, await readyz.content()) == (503, b"storage unreachable\n")
        del server.storage.ping
        assert (await overview(server))["ready"] is True


@pytest_twisted.ensureDeferred
async def test_overview_needs_the_key(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        assert (await server.http.get(server.url + "/v1/overview")).code == 401
