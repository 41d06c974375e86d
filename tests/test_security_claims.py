"""
Claims of docs/security.md that no other test made: where the device
identity stops, what the API key alone opens, and that secrets stay out of
the log.
"""

import base64
import dataclasses
import plistlib
from pathlib import Path

import pytest_twisted
from twisted.logger import formatEvent

from nanomdm_tw.crypto.devca import cert_pem, key_pem
from nanomdm_tw.tools.sim import (
    Identity,
    SimulatedDevice,
    enqueue,
    make_command,
    make_identity,
)

from .serving import serve
from .test_pushcert_api import push_pair, upload


def device(server) -> SimulatedDevice:
    return SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)


@pytest_twisted.ensureDeferred
async def test_a_device_certificate_does_not_open_the_api(tmp_path: Path) -> None:
    async with serve(tmp_path, migration=True) as server:
        d = device(server)
        await d.enroll()
        prepared = d.prepare_checkin("Authenticate", Topic="t")
        for path in ("/v1/enqueue/" + d.id, "/v1/enrollments", "/migration"):
            answer = await server.http.put(
                server.url + path, data=prepared.body, headers=prepared.headers
            )
            assert answer.code == 401, path
        assert (await d.run_queue()) == []


@pytest_twisted.ensureDeferred
async def test_behind_a_cert_header_the_header_alone_is_the_device(tmp_path: Path) -> None:
    # Why the TLS proxy must strip the header from clients: it carries no
    # proof that the sender holds the certificate's key, only the certificate.
    async with serve(tmp_path, cert_header="X-Client-Cert") as server:
        d = SimulatedDevice.create(
            server.url, make_identity(server.ca), auth="header:X-Client-Cert", http=server.http
        )
        await d.enroll()
        command = make_command("EraseDevice", "ERASE-BY-HEADER")
        assert (await enqueue(server.http, server.url, server.api_key, [d.id], command)).code == 200
        keyless = dataclasses.replace(d, identity=Identity(d.identity.cert, None))
        commands = await keyless.run_queue()
        assert [c["CommandUUID"] for c in commands] == ["ERASE-BY-HEADER"]


@pytest_twisted.ensureDeferred
async def test_the_migration_endpoint_needs_the_api_key(tmp_path: Path) -> None:
    async with serve(tmp_path, migration=True) as server:
        body = plistlib.dumps({"MessageType": "Authenticate", "UDID": "MIGRATED", "Topic": "t"})
        answer = await server.http.put(
            server.url + "/migration", data=body, auth=("nanomdm", "wrong")
        )
        assert answer.code == 401
        assert await server.storage.retrieve_migration_checkins() == []


@pytest_twisted.ensureDeferred
async def test_the_api_key_alone_can_erase_any_device(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        d = device(server)
        await d.enroll()
        command = make_command("EraseDevice", "ERASE-1")
        answer = await enqueue(server.http, server.url, server.api_key, [d.id], command)
        assert answer.code == 200
        commands = await d.run_queue()
        assert [(c["CommandUUID"], c["Command"]["RequestType"]) for c in commands] == [
            ("ERASE-1", "EraseDevice")
        ]


@pytest_twisted.ensureDeferred
async def test_secrets_are_never_logged(tmp_path: Path, log_events: list[dict]) -> None:
    token = b"bootstrap-token-secret"
    async with serve(tmp_path, debug=True) as server:
        d = device(server)
        await d.enroll()
        assert (await d.set_bootstrap_token(token)).code == 200
        assert (await d.get_bootstrap_token()).plist == {"BootstrapToken": token}
        cert, key = push_pair()
        code, _ = await upload(server, cert_pem(cert) + key_pem(key))
        assert code == 200
        wrong = await server.http.get(server.url + "/v1/pushcert", auth=("nanomdm", "guess-1"))
        assert wrong.code == 401
        api_key = server.api_key
    logged = "\n".join(
        (formatEvent(event) or "") + repr(event) for event in log_events
    )
    pem_lines = [line for line in key_pem(key).decode().splitlines() if "-----" not in line]
    assert api_key not in logged
    assert base64.b64encode(api_key.encode()).decode() not in logged
    assert "guess-1" not in logged
    assert token.decode() not in logged
    assert base64.b64encode(token).decode() not in logged
    assert not [line for line in pem_lines if line in logged]


@pytest_twisted.ensureDeferred
async def test_an_old_certificate_stays_associated_after_re_enrollment(tmp_path: Path) -> None:
    # Associations are added, never replaced (as NanoMDM's): re-enrolling does not revoke.
    async with serve(tmp_path) as server:
        old = device(server)
        await old.enroll()
        renewed = dataclasses.replace(old, identity=make_identity(server.ca))
        await renewed.enroll()
        assert (await renewed.idle()).code == 200
        assert (await old.idle()).code == 200


@pytest_twisted.ensureDeferred
async def test_a_fresh_trusted_certificate_can_authenticate_as_any_enrollment(
    tmp_path: Path,
) -> None:
    # Whoever can get an unused certificate from --ca (a SCEP challenge) can take an ID.
    async with serve(tmp_path) as server:
        victim = device(server)
        await victim.enroll()
        intruder = dataclasses.replace(victim, identity=make_identity(server.ca))
        await intruder.enroll()
        command = make_command("ProfileList", "FOR-THE-VICTIM")
        assert (await enqueue(server.http, server.url, server.api_key, [victim.id], command)).code == 200
        assert [c["CommandUUID"] for c in await intruder.run_queue()] == ["FOR-THE-VICTIM"]
