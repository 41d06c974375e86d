"""
``GET /v1/enrollment-profile`` over real loopback HTTP: a NanoMDM-shaped
``.mobileconfig`` filled with this server's URLs and the topic, fresh
PayloadUUIDs each time, and a 400 in JSON for anything that is not an
http(s) origin or an MDM topic.
"""

import base64
import json
import plistlib
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from .serving import serve
from .test_admin_http import raw_request

TOPIC = "com.apple.mgmt.External.e3b8ceac-1f18-2c8e-8a63-dd17d99435d9"


async def get(server, query: str):
    answer = await server.http.get(
        server.url + "/v1/enrollment-profile" + query, auth=server.api_auth()
    )
    return answer.code, answer.headers, await answer.content()


async def profile(server, query: str) -> dict:
    code, headers, body = await get(server, query)
    assert code == 200, body
    assert headers.getRawHeaders("content-type") == ["application/x-apple-aspen-config"]
    assert headers.getRawHeaders("content-disposition") == [
        'attachment; filename="enroll.mobileconfig"'
    ]
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')
    return plistlib.loads(body)


@pytest_twisted.ensureDeferred
async def test_profile_for_this_server(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        document = await profile(server, f"?topic={TOPIC}")
        scep, mdm = document["PayloadContent"]
        assert scep["PayloadType"] == "com.apple.security.scep"
        assert scep["PayloadContent"] == {
            "Key Type": "RSA", "Challenge": "SCEP-CHALLENGE-HERE", "Key Usage": 5,
            "Keysize": 2048, "URL": server.url + "/scep",
        }  # fmt: skip
        assert {key: mdm[key] for key in mdm if not key.startswith("Payload")} == {
            "AccessRights": 8191,
            "CheckOutWhenRemoved": True,
            "IdentityCertificateUUID": scep["PayloadUUID"],
            "ServerCapabilities": ["com.apple.mdm.per-user-connections"],
            "ServerURL": server.url + "/mdm",  # the Host this request came to
            "SignMessage": True,
            "Topic": TOPIC,
        }
        assert mdm["PayloadType"] == "com.apple.mdm"
        assert (document["PayloadType"], document["PayloadScope"]) == ("Configuration", "System")
        again = await profile(server, f"?topic={TOPIC}")
        uuids = [p["PayloadUUID"] for p in (document, scep, mdm)]
        fresh = [p["PayloadUUID"] for p in (again, *again["PayloadContent"])]
        assert len(set(uuids + fresh)) == 6
        assert all(u == u.upper() and len(u) == 36 for u in uuids)


@pytest_twisted.ensureDeferred
async def test_given_url_and_separate_checkin(tmp_path: Path) -> None:
    async with serve(tmp_path, checkin=True) as server:
        url = quote("https://mdm.example.org:8443/nanomdm/", safe="")
        document = await profile(server, f"?topic={TOPIC}&url={url}")
        scep, mdm = document["PayloadContent"]
        assert scep["PayloadContent"]["URL"] == "https://mdm.example.org:8443/nanomdm/scep"
        assert mdm["ServerURL"] == "https://mdm.example.org:8443/nanomdm/mdm"
        assert mdm["CheckInURL"] == "https://mdm.example.org:8443/nanomdm/checkin"
        document = await profile(server, f"?url=http://[::1]:9000&topic={TOPIC}")
        assert document["PayloadContent"][1]["ServerURL"] == "http://[::1]:9000/mdm"


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "missing required query parameter: topic"),
        ("?topic=", "missing required query parameter: topic"),
        ("?topic=com.example.app", "topic must be an MDM push topic"),
        ("?topic=com.apple.mgmt.", "topic must be an MDM push topic"),
        ("?topic=com.apple.mgmt.x%3C%2Fstring%3E", "topic must be an MDM push topic"),
        ("?topic=com.apple.mgmt.x%00", "contains a NUL character"),
        (f"?topic={TOPIC}&topic={TOPIC}", "given more than once"),
        (f"?topic={TOPIC}&format=xml", "unknown query parameter(s): format"),
        (f"?topic={TOPIC}&url=", "url must be the server's http(s) address"),
        (f"?topic={TOPIC}&url=ftp://mdm.example.org", "url must be"),
        (f"?topic={TOPIC}&url=javascript:alert(1)", "url must be"),
        (f"?topic={TOPIC}&url=https://", "url must be"),
        (f"?topic={TOPIC}&url=mdm.example.org", "url must be"),
        (f"?topic={TOPIC}&url=https://user:pw@mdm.example.org", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.example.org/%3Fq=1", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.example.org%23frag", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.example.org:99999", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.example.org:0", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.example.org:x", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm%0A.example.org", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm%09.example.org", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.ex%20ample.org", "url must be"),
        (f"?topic={TOPIC}&url=https://mdm.example.org/%3Cx%3E", "url must be"),
        (f"?topic={TOPIC}&url=https://m%C3%BCnchen.example", "url must be"),
        (f"?topic={TOPIC}&url=https://" + "a" * 2000 + ".org", "url must be"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_parameters_are_400(tmp_path: Path, query: str, message: str) -> None:
    async with serve(tmp_path) as server:
        code, headers, body = await get(server, query)
        assert code == 400
        assert headers.getRawHeaders("content-type") == ["application/json"]
        (error,) = json.loads(body).values()
        assert message in error


@pytest.mark.parametrize("host", [b"", b"Host: bad host\r\n", b"Host: x/y\r\n"])
@pytest_twisted.ensureDeferred
async def test_an_unusable_host_without_url_is_400(tmp_path: Path, host: bytes) -> None:
    async with serve(tmp_path) as server:
        credentials = base64.b64encode(f"nanomdm:{server.api_key}".encode())
        status, headers, body = await deferToThread(
            raw_request, server.url, f"/v1/enrollment-profile?topic={TOPIC}".encode(), b"GET",
            host + b"Authorization: Basic " + credentials + b"\r\n",
        )  # fmt: skip
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert "url must be" in json.loads(body)["error"]


@pytest_twisted.ensureDeferred
async def test_profile_needs_the_key(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.get(server.url + f"/v1/enrollment-profile?topic={TOPIC}")
        assert answer.code == 401
