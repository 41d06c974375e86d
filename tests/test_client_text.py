"""
Text from API clients that a database could not hold is a 400 JSON error
on every backend: a NUL in an ID (PostgreSQL's was a 500), a command plist
that is not UTF-8 XML (MySQL's and PostgreSQL's were 500s).
"""

import json
import plistlib
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_twisted

from nanomdm_tw.tools.sim import SimulatedDevice, make_command, make_identity

from .inspection_client import storage_spec  # noqa: F401 (fixture: every backend)
from .serving import serve

JSON = {"content-type": ["application/json"]}
FORM = {"content-type": ["application/x-www-form-urlencoded"]}
ESCROW_FORM = {
    "topic": "com.apple.mgmt.External.x\x00", "serial": "C02", "productType": "iPad8,1",
    "orgName": "Org", "guid": "admin@example.com", "escrowKey": "KEY",
}  # fmt: skip

REQUESTS = [
    ("GET", "/v1/queue/A%00B", None, None),
    ("DELETE", "/v1/queue/A,B%00", None, None),
    ("GET", "/v1/commands/C%00", None, None),
    ("GET", "/v1/enrollments/A%00", None, None),
    ("GET", "/v1/enrollments?serial_number=S%00", None, None),
    ("GET", "/v1/push/A%00", None, None),
    ("GET", "/v1/pushcert?topic=com.apple.mgmt.External.x%00", None, None),
    ("POST", "/v1/enrollments", {"filter": {"serials": ["S\x00"]}}, JSON),
    ("POST", "/v1/push", {"ids": ["A", "B\x00"]}, JSON),
    ("POST", "/v1/escrowkeyunlock", ESCROW_FORM, FORM),
]


@pytest_twisted.ensureDeferred
async def test_nul_in_client_text_is_400(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage_spec) as server:
        for method, path, body, headers in REQUESTS:
            if headers is FORM:
                data = urlencode(body).encode()
            else:
                data = None if body is None else json.dumps(body).encode()
            answer = await server.http.request(
                method, server.url + path, data=data, headers=headers, auth=server.api_auth()
            )
            content = await answer.content()
            assert answer.code == 400, (path, content)
            assert answer.headers.getRawHeaders("content-type") == ["application/json"]
            document = json.loads(content)
            assert "NUL" in (document.get("error") or document.get("push_error")), document


@pytest_twisted.ensureDeferred
async def test_command_must_be_utf8_xml(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    command = {"CommandUUID": "CMD", "Command": {"RequestType": "ProfileList"}}
    refused = [
        plistlib.dumps(command, fmt=plistlib.FMT_BINARY),
        make_command("ProfileList", "CMD").replace(b"UTF-8", b"ISO-8859-1").replace(
            b"ProfileList", "ProfileList\xe9".encode("latin-1")
        ),
    ]
    async with serve(tmp_path, storage_spec) as server:
        device = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        await device.enroll()
        for body in refused:
            answer = await server.http.put(
                server.url + f"/v1/enqueue/{device.id}?nopush=1", data=body,
                auth=server.api_auth(),
            )  # fmt: skip
            assert answer.code == 400
            assert "XML in UTF-8" in json.loads(await answer.content())["command_error"]
        assert (await device.idle()).plist is None  # nothing was queued


@pytest.mark.parametrize("text", ["", "plain", "with\ttab"])
def test_text_without_nul_passes(text: str) -> None:
    from nanomdm_tw.resources.clienttext import checked_text

    assert checked_text(text, "it") == text
