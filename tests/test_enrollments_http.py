"""
``/v1/enrollments`` over real loopback HTTP on every storage backend:
NanoMDM's POST query (shapes field by field, filters, limit/offset/cursor)
and our GET list and item, with every bad request a 400 JSON error.
"""

import base64
import json
import re
from pathlib import Path

import pytest
import pytest_twisted

from nanomdm_tw.resources.enrollments import MAX_FILTER_VALUES
from nanomdm_tw.resources.pagination import encode_cursor

from .inspection_client import call, device, storage_spec  # noqa: F401 (fixture)
from .serving import serve

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
UNLOCK_TOKEN = b"\x00unlock\xfftoken"


def udid(n: int) -> str:
    return f"{n:08X}-0000-4000-8000-000000000000"


async def fleet(server):
    """A device with a user channel and an unlock token, and a checked-out device."""
    a = device(server, udid=udid(1))
    await a.authenticate()
    await a.token_update(unlock_token=UNLOCK_TOKEN)
    user = a.user_channel("user", user_short_name="amy")
    await user.enroll()
    b = device(server, udid=udid(2))
    await b.enroll()
    await b.checkout()
    return a, user, b


async def query(server, body: dict | None = None, params: str = ""):
    data = json.dumps(body).encode() if body is not None else None
    return await call(server, "POST", "/v1/enrollments" + params, data)


def ids(document) -> list[str]:
    return [e["id"] for e in document["enrollments"]]


@pytest_twisted.ensureDeferred
async def test_empty_store(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        assert await query(server) == (200, {"enrollments": []})
        assert await query(server, {}, "?limit=1&offset=5") == (200, {"enrollments": []})
        assert await call(server, "GET", "/v1/enrollments") == (200, {"enrollments": []})
        code, document = await call(server, "GET", "/v1/enrollments/NOBODY")
        assert code == 404 and "NOBODY" in document["error"]


@pytest_twisted.ensureDeferred
async def test_nanomdm_items_field_by_field(
    tmp_path: Path, storage_spec
) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, user, b = await fleet(server)
        code, document = await query(server)
        assert code == 200 and list(document) == ["enrollments"]
        assert ids(document) == sorted([a.id, user.id, b.id])
        items = {e["id"]: e for e in document["enrollments"]}
        for item in items.values():
            assert RFC3339.fullmatch(item.pop("last_seen"))
        assert items[a.id] == {
            "id": a.id, "type": "Device", "device": {"serial_number": a.serial_number},
            "enabled": True, "token_update_tally": 1,
        }  # fmt: skip
        assert items[b.id] == {
            "id": b.id, "type": "Device", "device": {"serial_number": b.serial_number},
            "enabled": False, "token_update_tally": 0,  # CheckOut resets it, as NanoMDM
        }  # fmt: skip
        assert items[user.id] == {
            "id": user.id, "type": "User", "device": {"serial_number": a.serial_number},
            "user": {"user_short_name": "amy", "user_long_name": "Simulated User"},
            "enabled": True, "token_update_tally": 1,
        }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_nanomdm_options_add_cert_and_unlock_token(
    tmp_path: Path, storage_spec
) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, _, _ = await fleet(server)
        body = {"filter": {"ids": [a.id]},
                "options": {"include_device_cert": True, "include_unlock_token": True}}  # fmt: skip
        _, document = await query(server, body)
        (item,) = document["enrollments"]
        assert set(item["device"]) == {"serial_number", "device_cert", "unlock_token"}
        assert item["device"]["device_cert"].startswith("-----BEGIN CERTIFICATE-----")
        assert base64.b64decode(item["device"]["unlock_token"]) == UNLOCK_TOKEN
        _, document = await query(server, {"filter": {"ids": [a.id]}, "options": {}})
        assert document["enrollments"][0]["device"] == {"serial_number": a.serial_number}


@pytest_twisted.ensureDeferred
async def test_nanomdm_filters(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, user, b = await fleet(server)
        cases = [
            ({"ids": [b.id, "NOBODY"]}, [b.id]),
            ({"serials": [a.serial_number]}, [a.id, user.id]),  # the device's channels
            ({"types": ["User"]}, [user.id]),
            ({"types": ["Device", "User"]}, sorted([a.id, b.id, user.id])),
            ({"enabled": False}, [b.id]),
            ({"enabled": True, "types": ["Device"]}, [a.id]),
            ({"user_short_names": ["amy"]}, [user.id]),
            ({"ids": [a.id], "types": ["User"]}, []),
            ({"ids": [], "serials": None}, sorted([a.id, b.id, user.id])),
        ]
        for given, expected in cases:
            code, document = await query(server, {"filter": given, "unknown_key": 1})
            assert (code, ids(document)) == (200, expected), given


@pytest_twisted.ensureDeferred
async def test_filters_of_the_most_values_one_query_takes(
    tmp_path: Path, storage_spec  # noqa: F811
) -> None:
    """10,000 values is one statement on every database; more is the client's to split."""
    async with serve(tmp_path, storage_spec) as server:
        a, user, b = await fleet(server)
        many = [f"NOBODY-{n}" for n in range(MAX_FILTER_VALUES - 2)] + [a.id, b.id]
        code, document = await query(server, {"filter": {"ids": many}})
        assert (code, ids(document)) == (200, sorted([a.id, b.id]))
        code, document = await query(
            server, {"filter": {"ids": many, "types": ["Device"]}}
        )
        assert code == 400 and "at most 10000" in document["error"]
        code, document = await call(
            server, "GET", "/v1/enrollments?" + "&".join(f"id=x{n}" for n in range(10_001))
        )
        assert code == 400 and "split it" in document["error"]


@pytest_twisted.ensureDeferred
async def test_pages(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        devices = [device(server, udid=udid(n)) for n in range(1, 7)]
        for d in devices:
            await d.enroll()
        every = [d.id for d in devices]
        for limit in (1, 2, 3, 5, 6, 7):  # exact multiples of the limit, and not
            seen, params = [], f"?limit={limit}"
            while True:
                code, document = await query(server, None, params)
                assert code == 200 and len(document["enrollments"]) <= limit
                seen += ids(document)
                if "next_cursor" not in document:
                    break
                assert len(document["enrollments"]) == limit
                params = f"?limit={limit}&cursor={document['next_cursor']}"
            assert seen == every, limit
        # Offset pages: no cursor, ever.
        assert await query(server, None, "?limit=2&offset=0") == await query(
            server, None, "?limit=2&offset=0"
        )
        _, document = await query(server, None, "?limit=2&offset=3")
        assert ids(document) == every[3:5] and "next_cursor" not in document
        _, document = await query(server, None, "?offset=6")
        assert document == {"enrollments": []}
        # limit below 1 is NanoMDM's default of 100
        _, document = await query(server, None, "?limit=0")
        assert ids(document) == every and "next_cursor" not in document


@pytest_twisted.ensureDeferred
async def test_enrollments_leaving_between_pages(
    tmp_path: Path, storage_spec
) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        devices = [device(server, udid=udid(n)) for n in range(1, 6)]
        for d in devices:
            await d.enroll()
        body = {"filter": {"enabled": True}}
        _, first = await query(server, body, "?limit=2")
        assert ids(first) == [devices[0].id, devices[1].id]
        await devices[1].checkout()  # the cursor's own row leaves
        await devices[2].checkout()  # and the next page's first
        _, second = await query(server, body, f"?limit=2&cursor={first['next_cursor']}")
        assert ids(second) == [devices[3].id, devices[4].id]
        assert "next_cursor" not in second


BAD_QUERIES = [
    ("?offset=1&cursor=" + encode_cursor("e", "A"), None, "both cursor and offset set"),
    ("?limit=1001", None, "limit"),
    ("?limit=ten", None, "limit"),
    ("?offset=-1", None, "offset"),
    ("?offset=x", None, "offset"),
    ("?cursor=not-ours", None, "invalid cursor"),
    ("?cursor=" + encode_cursor("q", 1, 2), None, "invalid cursor"),
    ("", b"{", "invalid JSON"),
    ("", b"[]", "JSON object"),
    ("", b'{"filter": {"ids": "x"}}', "filter.ids"),
    ("", b'{"filter": {"enabled": "yes"}}', "filter.enabled"),
    ("", b'{"options": {"include_device_cert": 1}}', "include_device_cert"),
]


@pytest.mark.parametrize("params, body, message", BAD_QUERIES)
@pytest_twisted.ensureDeferred
async def test_bad_nanomdm_queries_are_400(tmp_path: Path, params, body, message) -> None:
    async with serve(tmp_path) as server:
        await device(server).enroll()
        code, document = await call(server, "POST", "/v1/enrollments" + params, body)
        assert code == 400 and list(document) == ["error"]
        assert message in document["error"]


@pytest_twisted.ensureDeferred
async def test_our_list(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, user, b = await fleet(server)
        code, document = await call(server, "GET", "/v1/enrollments?limit=1000")
        assert code == 200 and ids(document) == sorted([a.id, user.id, b.id])
        items = {e["id"]: e for e in document["enrollments"]}
        assert list(items[a.id])[-4:] == ["topic", "device_id", "created", "updated"]
        assert items[a.id]["device_id"] == a.id and "user_id" not in items[a.id]
        assert items[user.id]["device_id"] == a.id
        assert items[user.id]["user_id"] == user.id  # NanoMDM's users.id
        for item in items.values():
            assert item["topic"] == a.topic
            assert RFC3339.fullmatch(item["created"]) and RFC3339.fullmatch(item["updated"])
        cases = [
            (f"id={a.id}&id={b.id}", [a.id, b.id]),
            ("type=User", [user.id]),
            ("type=User&type=Device&enabled=false", [b.id]),
            ("enabled=true", sorted([a.id, user.id])),
            (
                f"serial_number={b.serial_number}&serial_number={a.serial_number}&type=Device",
                [a.id, b.id],
            ),
            ("user_short_name=amy", [user.id]),
            (f"topic={a.topic}&type=Device", [a.id, b.id]),
            ("topic=other", []),
            (f"device_id={a.id}", sorted([a.id, user.id])),
            (f"user_id={user.id}", [user.id]),
        ]
        for params, expected in cases:
            code, document = await call(server, "GET", "/v1/enrollments?" + params)
            assert (code, ids(document)) == (200, expected), params
        _, document = await call(
            server,
            "GET",
            f"/v1/enrollments?id={a.id}&include_device_cert=1&include_unlock_token=true",
        )
        assert set(document["enrollments"][0]["device"]) == {
            "serial_number", "device_cert", "unlock_token"
        }  # fmt: skip
        seen, params = [], "limit=1"
        while True:
            _, document = await call(server, "GET", "/v1/enrollments?" + params)
            seen += ids(document)
            if "next_cursor" not in document:
                break
            params = "limit=1&cursor=" + document["next_cursor"]
        assert seen == sorted([a.id, user.id, b.id])


@pytest.mark.parametrize(
    "params, message",
    [("offset=0", "offset is not supported"), ("limit=0", "limit"), ("limit=1001", "limit"),
     ("enabled=yes", "enabled"), ("serial=X", "unknown query parameter"),
     ("topic=a&topic=b", "more than once"), ("include_device_cert=yes", "include_device_cert"),
     ("cursor=%00", "NUL character")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_bad_list_parameters_are_400(tmp_path: Path, params, message) -> None:
    async with serve(tmp_path) as server:
        code, document = await call(server, "GET", "/v1/enrollments?" + params)
        assert code == 400 and message in document["error"]


@pytest_twisted.ensureDeferred
async def test_one_enrollment(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        a, user, b = await fleet(server)
        second = a.user_channel("user", user_short_name="bob")
        await second.enroll()
        code, item = await call(server, "GET", f"/v1/enrollments/{a.id}")
        assert code == 200
        channels = item.pop("user_channels")
        _, listed = await call(server, "GET", f"/v1/enrollments?id={a.id}")
        assert item == listed["enrollments"][0]
        assert [c["id"] for c in channels] == sorted([user.id, second.id])
        _, listed = await call(server, "GET", f"/v1/enrollments?id={user.id}")
        assert channels[[c["id"] for c in channels].index(user.id)] == listed["enrollments"][0]
        code, item = await call(server, "GET", f"/v1/enrollments/{user.id}")
        assert code == 200 and item["id"] == user.id and item["user_channels"] == []
        code, item = await call(
            server, "GET", f"/v1/enrollments/{b.id}?include_unlock_token=1"
        )
        assert code == 200 and item["user_channels"] == [] and item["enabled"] is False
        code, document = await call(server, "GET", "/v1/enrollments/NOBODY")
        assert code == 404 and list(document) == ["error"]
        code, document = await call(server, "GET", f"/v1/enrollments/{a.id}?limit=1")
        assert code == 400


@pytest.mark.parametrize(
    "method, path, allowed",
    [("PUT", "/v1/enrollments", "GET, HEAD, POST"), ("DELETE", "/v1/enrollments/X", "GET, HEAD"),
     ("POST", "/v1/enrollments/X", "GET, HEAD")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_other_methods_are_405(tmp_path: Path, method, path, allowed) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.request(method, server.url + path, auth=server.api_auth())
        assert answer.code == 405
        assert answer.headers.getRawHeaders("allow") == [allowed]
