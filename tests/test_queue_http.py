"""
``/v1/queue`` and ``/v1/commands`` over real loopback HTTP on every storage
backend: NanoMDM's queue listing and clearing, single-command removal, a
command's deliveries, pages and every bad request a 400 JSON error.
"""

import base64
import plistlib
import re
from pathlib import Path

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from nanomdm_tw.mdm.messages import decode_command
from nanomdm_tw.resources.api import build_api
from nanomdm_tw.resources.pagination import encode_cursor
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.tools.sim import enqueue, make_command

from .inspection_client import call, device, storage_spec  # noqa: F401 (fixture)
from .logevents import request_lines
from .serving import serve

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


async def enrolled(server, count: int = 1):
    devices = [
        device(server, udid=f"{n:08X}-0000-4000-8000-000000000000") for n in range(count)
    ]
    for d in devices:
        await d.enroll()
    return devices


async def queue_commands(server, ids: list[str], *uuids: str) -> dict[str, bytes]:
    commands = {}
    for command_uuid in uuids:
        commands[command_uuid] = make_command("ProfileList", command_uuid)
        answer = await enqueue(
            server.http, server.url, server.api_key, ids, commands[command_uuid]
        )
        assert answer.code == 200
    return commands


def uuids(document, key: str = "commands", field: str = "command_uuid") -> list[str]:
    return [c[field] for c in document[key]]


@pytest_twisted.ensureDeferred
async def test_queue_field_by_field(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        (a,) = await enrolled(server)
        raw = await queue_commands(server, [a.id], "C1", "C2", "C3")
        code, document = await call(server, "GET", f"/v1/queue/{a.id}")
        assert code == 200 and list(document) == ["commands"]
        for item in document["commands"]:
            assert RFC3339.fullmatch(item.pop("enqueued_at"))
        assert document["commands"] == [
            {"command_uuid": u, "request_type": "ProfileList",
             "command": base64.b64encode(raw[u]).decode(), "state": "pending",
             "priority": 0, "not_now_count": 0}
            for u in ("C1", "C2", "C3")
        ]  # fmt: skip
        assert (await a.idle()).plist["CommandUUID"] == "C1"
        assert (await a.report("NotNow", "C1")).plist["CommandUUID"] == "C2"
        # NotNow is skipped only right after it was reported (as NanoMDM)
        assert (await a.report("Acknowledged", "C2")).plist["CommandUUID"] == "C1"
        _, document = await call(server, "GET", f"/v1/queue/{a.id}")
        assert uuids(document) == ["C1", "C3"]
        not_now = document["commands"][0]
        assert (not_now["state"], not_now["status"], not_now["not_now_count"]) == (
            "NotNow", "NotNow", 1
        )  # fmt: skip
        assert RFC3339.fullmatch(not_now["reported_at"])
        _, history = await call(server, "GET", f"/v1/queue/{a.id}?all=1")
        assert {c["command_uuid"]: c["state"] for c in history["commands"]} == {
            "C1": "NotNow", "C2": "answered", "C3": "pending"
        }  # fmt: skip
        assert [c.get("status") for c in history["commands"]] == [
            "NotNow",
            "Acknowledged",
            None,
        ]


@pytest_twisted.ensureDeferred
async def test_queue_unknown_and_empty(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        assert await call(server, "GET", "/v1/queue/NOBODY") == (200, {"commands": []})
        assert await call(server, "GET", "/v1/queue/NOBODY?all=1&limit=1") == (
            200, {"commands": []}
        )  # fmt: skip
        assert await call(server, "GET", "/v1/queue/") == (
            400, {"error": "missing enrollment id"}
        )  # fmt: skip
        assert (await call(server, "GET", "/v1/queue"))[0] == 400


@pytest_twisted.ensureDeferred
async def test_queue_pages_in_delivery_order(
    tmp_path: Path, storage_spec
) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        (a,) = await enrolled(server)
        await queue_commands(server, [a.id], "P0-1", "P0-2", "P0-3")
        for command_uuid, priority in (("P5-1", 5), ("P1-1", 1), ("P5-2", 5)):
            command = decode_command(make_command("ProfileList", command_uuid))
            assert (
                await server.storage.enqueue_command([a.id], command, priority=priority) == {}
            )
        order = ["P5-1", "P5-2", "P1-1", "P0-1", "P0-2", "P0-3"]
        _, document = await call(server, "GET", f"/v1/queue/{a.id}")
        assert uuids(document) == order
        assert [c["priority"] for c in document["commands"]] == [5, 5, 1, 0, 0, 0]
        for limit in (1, 2, 3, 4, 6):
            seen, params = [], f"?limit={limit}"
            while True:
                code, document = await call(server, "GET", f"/v1/queue/{a.id}{params}")
                assert code == 200
                seen += uuids(document)
                if "next_cursor" not in document:
                    break
                assert len(document["commands"]) == limit
                params = f"?limit={limit}&cursor={document['next_cursor']}"
            assert seen == order, limit
        _, document = await call(server, "GET", f"/v1/queue/{a.id}?limit=2&offset=3")
        assert uuids(document) == ["P0-1", "P0-2"] and "next_cursor" not in document
        # Commands leaving between pages neither repeat nor skip the rest.
        _, first = await call(server, "GET", f"/v1/queue/{a.id}?limit=2")
        for gone in ("P5-2", "P1-1"):
            assert await call(server, "DELETE", f"/v1/queue/{a.id}?command_uuid={gone}") == (
                204,
                None,
            )
        _, second = await call(
            server, "GET", f"/v1/queue/{a.id}?limit=2&cursor={first['next_cursor']}"
        )
        assert uuids(first) + uuids(second) == ["P5-1", "P5-2", "P0-1", "P0-2"]


@pytest.mark.parametrize(
    "params, message",
    [("?limit=1001", "limit"), ("?limit=x", "limit"), ("?offset=-2", "offset"),
     ("?offset=1&cursor=" + encode_cursor("q", 0, 1), "both cursor and offset set"),
     ("?cursor=" + encode_cursor("e", "A"), "invalid cursor"), ("?cursor=zzz", "invalid cursor"),
     ("?all=maybe", "all")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_bad_queue_listings_are_400(tmp_path: Path, params, message) -> None:
    async with serve(tmp_path) as server:
        code, document = await call(server, "GET", "/v1/queue/ID" + params)
        assert code == 400 and message in document["error"]


@pytest_twisted.ensureDeferred
async def test_clear_queues(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, b, c = await enrolled(server, 3)
        await queue_commands(server, [a.id, b.id, c.id], "C1", "C2")
        assert await call(server, "DELETE", f"/v1/queue/{a.id}, {b.id},,NOBODY") == (204, None)
        for d in (a, b):
            assert await call(server, "GET", f"/v1/queue/{d.id}") == (200, {"commands": []})
            assert (await d.idle()).plist is None
            _, history = await call(server, "GET", f"/v1/queue/{d.id}?all=1")
            assert [x["state"] for x in history["commands"]] in (["cleared"] * 2, [])
        _, document = await call(server, "GET", f"/v1/queue/{c.id}")
        assert uuids(document) == ["C1", "C2"]  # untouched
        assert await call(server, "DELETE", "/v1/queue/") == (
            400, {"error": "missing enrollment id(s)"}
        )  # fmt: skip
        assert (await call(server, "DELETE", "/v1/queue/,,"))[0] == 400
        _, document = await call(server, "GET", f"/v1/queue/{c.id}")
        assert uuids(document) == ["C1", "C2"]


@pytest_twisted.ensureDeferred
async def test_remove_one_command(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, b = await enrolled(server, 2)
        await queue_commands(server, [a.id, b.id], "C1", "C2", "C3")
        assert (await a.idle()).plist["CommandUUID"] == "C1"
        await a.report("Acknowledged", "C1")
        assert await call(server, "DELETE", f"/v1/queue/{a.id}?command_uuid=C2") == (204, None)
        for missing in ("C2", "C1", "NOPE"):  # removed, answered, never queued
            code, document = await call(
                server, "DELETE", f"/v1/queue/{a.id}?command_uuid={missing}"
            )
            assert code == 404 and missing in document["error"]
        code, _ = await call(server, "DELETE", "/v1/queue/NOBODY?command_uuid=C3")
        assert code == 404
        assert (await call(server, "DELETE", f"/v1/queue/{a.id}?command_uuid="))[0] == 400
        assert (
            await call(server, "DELETE", f"/v1/queue/{a.id}?command_uuid=C3&command_uuid=C2")
        )[0] == 400
        # A misspelt parameter is refused, not taken for a whole-queue clear.
        code, document = await call(server, "DELETE", f"/v1/queue/{a.id}?command_uid=C3")
        assert code == 400 and "command_uid" in document["error"]
        _, document = await call(server, "GET", f"/v1/queue/{a.id}")
        assert uuids(document) == ["C3"]
        _, document = await call(server, "GET", f"/v1/queue/{b.id}")
        assert uuids(document) == ["C1", "C2", "C3"]
        assert (await a.report("Acknowledged", "C1")).plist["CommandUUID"] == "C3"


class FailingClears(MemoryStorage):
    """Real in-memory storage whose clear fails for IDs starting FAIL (a database error)."""

    async def clear_queue_by_id(self, enrollment_id: str) -> None:
        if enrollment_id.startswith("FAIL"):
            raise RuntimeError(f"database gone for {enrollment_id}")
        await super().clear_queue_by_id(enrollment_id)


@pytest_twisted.ensureDeferred
async def test_clear_failures_are_207_or_500() -> None:
    storage = FailingClears()
    await storage.open()
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(build_api("key", storage, None))
    )
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    url = f"http://127.0.0.1:{port.getHost().port}/queue/"
    try:
        answers = {}
        for ids in ("OK,FAIL-1", "FAIL-1,FAIL-2", "OK"):
            answer = await http.delete(url + ids, auth=("nanomdm", "key"))
            answers[ids] = (answer.code, await answer.text())
        assert answers == {
            "OK,FAIL-1": (207, '{\n\t"status": {\n\t\t"FAIL-1": "database gone for FAIL-1"\n\t}\n}\n'),
            "FAIL-1,FAIL-2": (500, '{\n\t"status": {\n\t\t"FAIL-1": "database gone for FAIL-1",'
                                   '\n\t\t"FAIL-2": "database gone for FAIL-2"\n\t}\n}\n'),
            "OK": (204, ""),
        }  # fmt: skip
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_command_deliveries(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, b, c = await enrolled(server, 3)
        raw = (await queue_commands(server, [c.id, a.id, b.id], "CMD"))["CMD"]
        await a.idle()
        error = a.prepare_report(
            "Error", "CMD",
            ErrorChain=[{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
                         "LocalizedDescription": "Nope", "USEnglishDescription": "Nope"}],
        )  # fmt: skip
        await a.send(error)
        await b.idle()
        await b.report("NotNow", "CMD")
        code, document = await call(server, "GET", "/v1/commands/CMD")
        assert code == 200
        assert RFC3339.fullmatch(document.pop("created"))
        deliveries = document.pop("deliveries")
        assert document == {
            "command_uuid": "CMD", "request_type": "ProfileList",
            "command": base64.b64encode(raw).decode(),
        }  # fmt: skip
        assert [d["id"] for d in deliveries] == [a.id, b.id, c.id]
        for d in deliveries:
            assert RFC3339.fullmatch(d.pop("enqueued_at"))
            d.pop("reported_at", None)
        assert deliveries[0] == {
            "id": a.id, "state": "answered", "priority": 0, "not_now_count": 0,
            "status": "Error",
            "error_chain": [{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
                             "LocalizedDescription": "Nope", "USEnglishDescription": "Nope"}],
            "result": base64.b64encode(error.body).decode(),
        }  # fmt: skip
        assert plistlib.loads(base64.b64decode(deliveries[0]["result"]))["Status"] == "Error"
        assert {k: deliveries[1][k] for k in ("state", "status", "not_now_count")} == {
            "state": "NotNow", "status": "NotNow", "not_now_count": 1
        }  # fmt: skip
        assert deliveries[2] == {
            "id": c.id,
            "state": "pending",
            "priority": 0,
            "not_now_count": 0,
        }
        seen, params = [], "?limit=1"
        while True:
            _, page = await call(server, "GET", "/v1/commands/CMD" + params)
            seen += [d["id"] for d in page["deliveries"]]
            if "next_cursor" not in page:
                break
            params = "?limit=1&cursor=" + page["next_cursor"]
        assert seen == [a.id, b.id, c.id]
        _, page = await call(server, "GET", "/v1/commands/CMD?limit=3")
        assert len(page["deliveries"]) == 3 and "next_cursor" not in page
        code, document = await call(server, "GET", "/v1/commands/NOPE")
        assert code == 404 and list(document) == ["error"]


@pytest.mark.parametrize(
    "path, message",
    [("/v1/commands/", "missing command UUID"), ("/v1/commands/C?limit=0", "limit"),
     ("/v1/commands/C?offset=1", "offset is not supported"), ("/v1/commands/C?all=1", "unknown"),
     ("/v1/commands/C?cursor=" + encode_cursor("q", 1, 1), "invalid cursor")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_bad_command_requests_are_400(tmp_path: Path, path, message) -> None:
    async with serve(tmp_path) as server:
        code, document = await call(server, "GET", path)
        assert code == 400 and message in document["error"]


@pytest_twisted.ensureDeferred
async def test_request_log_names_the_enrollment(tmp_path: Path, log_events) -> None:
    async with serve(tmp_path) as server:
        await call(server, "GET", "/v1/queue/SOME-ID")
        await call(server, "DELETE", "/v1/queue/A,B")
        await call(server, "GET", "/v1/enrollments/OTHER-ID")
    lines = request_lines(log_events)
    assert any(
        re.search(r"GET /v1/queue/SOME-ID 200 listed 0 queued enrollment_id=SOME-ID ", l)
        for l in lines
    )
    assert any(
        re.search(r"DELETE /v1/queue/A,B 204 cleared 2 queues enrollment_id=A\(\+1\) ", l)
        for l in lines
    )
    assert any(
        re.search(
            r"GET /v1/enrollments/OTHER-ID 404 no enrollment OTHER-ID enrollment_id=OTHER-ID ",
            l,
        )
        for l in lines
    )


@pytest.mark.parametrize(
    "method, path, allowed",
    [("PUT", "/v1/queue/X", "DELETE, GET, HEAD"), ("POST", "/v1/commands/X", "GET, HEAD")],
)
@pytest_twisted.ensureDeferred
async def test_other_methods_are_405(tmp_path: Path, method, path, allowed) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.request(method, server.url + path, auth=server.api_auth())
        assert answer.code == 405
        assert answer.headers.getRawHeaders("allow") == [allowed]
