"""
``GET /v1/catalogue`` and the ``request_type`` form of ``POST /v1/enqueue``
over real loopback HTTP: what a console's forms offer is what the server
builds, a simulated device receives it, and every bad form is a 400 in JSON.
"""

import base64
import json
import plistlib
from pathlib import Path

import pytest
import pytest_twisted

from nanomdm_tw.mdm.catalogue import CATALOGUE, DEFAULT_DEVICE_QUERIES, build_command

from .fake_apns import ca, fake  # noqa: F401 (fixtures)
from .serving import serve
from .test_fanout_http import fanout_body, request
from .test_push_api import enrolled, push_ready_server, upload_push_cert


def form(ids: list[str], request_type: str, arguments: dict | None = None, **more) -> bytes:
    document = {"ids": ids, "request_type": request_type, **more}
    if arguments is not None:
        document["arguments"] = arguments
    return json.dumps(document).encode()


@pytest_twisted.ensureDeferred
async def test_catalogue_lists_every_command_in_order(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        code, headers, body = await request(server, "GET", "/v1/catalogue")
        assert code == 200
        assert headers.getRawHeaders("content-type") == ["application/json"]
        assert body.startswith(b'{\n\t"commands": [') and body.endswith(b"}\n")
        commands = json.loads(body)["commands"]
        assert [c["request_type"] for c in commands] == list(CATALOGUE)
        by_type = {c["request_type"]: c for c in commands}
        assert by_type["DeviceLock"] == {
            "request_type": "DeviceLock",
            "summary": "lock the device",
            "read_only": False,
            "destructive": False,
            "arguments": [
                {"key": "Message", "kind": "string", "help": "shown on the lock screen",
                 "required": False, "default": None},
                {"key": "PhoneNumber", "kind": "string",
                 "help": "phone number shown on the lock screen", "required": False,
                 "default": None},
                {"key": "PIN", "kind": "string",
                 "help": "macOS: six-digit Find My PIN to unlock", "required": False,
                 "default": None},
            ],
        }  # fmt: skip
        (queries,) = by_type["DeviceInformation"]["arguments"]
        assert queries["default"] == list(DEFAULT_DEVICE_QUERIES)
        assert set(DEFAULT_DEVICE_QUERIES) | {"BatteryLevel", "WiFiMAC", "IMEI"} <= set(
            queries["choices"]
        )
        assert by_type["DeviceInformation"]["read_only"] is True
        assert by_type["EraseDevice"]["destructive"] is True
        assert {c["request_type"] for c in commands if c["destructive"]} == {
            "EraseDevice", "RemoveApplication",
        }  # fmt: skip
        kinds = {a["kind"] for c in commands for a in c["arguments"]}
        assert kinds == {"string", "integer", "boolean", "strings", "data"}


@pytest_twisted.ensureDeferred
async def test_catalogue_needs_the_key(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.get(server.url + "/v1/catalogue")
        assert answer.code == 401


@pytest_twisted.ensureDeferred
async def test_device_information_form_reaches_the_device(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        a, b = await enrolled(server, 2)
        code, _, body = await request(
            server, "POST", "/v1/enqueue",
            form([a.id, b.id], "DeviceInformation", {"Queries": ["DeviceName", "IMEI"]},
                 no_push=True),
        )  # fmt: skip
        assert code == 200
        answer = json.loads(body)
        assert answer["request_type"] == "DeviceInformation"
        assert answer["no_push"] is True
        for d in (a, b):
            command = (await d.idle()).plist
            assert command["CommandUUID"] == answer["command_uuid"]
            assert command["Command"] == {
                "RequestType": "DeviceInformation", "Queries": ["DeviceName", "IMEI"],
            }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_form_answers_as_the_base64_form(tmp_path: Path) -> None:
    """The same status, per-ID errors and fields; only the command UUID differs."""
    async with serve(tmp_path) as server:
        (a,) = await enrolled(server, 1)
        ids = [a.id, "UNKNOWN"]
        raw = build_command("DeviceLock", {"Message": "Lost"}, command_uuid="C")
        by_plist = await request(server, "POST", "/v1/enqueue?nopush=1", fanout_body(ids, raw))
        by_form = await request(
            server, "POST", "/v1/enqueue?nopush=1", form(ids, "DeviceLock", {"Message": "Lost"})
        )
        assert by_plist[0] == by_form[0] == 207
        formed = json.loads(by_form[2])
        assert json.loads(by_plist[2]) == dict(formed, command_uuid="C")
        assert [c["Command"] for c in await a.run_queue()] == [
            {"RequestType": "DeviceLock", "Message": "Lost"}
        ] * 2


@pytest_twisted.ensureDeferred
async def test_form_defaults_and_data_arguments(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        (a,) = await enrolled(server, 1)
        profile = plistlib.dumps({"PayloadType": "Configuration"})
        for request_type, arguments in (
            ("DeviceInformation", None),
            ("InstallProfile", {"Payload": base64.b64encode(profile).decode()}),
            ("InstalledApplicationList", {"ManagedAppsOnly": True, "Identifiers": None}),
        ):
            code, _, _ = await request(
                server, "POST", "/v1/enqueue", form([a.id], request_type, arguments, no_push=True)
            )
            assert code == 200
        commands = [c["Command"] for c in await a.run_queue()]
        assert commands == [
            {"RequestType": "DeviceInformation", "Queries": list(DEFAULT_DEVICE_QUERIES)},
            {"RequestType": "InstallProfile", "Payload": profile},
            {"RequestType": "InstalledApplicationList", "ManagedAppsOnly": True},
        ]


@pytest_twisted.ensureDeferred
async def test_form_pushes_unless_told_not_to(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    async with await push_ready_server(tmp_path, ca, fake) as server:
        await upload_push_cert(server, ca)
        (a,) = await enrolled(server, 1)
        code, _, body = await request(server, "POST", "/v1/enqueue", form([a.id], "ProfileList"))
        assert code == 200
        assert set(json.loads(body)["status"][a.id]) == {"push_result"}
        assert [r.token_hex for r in fake.requests] == [a.push_token.hex()]
        code, _, body = await request(
            server, "POST", "/v1/enqueue", form([a.id], "ProfileList", no_push=True)
        )
        assert (code, json.loads(body)["no_push"]) == (200, True)
        assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "document, message",
    [
        ({"request_type": "Frobnicate"}, "must be a command of GET /v1/catalogue"),
        ({"request_type": None}, "must be a command of GET /v1/catalogue"),
        ({"request_type": ["DeviceLock"]}, "must be a command of GET /v1/catalogue"),
        ({"request_type": "DeviceLock", "command": "PHBsaXN0Lz4="}, "not both"),
        ({"request_type": "DeviceLock", "arguments": []}, '"arguments" must be a JSON object'),
        ({"request_type": "DeviceLock", "arguments": "Message=x"}, "must be a JSON object"),
        ({"request_type": "DeviceLock", "arguments": {"Wipe": True}}, "DeviceLock takes no Wipe"),
        ({"request_type": "DeviceLock", "arguments": {"PIN": "12"}}, "PIN: must be six digits"),
        ({"request_type": "DeviceLock", "arguments": {"Message": 5}}, "Message: expected text"),
        ({"request_type": "DeviceLock", "arguments": {"Message": "a\u0001b"}}, "plist"),
        ({"request_type": "DeviceLock", "arguments": {"Message": "\ud800"}}, "plist"),
        ({"request_type": "DeviceInformation", "arguments": {"Queries": {"a": 1}}},
         "Queries: expected a list of strings"),
        ({"request_type": "DeviceInformation", "arguments": {"Queries": [1]}},
         "Queries: expected a list of strings"),
        ({"request_type": "InstallApplication", "arguments": {"iTunesStoreID": True}},
         "iTunesStoreID: expected a whole number"),
        ({"request_type": "InstallApplication", "arguments": {"iTunesStoreID": 2**70}},
         "plist"),
        ({"request_type": "InstallApplication"}, "InstallApplication: missing iTunesStoreID"),
        ({"request_type": "RestartDevice", "arguments": {"NotifyUser": "maybe"}},
         "NotifyUser: expected true or false"),
        ({"request_type": "InstallProfile", "arguments": {"Payload": "not base64!"}},
         "Payload must be the file's contents in base64"),
        ({"request_type": "InstallProfile", "arguments": {"Payload": 5}}, "in base64"),
        ({"request_type": "InstallProfile", "arguments": {"Payload": ""}},
         "Payload: expected the non-empty contents of a file"),
        ({"request_type": "ProfileList", "no_push": "yes"}, '"no_push" must be true or false'),
        ({"command": 5}, '"command" must be the command plist in base64'),
    ],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_bad_forms_are_400_and_queue_nothing(tmp_path: Path, document, message) -> None:
    async with serve(tmp_path) as server:
        (a,) = await enrolled(server, 1)
        body = json.dumps({"ids": [a.id], **document}).encode()
        code, headers, answer = await request(server, "POST", "/v1/enqueue", body)
        assert code == 400
        assert headers.getRawHeaders("content-type") == ["application/json"]
        (error,) = json.loads(answer).values()
        assert list(json.loads(answer)) == ["command_error"]
        assert message in error
        assert await a.run_queue() == []
