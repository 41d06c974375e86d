"""GetToken: the registry of handlers per TokenServiceType, unit and over HTTP."""

import plistlib
from pathlib import Path

import pytest
import pytest_twisted
from zope.interface import implementer

from nanomdm_tw.errors import HTTPStatusError
from nanomdm_tw.mdm.messages import decode_checkin
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.services.gettoken import (
    GetTokenRegistry,
    IGetTokenHandler,
    StaticToken,
    token_data_plist,
)
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from .serving import serve


def get_token(token_service_type: str = "com.apple.maid"):
    raw = plistlib.dumps(
        {
            "MessageType": "GetToken",
            "UDID": "DEVICE",
            "TokenServiceType": token_service_type,
            "TokenParameters": {"PhoneUDID": "x"},
        }
    )
    message = decode_checkin(raw)
    return MDMRequest(message.enroll_id), message


@implementer(IGetTokenHandler)
class EchoParameters:
    async def get_token(self, request, message) -> bytes:
        return (request.enroll_id.id + ":" + message.token_parameters["PhoneUDID"]).encode()


def test_registration_is_validated() -> None:
    registry = GetTokenRegistry()
    registry.register("com.apple.maid", StaticToken(b"t"))
    with pytest.raises(ValueError):
        registry.register("com.apple.maid", StaticToken(b"other"))
    with pytest.raises(ValueError):
        registry.register("", StaticToken(b"t"))
    with pytest.raises(TypeError):
        registry.register("com.example", lambda request, message: b"t")


@pytest_twisted.ensureDeferred
async def test_dispatch_by_token_service_type() -> None:
    registry = GetTokenRegistry()
    registry.register("com.apple.maid", EchoParameters())
    registry.register("com.example", StaticToken(b"static"))
    assert await registry.answer(*get_token()) == token_data_plist(b"DEVICE:x")
    assert plistlib.loads(await registry.answer(*get_token("com.example"))) == {
        "TokenData": b"static"
    }
    with pytest.raises(HTTPStatusError) as raised:
        await registry.answer(*get_token("com.unknown"))
    assert raised.value.status == 500


def test_answer_is_a_token_data_plist() -> None:
    assert b"<key>TokenData</key>\n\t<data>\n\tdG9rZW4=\n\t</data>" in token_data_plist(b"token")


@pytest_twisted.ensureDeferred
async def test_over_http(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        server.service.get_token_registry.register("com.apple.maid", StaticToken(b"maid-token"))
        d = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        await d.enroll()
        answer = await d.checkin("GetToken", TokenServiceType="com.apple.maid")
        assert answer.plist == {"TokenData": b"maid-token"}
        assert (await d.checkin("GetToken", TokenServiceType="com.other")).code == 500
