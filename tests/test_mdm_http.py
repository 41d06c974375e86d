"""
The device endpoints over real loopback HTTP, driven by the simulator.

Queue semantics follow NanoMDM's e2e suite; authentication and bad-input
cases check both the answer and that nothing was stored.
"""

import base64
import plistlib
import socket
import sqlite3
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from nanomdm_tw.crypto.cms import sign_detached
from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.mdm.messages import decode_checkin
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from .serving import serve

FIXTURES = Path(__file__).parent / "fixtures"
STORAGES = ["inmem", "sqlite"]


def storage_spec(name: str, tmp_path: Path) -> StorageSpec:
    return StorageSpec(name, str(tmp_path / "db") if name == "sqlite" else "", "")


def device(server, enroll_type: str = "device", **kwargs) -> SimulatedDevice:
    identity = kwargs.pop("identity", None) or make_identity(server.ca)
    return SimulatedDevice.create(
        server.url, identity, enroll_type, http=server.http, **kwargs
    )


async def enqueue_commands(server, ids: list[str], *request_types: str) -> list[str]:
    uuids = []
    for request_type in request_types:
        command = make_command(request_type)
        answer = await enqueue(server.http, server.url, server.api_key, ids, command)
        assert answer.code == 200, answer.body
        uuids.append(plistlib.loads(command)["CommandUUID"])
    return uuids


async def nothing_stored(server) -> bool:
    return await server.storage.retrieve_migration_checkins() == []


def uuid_of(response) -> str | None:
    command = response.plist
    return command["CommandUUID"] if command else None


@pytest.mark.parametrize("storage", STORAGES)
@pytest_twisted.ensureDeferred
async def test_queue_basic(tmp_path: Path, storage: str) -> None:
    async with serve(tmp_path, storage=storage_spec(storage, tmp_path)) as server:
        d = device(server)
        await d.enroll()
        assert (await d.idle()).plist is None
        cmd1, cmd2 = await enqueue_commands(server, [d.id], "ProfileList", "DeviceInformation")
        assert uuid_of(await d.idle()) == cmd1
        assert uuid_of(await d.report("Acknowledged", cmd1)) == cmd2
        assert uuid_of(await d.report("Acknowledged", cmd2)) is None
        assert uuid_of(await d.idle()) is None


@pytest.mark.parametrize("storage", STORAGES)
@pytest_twisted.ensureDeferred
async def test_queue_not_now(tmp_path: Path, storage: str) -> None:
    async with serve(tmp_path, storage=storage_spec(storage, tmp_path)) as server:
        d = device(server)
        await d.enroll()
        (cmd1,) = await enqueue_commands(server, [d.id], "ProfileList")
        assert uuid_of(await d.idle()) == cmd1
        assert uuid_of(await d.report("NotNow", cmd1)) is None
        assert uuid_of(await d.idle()) == cmd1
        assert uuid_of(await d.report("Error", cmd1, ErrorChain=[])) is None


@pytest.mark.parametrize("storage", STORAGES)
@pytest_twisted.ensureDeferred
async def test_reauthenticate_clears_queue(tmp_path: Path, storage: str) -> None:
    async with serve(tmp_path, storage=storage_spec(storage, tmp_path)) as server:
        d = device(server)
        await d.enroll()
        await enqueue_commands(server, [d.id], "ProfileList", "DeviceInformation")
        await d.enroll()
        assert (await d.idle()).plist is None


@pytest.mark.parametrize("storage", STORAGES)
@pytest_twisted.ensureDeferred
async def test_unknown_report_changes_no_queue(tmp_path: Path, storage: str) -> None:
    async with serve(tmp_path, storage=storage_spec(storage, tmp_path)) as server:
        a, b = device(server), device(server)
        await a.enroll()
        await b.enroll()
        (cmd_a,) = await enqueue_commands(server, [a.id], "ProfileList")
        (cmd_b,) = await enqueue_commands(server, [b.id], "CertificateList")
        # A report naming a command that is not A's: B's, and one nobody has.
        assert uuid_of(await a.report("Acknowledged", cmd_b)) == cmd_a
        assert uuid_of(await a.report("Acknowledged", "no-such-command")) == cmd_a
        assert uuid_of(await b.idle()) == cmd_b
        assert uuid_of(await a.idle()) == cmd_a


@pytest.mark.parametrize(
    "enroll_type", ["device", "user", "shared-ipad", "user-enrollment-device", "user-enrollment"]
)
@pytest_twisted.ensureDeferred
async def test_every_enrollment_type(tmp_path: Path, enroll_type: str) -> None:
    async with serve(tmp_path) as server:
        channel = device(server, enroll_type)
        parent = channel.device_channel()
        await parent.enroll()
        if channel is not parent:
            await channel.enroll()
        (cmd,) = await enqueue_commands(server, [channel.id], "ProfileList")
        if channel is not parent:
            assert ":" in channel.id
            assert (await parent.idle()).plist is None  # the user channel's queue is its own
        assert uuid_of(await channel.idle()) == cmd
        assert uuid_of(await channel.report("Acknowledged", cmd)) is None


@pytest_twisted.ensureDeferred
async def test_checkin_endpoint_split(tmp_path: Path) -> None:
    async with serve(tmp_path, checkin=True) as server:
        d = device(server, checkin_path="/checkin")
        await d.enroll()
        (cmd,) = await enqueue_commands(server, [d.id], "ProfileList")
        assert uuid_of(await d.idle()) == cmd
        # On /mdm a check-in is read as a command report and refused.
        misplaced = device(server, identity=d.identity, udid=d.enrollment.udid)
        assert (await misplaced.authenticate()).code == 400


@pytest_twisted.ensureDeferred
async def test_fixtures_parse_and_store(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        identity = make_identity(server.ca)
        for name in ("Authenticate.1.plist", "TokenUpdate.1.plist"):
            body = (FIXTURES / name).read_bytes()
            signature = base64.b64encode(sign_detached(body, identity.cert, identity.key))
            answer = await server.http.put(
                server.url + "/mdm",
                data=body,
                headers={
                    "Content-Type": "application/x-apple-aspen-mdm-checkin",
                    "Mdm-Signature": signature,
                },
            )
            assert answer.code == 200, await answer.content()
        udid = "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"
        push = await server.storage.retrieve_push_info([udid])
        assert push[udid].push_magic == "CEFDF0BD-E342-4A27-8742-E930EA116B0A"
        assert push[udid].token.hex().startswith("47e8eec062c2f729")
        assert await server.storage.retrieve_token_update_tally(udid) == 1


@pytest_twisted.ensureDeferred
async def test_bootstrap_token_and_user_authenticate(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        await d.enroll()
        assert (await d.get_bootstrap_token()).plist is None
        assert (await d.set_bootstrap_token(b"secret-token")).code == 200
        assert (await d.get_bootstrap_token()).plist == {"BootstrapToken": b"secret-token"}
        await d.enroll()  # erased and enrolled again
        assert (await d.get_bootstrap_token()).plist is None
        user = d.user_channel("user")
        assert (await user.user_authenticate()).code == 410
    async with serve(tmp_path, ua_zl_dc=True) as server:
        d = device(server)
        await d.enroll()
        user = d.user_channel("user")
        assert (await user.user_authenticate()).plist == {"DigestChallenge": ""}
        assert (await user.user_authenticate("digest")).body == b""


# Device authentication: each refusal is 400/403 (never 401) and stores nothing.


@pytest_twisted.ensureDeferred
async def test_unsigned_request_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        d = device(server, auth="none")
        answer = await d.authenticate()
        assert answer.code == 400
        assert await nothing_stored(server)


@pytest_twisted.ensureDeferred
async def test_bad_signature_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        prepared = d.prepare_checkin("Authenticate", Topic="com.apple.mgmt.x")
        tampered = prepared.body.replace(b"com.apple.mgmt.x", b"com.apple.mgmt.y")
        answer = await server.http.put(prepared.url, data=tampered, headers=prepared.headers)
        assert answer.code == 400
        assert await nothing_stored(server)


@pytest_twisted.ensureDeferred
async def test_cert_from_another_ca_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        stranger = make_identity(DevelopmentCA.create("some other CA"))
        d = device(server, identity=stranger)
        assert (await d.authenticate()).code == 403
        assert await nothing_stored(server)


@pytest_twisted.ensureDeferred
async def test_reused_cert_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        first, second = device(server), device(server)
        await first.enroll()
        await second.enroll()
        # The second device presents the first device's identity.
        impostor = device(server, identity=first.identity, udid=second.enrollment.udid)
        (cmd,) = await enqueue_commands(server, [second.id], "ProfileList")
        assert (await impostor.idle()).code == 403
        assert (await impostor.authenticate()).code == 403
        # Nothing changed: the real second device still gets its command.
        assert uuid_of(await second.idle()) == cmd


async def migrate_in(server, d: SimulatedDevice) -> None:
    """Store an enrollment as /migration does: no Authenticate over HTTP, no association."""
    for prepared in (d.prepare_checkin("Authenticate", Topic=d.topic), d.prepare_token_update()):
        message = decode_checkin(prepared.body)
        request = MDMRequest(enroll_id=message.enroll_id)
        if message.message_type == "Authenticate":
            await server.storage.store_authenticate(request, message)
        else:
            await server.storage.store_token_update(request, message)


@pytest.mark.parametrize("retro", [False, True])
@pytest_twisted.ensureDeferred
async def test_retro(tmp_path: Path, retro: bool) -> None:
    async with serve(tmp_path, retro=retro) as server:
        d = device(server)
        await migrate_in(server, d)
        (cmd,) = await enqueue_commands(server, [d.id], "ProfileList")
        answer = await d.idle()
        assert answer.code == (200 if retro else 403)
        hash_stored = await server.storage.enrollment_has_cert_hash(d.id)
        assert hash_stored is retro
        if retro:
            assert uuid_of(answer) == cmd
            # Retro creates an association, never replaces one.
            other = device(server, udid=d.enrollment.udid)
            assert (await other.idle()).code == 403


# Bad input: a clear 4xx, nothing stored, the server keeps serving.


BAD_BODIES = {
    "empty": b"",
    "not a plist": b"hello, world",
    "not a dict": plistlib.dumps(["Authenticate"]),
    "wrong types": plistlib.dumps({"MessageType": "Authenticate", "UDID": 5, "Topic": "t"}),
    "unknown type": plistlib.dumps({"MessageType": "Hello", "UDID": "x"}),
    "missing UDID": plistlib.dumps({"MessageType": "Authenticate", "Topic": "t"}),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
@pytest_twisted.ensureDeferred
async def test_bad_checkin_bodies(tmp_path: Path, case: str) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        body = BAD_BODIES[case]
        signature = base64.b64encode(sign_detached(body, d.identity.cert, d.identity.key))
        answer = await server.http.put(
            server.url + "/mdm",
            data=body,
            headers={
                "Content-Type": "application/x-apple-aspen-mdm-checkin",
                "Mdm-Signature": signature,
            },
        )
        assert answer.code == 400
        assert await nothing_stored(server)
        await d.enroll()  # still serving


@pytest_twisted.ensureDeferred
async def test_bad_reports(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        await d.enroll()
        assert (await d.report("Sleeping", "x")).code == 400
        assert (await d.report("Acknowledged")).code == 400  # no CommandUUID


@pytest_twisted.ensureDeferred
async def test_oversized_body(tmp_path: Path) -> None:
    async with serve(tmp_path, max_body_size=64 * 1024) as server:
        d = device(server)
        prepared = d.prepare_checkin("Authenticate", Topic="t", Padding="x" * 100_000)
        answer = await server.http.put(prepared.url, data=prepared.body, headers=prepared.headers)
        assert answer.code == 413
        assert await nothing_stored(server)
        await d.enroll()


@pytest.mark.parametrize(
    "signature",
    [
        b"A" * 12_000,  # big, but under the header limit: decoded and refused
        b"not base64 !!",
        base64.b64encode(b"\x30\x84\x7f\xff\xff\xff" * 2000)[:12_000],  # absurd lengths
        base64.b64encode(b"\x30\x80" * 4000),  # deeply nested indefinite lengths
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_signatures(tmp_path: Path, signature: bytes) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        prepared = d.prepare_checkin("Authenticate", Topic="t")
        headers = dict(prepared.headers, **{"Mdm-Signature": [signature]})
        answer = await server.http.put(prepared.url, data=prepared.body, headers=headers)
        assert answer.code == 400
        assert await nothing_stored(server)
        await d.enroll()


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send raw bytes and read the raw answer (for what HTTP clients refuse to send)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("size", [200_000, 1_100_000])
@pytest_twisted.ensureDeferred
async def test_huge_signature_header(tmp_path: Path, size: int) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        prepared = d.prepare_checkin("Authenticate", Topic="t")
        request = (
            b"PUT /mdm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-apple-aspen-mdm-checkin\r\n"
            b"Mdm-Signature: " + b"A" * size + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(prepared.body) + prepared.body
        )
        answer = await threads.deferToThread(raw_exchange, server.url, request)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert await nothing_stored(server)
        await d.enroll()


@pytest_twisted.ensureDeferred
async def test_version(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.get(server.url + "/version")
        assert answer.code == 200
        assert "version" in await answer.json()


@pytest_twisted.ensureDeferred
async def test_last_seen_written_in_batches(tmp_path: Path) -> None:
    spec = storage_spec("sqlite", tmp_path)
    database = tmp_path / "db" / "nanomdm.sqlite3"
    async with serve(tmp_path, storage=spec) as server:
        d = device(server)
        await d.enroll()
        with sqlite3.connect(database) as db:
            db.execute("UPDATE enrollments SET last_seen_at = '2000-01-01 00:00:00'")
        await d.idle()
        with sqlite3.connect(database) as db:
            (before_flush,) = db.execute("SELECT last_seen_at FROM enrollments").fetchone()
        # The Idle wrote nothing itself: the batch waits for its timer or shut-down.
        assert before_flush == "2000-01-01 00:00:00"
    with sqlite3.connect(database) as db:
        (after_flush,) = db.execute("SELECT last_seen_at FROM enrollments").fetchone()
    assert after_flush > "2026"


@pytest_twisted.ensureDeferred
async def test_token_update_before_authenticate_is_a_client_error(tmp_path: Path) -> None:
    async with serve(tmp_path, retro=True) as server:
        d = device(server)
        answer = await d.token_update()
        assert answer.code == 400
        assert b"Authenticate first" in answer.body
        await d.enroll()  # and the device can still enroll properly


# Enrollment IDs join device and user identifiers with ":"; an identifier holding
# one could take over another enrollment's ID (UDID "A:B" = user "B" on device "A").


@pytest_twisted.ensureDeferred
async def test_device_identifier_with_separator_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        owner = device(server, udid="A")
        await owner.enroll()
        user = owner.user_channel("user", user_id="B")
        await user.token_update()
        intruder = device(server, udid="A:B")
        answer = await intruder.authenticate()
        assert answer.code == 400
        assert b"contains ':'" in answer.body
        assert (await intruder.token_update()).code == 400
        push = await server.storage.retrieve_push_info(["A:B"])
        assert push["A:B"].token == user.push_token


@pytest.mark.parametrize(
    "device_type, channel_type, ids",
    [
        ("device", "user", {"user_id": "B:C"}),
        ("device", "shared-ipad", {"user_short_name": "ann:bob"}),
        ("user-enrollment-device", "user-enrollment", {"enrollment_user_id": "U:1"}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_user_identifier_with_separator_refused(
    tmp_path: Path, device_type: str, channel_type: str, ids: dict
) -> None:
    async with serve(tmp_path) as server:
        owner = device(server, device_type)
        await owner.enroll()
        channel = owner.user_channel(channel_type, **ids)
        assert (await channel.token_update()).code == 400
        assert await server.storage.retrieve_push_info([channel.id]) == {}


@pytest_twisted.ensureDeferred
async def test_enrollment_id_with_separator_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        d = device(server, "user-enrollment-device", enrollment_id="E:1")
        assert (await d.authenticate()).code == 400
        assert await nothing_stored(server)
