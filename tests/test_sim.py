"""The device simulator against a real server on loopback."""

import os
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from nanomdm_tw.tools.sim import (
    ENROLL_TYPES,
    SimulatedDevice,
    SimulatorError,
    enqueue,
    make_command,
    make_identity,
)

from .serving import serve

REPO = Path(__file__).resolve().parent.parent


async def enroll(server, enroll_type: str, **settings) -> SimulatedDevice:
    """A channel of ``enroll_type``, enrolled with its device channel first."""
    device = SimulatedDevice.create(
        server.url, make_identity(server.ca), enroll_type, http=server.http, **settings
    )
    if device.device_channel() is not device:
        await device.device_channel().enroll()
    await device.enroll()
    return device


async def enqueue_one(server, enrollment_id: str, command_uuid: str) -> None:
    answer = await enqueue(
        server.http,
        server.url,
        server.api_key,
        [enrollment_id],
        make_command("ProfileList", command_uuid),
    )
    assert answer.code == 200, answer.body


@pytest.mark.parametrize("enroll_type", sorted(ENROLL_TYPES))
@pytest_twisted.ensureDeferred
async def test_every_enrollment_type_gets_and_acknowledges_a_command(
    tmp_path: Path, enroll_type: str
) -> None:
    async with serve(tmp_path) as server:
        device = await enroll(server, enroll_type)
        assert device.enroll_id.type is ENROLL_TYPES[enroll_type]
        await enqueue_one(server, device.id, "CMD-" + enroll_type)

        seen = []
        commands = await device.run_queue(echo=seen.append)

        assert [c["CommandUUID"] for c in commands] == ["CMD-" + enroll_type]
        assert seen == [f"{device.id} ProfileList CMD-{enroll_type}"]
        assert (await device.idle()).plist is None
        if device.device_channel() is not device:
            assert (await device.device_channel().idle()).plist is None


@pytest_twisted.ensureDeferred
async def test_user_channel_shares_the_device_identity(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        device = await enroll(server, "device")
        user = device.user_channel()
        await user.enroll()

        assert user.identity is device.identity
        assert user.enroll_id.parent_id == device.id
        assert user.id == f"{device.id}:{user.enrollment.user_id}"


@pytest.mark.parametrize("checkin", [False, True])
@pytest_twisted.ensureDeferred
async def test_cert_header_auth(tmp_path: Path, checkin: bool) -> None:
    async with serve(tmp_path, cert_header="X-Client-Cert", checkin=checkin) as server:
        device = await enroll(
            server,
            "device",
            auth="header:X-Client-Cert",
            checkin_path="/checkin" if checkin else "/mdm",
        )
        await enqueue_one(server, device.id, "CMD-HEADER")

        commands = await device.run_queue()

        assert [c["CommandUUID"] for c in commands] == ["CMD-HEADER"]
        signed = SimulatedDevice(
            server.url, device.identity, device.enrollment, http=server.http
        )
        assert (await signed.idle()).code in (400, 403)


@pytest_twisted.ensureDeferred
async def test_refusal_is_an_error_not_an_empty_queue(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        stranger = SimulatedDevice.create(
            server.url, make_identity(server.ca), http=server.http
        )

        answer = await stranger.idle()

        assert answer.code in (400, 403)
        with pytest.raises(SimulatorError):
            answer.plist


@pytest_twisted.ensureDeferred
async def test_bootstrap_token_round_trip(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        device = await enroll(server, "device")

        assert (await device.set_bootstrap_token(b"secret")).code == 200

        assert (await device.get_bootstrap_token()).plist == {
            "BootstrapToken": b"secret"
        }


async def sim_cli(*args: str) -> str:
    out, err, code = await getProcessOutputAndValue(
        sys.executable,
        ("-m", "nanomdm_tw.tools.sim", *args),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        path=str(REPO),
        reactor=reactor,
    )
    assert code == 0, err.decode()
    return out.decode()


@pytest_twisted.ensureDeferred
async def test_command_line_as_the_readme_shows(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        common = (
            "--url",
            server.url,
            "--ca-dir",
            str(tmp_path / "data" / "devca"),
            "--state",
            str(tmp_path / "sim"),
        )
        user_type = ("--type", "user")

        enrolled = await sim_cli(*common, "enroll", *user_type)
        user_id = (await sim_cli(*common, "id")).strip()
        device_id = user_id.split(":")[0]
        await enqueue_one(server, device_id, "CMD-CLI")
        ran = await sim_cli(*common, "run")
        checked_out = await sim_cli(*common, "checkout")

        assert enrolled.splitlines() == [
            f"enrolled Device: {device_id}",
            f"enrolled User: {user_id}",
        ]
        assert ran.splitlines() == [
            f"{device_id} ProfileList CMD-CLI",
            f"{device_id}: 1 command(s) acknowledged, queue empty",
            f"{user_id}: 0 command(s) acknowledged, queue empty",
        ]
        assert checked_out.splitlines() == [
            f"checked out {user_id}",
            f"checked out {device_id}",
        ]
