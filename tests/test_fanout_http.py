"""
The JSON-body fan-outs over real loopback HTTP: ``POST /v1/enqueue`` and
``POST /v1/push`` answer exactly what the path forms answer, take 100,000
IDs in one request, and refuse every bad body with a 400 that changes nothing.
"""

import base64
import json
import re
from pathlib import Path

import pytest
import pytest_twisted

from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.sim import make_command

from .fake_apns import ca, fake  # noqa: F401 (fixtures)
from .serving import serve
from .test_push_api import enrolled, push_ready_server, upload_push_cert


def fanout_body(ids: list[str], command: bytes) -> bytes:
    return json.dumps({"ids": ids, "command": base64.b64encode(command).decode()}).encode()


async def request(server, method: str, path: str, body: bytes | None = None, **kwargs):
    answer = await server.http.request(
        method, server.url + path, data=body, auth=server.api_auth(), **kwargs
    )
    return answer.code, answer.headers, await answer.content()


def storage_spec(tmp_path: Path, name: str) -> StorageSpec:
    return StorageSpec(name, str(tmp_path / "db") if name == "sqlite" else "", "")


@pytest_twisted.ensureDeferred
async def test_post_enqueue_answers_as_put(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        a, b = await enrolled(server, 2)
        ids = [a.id, "UNKNOWN", b.id]
        put = await request(
            server, "PUT", "/v1/enqueue/" + ",".join(ids) + "?nopush=1",
            make_command("ProfileList", "CMD-PATH"),
        )  # fmt: skip
        post = await request(
            server, "POST", "/v1/enqueue?nopush=1",
            fanout_body(ids, make_command("ProfileList", "CMD-BODY")),
            headers={"content-type": ["application/json"]},
        )  # fmt: skip
        assert put[0] == post[0] == 207
        assert post[1].getRawHeaders("content-type") == ["application/json"]
        assert post[2] == put[2].replace(b"CMD-PATH", b"CMD-BODY")
        for d in (a, b):
            assert [c["CommandUUID"] for c in await d.run_queue()] == ["CMD-PATH", "CMD-BODY"]


@pytest_twisted.ensureDeferred
async def test_post_enqueue_with_ids_in_the_path_is_still_the_path_form(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as server:
        (a,) = await enrolled(server, 1)
        code, _, body = await request(
            server, "POST", f"/v1/enqueue/{a.id}?nopush=1", make_command("ProfileList", "C")
        )
        assert (code, json.loads(body)) == (
            200, {"no_push": True, "command_uuid": "C", "request_type": "ProfileList"}
        )  # fmt: skip


@pytest.mark.parametrize("backend", ["inmem", "sqlite"])
@pytest_twisted.ensureDeferred
async def test_one_hundred_thousand_ids_in_one_post(tmp_path: Path, backend: str) -> None:
    async with serve(tmp_path, storage_spec(tmp_path, backend)) as server:
        a, b = await enrolled(server, 2)
        unknown = [f"{n:08X}-0000-0000-0000-000000000000" for n in range(99_998)]
        ids = [a.id, *unknown, b.id]
        code, _, body = await request(
            server, "POST", "/v1/enqueue?nopush=1",
            fanout_body(ids, make_command("ProfileList", "CMD-FLEET")),
        )  # fmt: skip
        assert code == 207
        document = json.loads(body)
        assert len(ids) == 100_000
        assert set(document["status"]) == set(unknown)
        assert document["status"][unknown[-1]] == {"command_error": "unknown enrollment"}
        assert document["command_uuid"] == "CMD-FLEET"
        for d in (a, b):
            assert (await d.idle()).plist["CommandUUID"] == "CMD-FLEET"

        code, _, body = await request(
            server, "POST", "/v1/enqueue?nopush=1",
            fanout_body([*ids, "ONE-MORE"], make_command("ProfileList", "CMD-TOO-MANY")),
        )  # fmt: skip
        assert code == 400
        assert "at most 100000" in json.loads(body)["command_error"]
        for d in (a, b):  # nothing more was queued
            assert (await d.report("Acknowledged", "CMD-FLEET")).plist is None


BAD_ENQUEUE_BODIES = [
    b"",
    b"not json",
    b"[]",
    b'{"command": "AAAA"}',
    b'{"ids": [], "command": "AAAA"}',
    b'{"ids": "ID", "command": "AAAA"}',
    b'{"ids": [null], "command": "AAAA"}',
    b'{"ids": ["ID"]}',
    b'{"ids": ["ID"], "command": 5}',
    b'{"ids": ["ID"], "command": "%%%"}',
    fanout_body(["ID"], b"not a plist"),
    fanout_body(["ID"], b'<?xml version="1.0"?><plist><dict/></plist>'),
]


@pytest.mark.parametrize("body", BAD_ENQUEUE_BODIES)
@pytest_twisted.ensureDeferred
async def test_bad_enqueue_bodies_are_400_and_queue_nothing(tmp_path: Path, body) -> None:
    async with serve(tmp_path) as server:
        (a,) = await enrolled(server, 1)
        body = body.replace(b'"ID"', json.dumps(a.id).encode())
        code, headers, answer = await request(server, "POST", "/v1/enqueue", body)
        assert code == 400
        assert headers.getRawHeaders("content-type") == ["application/json"]
        assert set(json.loads(answer)) == {"command_error"}
        assert (await a.idle()).plist is None


@pytest_twisted.ensureDeferred
async def test_post_push_answers_as_get(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        good, gone = await enrolled(server, 2)
        fake.unregistered.add(gone.push_token.hex())
        ids = [good.id, gone.id, "NOBODY"]
        get = await request(server, "GET", "/v1/push/" + ",".join(ids))
        post = await request(server, "POST", "/v1/push", json.dumps({"ids": ids}).encode())
        assert get[0] == post[0] == 207
        apns_id = re.compile(rb'"push_result": "[0-9a-fA-F-]{36}"')
        assert apns_id.sub(b"ID", post[2]) == apns_id.sub(b"ID", get[2])
        assert len(fake.requests) == 4


@pytest.mark.parametrize(
    "body", [b"", b"{", b"{}", b'{"ids": []}', b'{"ids": "A,B"}', b'{"ids": [1]}', b"[]"]
)
@pytest_twisted.ensureDeferred
async def test_bad_push_bodies_are_400_and_push_nothing(
    tmp_path: Path, ca, fake, body  # noqa: F811
) -> None:
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        code, _, answer = await request(server, "POST", "/v1/push", body)
        assert code == 400
        assert set(json.loads(answer)) == {"push_error"}
        assert fake.requests == []
