"""The /v1 API over real loopback HTTP: Basic auth and enqueue's NanoMDM answers."""

import json
import plistlib
from pathlib import Path

import pytest
import pytest_twisted

from nanomdm_tw.server import build_root
from nanomdm_tw.settings import Settings
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.tools.sim import SimulatedDevice, make_command, make_identity

from .serving import serve


def device(server) -> SimulatedDevice:
    return SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)


async def put(server, path: str, body: bytes, auth=None):
    answer = await server.http.put(
        server.url + path, data=body, auth=auth or server.api_auth()
    )
    return answer.code, answer.headers, await answer.content()


@pytest.mark.parametrize(
    "auth", [None, ("nanomdm", "wrong"), ("someone", "test-api-key"), ("nanomdm", "")]
)
@pytest_twisted.ensureDeferred
async def test_api_needs_the_key(tmp_path: Path, auth) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.put(
            server.url + "/v1/enqueue/x", data=make_command("ProfileList"), auth=auth
        )
        assert answer.code == 401
        assert answer.headers.getRawHeaders("www-authenticate") == ['Basic realm="nanomdm"']


def test_api_absent_without_key() -> None:
    root = build_root(Settings(disable_mdm=True), MemoryStorage(), None, api_key="")
    assert b"v1" not in root.children
    assert b"v1" in build_root(Settings(disable_mdm=True), MemoryStorage(), None, "k").children


@pytest_twisted.ensureDeferred
async def test_enqueue_to_many_with_one_unknown(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        a, b = device(server), device(server)
        await a.enroll()
        await b.enroll()
        command = make_command("ProfileList", "CMD-1")
        code, headers, body = await put(
            server, f"/v1/enqueue/{a.id},{b.id},UNKNOWN-ID?nopush=1", command
        )
        assert code == 207
        assert headers.getRawHeaders("content-type") == ["application/json"]
        assert body.decode() == (
            "{\n"
            '\t"status": {\n'
            '\t\t"UNKNOWN-ID": {\n'
            '\t\t\t"command_error": "unknown enrollment"\n'
            "\t\t}\n"
            "\t},\n"
            '\t"no_push": true,\n'
            '\t"command_uuid": "CMD-1",\n'
            '\t"request_type": "ProfileList"\n'
            "}\n"
        )
        for d in (a, b):
            answer = await d.idle()
            assert answer.body == command  # byte for byte what the API received
            assert (await d.report("Acknowledged", "CMD-1")).plist is None


@pytest_twisted.ensureDeferred
async def test_enqueue_all_unknown_is_500(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        code, _, body = await put(server, "/v1/enqueue/X,Y", make_command("ProfileList"))
        assert code == 500
        assert json.loads(body)["status"] == {
            "X": {"command_error": "unknown enrollment"},
            "Y": {"command_error": "unknown enrollment"},
        }


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a plist",
        plistlib.dumps({"Command": {"RequestType": "ProfileList"}}),
        plistlib.dumps({"CommandUUID": "C", "Command": {}}),
        plistlib.dumps({"CommandUUID": "C", "Command": "ProfileList"}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_command_is_400_and_stores_nothing(tmp_path: Path, body: bytes) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        await d.enroll()
        code, _, answer = await put(server, f"/v1/enqueue/{d.id}", body)
        assert code == 400
        assert b"command_error" in answer
        assert (await d.idle()).plist is None


@pytest_twisted.ensureDeferred
async def test_enqueue_without_ids_is_400(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        code, _, _ = await put(server, "/v1/enqueue/", make_command("ProfileList"))
        assert code == 400


@pytest_twisted.ensureDeferred
async def test_device_path_never_401(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.put(
            server.url + "/mdm", data=b"junk", auth=("nanomdm", "wrong")
        )
        assert answer.code == 400


@pytest_twisted.ensureDeferred
async def test_enqueue_to_thousands_of_ids_in_one_url(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        ids = [f"{n:08X}-0000-0000-0000-000000000000" for n in range(5000)]
        code, _, body = await put(
            server, "/v1/enqueue/" + ",".join(ids) + "?nopush=1", make_command("ProfileList")
        )
        assert code == 500  # all unknown: but every ID was read from the 185 KB URL
        assert len(json.loads(body)["status"]) == 5000
