"""--dm: Declarative Management check-ins forwarded to a loopback DDM server."""

import base64
import hashlib
import hmac
from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from nanomdm_tw.services.dm import DeclarativeManagementForwarder
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from .receivers import Answer, Receiver
from .serving import serve

SEND_KEY, RECV_KEY = b"to-ddm", b"from-ddm"


def signed(key: bytes) -> callable:
    return lambda body: {
        b"X-Hmac-Signature": base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
    }


@pytest_twisted.async_yield_fixture
async def ddm():
    receiver = await Receiver().start()
    receiver.answer = Answer(body=b'{"Declarations":{}}', headers_for=signed(RECV_KEY))
    yield receiver
    await receiver.stop()


def dm_settings(ddm: Receiver, **overrides) -> dict:
    settings = dict(
        dm=ddm.url + "/ddm/",
        dm_send_hmac_key=SEND_KEY.decode(),
        dm_recv_hmac_key=RECV_KEY.decode(),
    )
    settings.update(overrides)
    return settings


async def enrolled(server, enroll_type: str = "device") -> SimulatedDevice:
    d = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
    await d.enroll()
    if enroll_type == "device":
        return d
    user = d.user_channel()
    await user.enroll()
    return user


@pytest_twisted.ensureDeferred
async def test_status_report_is_put_with_its_data(tmp_path: Path, ddm: Receiver) -> None:
    async with serve(tmp_path, **dm_settings(ddm)) as server:
        d = await enrolled(server)
        answer = await d.checkin("DeclarativeManagement", Endpoint="status", Data=b'{"a":1}')
    assert answer.code == 200 and answer.body == b'{"Declarations":{}}'
    (recorded,) = ddm.requests
    assert (recorded.method, recorded.path, recorded.body) == (b"PUT", b"/ddm/status", b'{"a":1}')
    assert recorded.header("Content-Type") == "application/json"
    assert recorded.header("X-Enrollment-ID") == d.id
    assert recorded.header("X-Enrollment-Type") == "Device"
    assert recorded.header("X-Enrollment-ParentID") is None
    assert len(recorded.header("X-Trace-ID")) == 16
    expected = signed(SEND_KEY)(b'{"a":1}')[b"X-Hmac-Signature"].decode()
    assert recorded.header("X-Hmac-Signature") == expected


@pytest_twisted.ensureDeferred
async def test_without_data_it_is_a_get_with_the_parent(tmp_path: Path, ddm: Receiver) -> None:
    async with serve(tmp_path, **dm_settings(ddm)) as server:
        user = await enrolled(server, "user")
        answer = await user.checkin("DeclarativeManagement", Endpoint="declaration-items")
    assert answer.code == 200
    (recorded,) = ddm.requests
    assert (recorded.method, recorded.path, recorded.body) == (
        b"GET",
        b"/ddm/declaration-items",
        b"",
    )
    assert recorded.header("Content-Type") is None
    assert recorded.header("X-Enrollment-ID") == user.id
    assert recorded.header("X-Enrollment-Type") == "User"
    assert recorded.header("X-Enrollment-ParentID") == user.enrollment.udid


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status=404, body=b"no", headers_for=signed(RECV_KEY)),
        Answer(status=500, body=b"broken", headers_for=signed(RECV_KEY)),
        Answer(body=b"{}", headers_for=signed(b"someone else")),
        Answer(body=b"{}"),
    ],
    ids=["404", "500", "bad-signature", "no-signature"],
)
@pytest_twisted.ensureDeferred
async def test_refused_answers_are_errors(tmp_path: Path, ddm: Receiver, answer: Answer) -> None:
    ddm.answer = answer
    async with serve(tmp_path, **dm_settings(ddm)) as server:
        d = await enrolled(server)
        response = await d.checkin("DeclarativeManagement", Endpoint="status")
    assert response.code == 500
    assert answer.body not in response.body


@pytest_twisted.ensureDeferred
async def test_without_keys_nothing_is_signed_or_checked(tmp_path: Path, ddm: Receiver) -> None:
    ddm.answer = Answer(body=b"{}")
    settings = dm_settings(ddm, dm_send_hmac_key="", dm_recv_hmac_key="")
    async with serve(tmp_path, **settings) as server:
        d = await enrolled(server)
        assert (await d.checkin("DeclarativeManagement", Endpoint="status")).body == b"{}"
    assert ddm.requests[0].header("X-Hmac-Signature") is None


@pytest_twisted.ensureDeferred
async def test_target_down_is_an_error(tmp_path: Path, ddm: Receiver) -> None:
    settings = dm_settings(ddm)
    await ddm.go_down()
    async with serve(tmp_path, **settings) as server:
        d = await enrolled(server)
        assert (await d.checkin("DeclarativeManagement", Endpoint="status")).code == 500


def test_url_resolution_and_trailing_slash_warning() -> None:
    warnings: list[dict] = []
    globalLogPublisher.addObserver(warnings.append)
    try:
        with_slash = DeclarativeManagementForwarder("http://ddm.example/api/v1/", None)
        without = DeclarativeManagementForwarder("http://ddm.example/api/v1", None)
    finally:
        globalLogPublisher.removeObserver(warnings.append)
    assert with_slash.endpoint_url("status") == "http://ddm.example/api/v1/status"
    assert without.endpoint_url("status") == "http://ddm.example/api/status"
    assert with_slash.endpoint_url("declaration/configuration/x") == (
        "http://ddm.example/api/v1/declaration/configuration/x"
    )
    slash_warnings = [e for e in warnings if "trailing slash" in e.get("log_format", "")]
    assert [e["url"] for e in slash_warnings] == ["http://ddm.example/api/v1"]
