"""
docs/openapi.yaml: served at /v1/openapi.yaml, and the live server checked
against it by schemathesis.

schemathesis (``st run``, in a subprocess) reads the document from the
running server and sends every operation schema-valid and schema-invalid
requests: the answers' status codes, content types, headers and JSON must
be what the document says, schema-invalid input must be refused with a 4xx,
a method a path does not serve must get 405 with ``Allow``, requests without
the key must get 401, and no answer may be a server fault (see
schemathesis_hooks.py for the one 500 NanoMDM answers by design).
tests/schemathesis.toml says which checks run, and why the others do not.
"""

import os
import sys
from pathlib import Path

import pytest_twisted
import yaml
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from nanomdm_tw.tools.sim import SimulatedDevice, make_command, make_identity

from .fake_apns import ca, fake, issue_push_cert  # noqa: F401 (fixtures)
from .inspection_client import storage_spec  # noqa: F401 (fixture: every backend)
from .serving import serve
from .test_escrow_migration import start_fake_apple

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "nanomdm_tw" / "openapi.yaml"

# The document's example values, so that its examples reach real data.
TOPIC = "com.apple.mgmt.External.e3b8ceac-1f18-2c8e-8a63-dd17d99435d9"
EXAMPLE_IDS = ("299BD49A-1A0C-422C-B285-2E4FF087C673", "E2E4A8EB-45EE-488D-B9D7-4CC3B1C40699")
EXAMPLE_COMMAND = "fedd659e-fc3c-4e35-8bb1-c8f51ae542a5"

# Where devices, not API clients, connect (the MDM protocol, not this API).
DEVICE_PATHS = {"mdm", "checkin", "authproxy"}

# Bounds that keep a run near 20 s per backend on two cores (about 1,600
# requests).  A fixed seed makes failures reproducible; set
# NANOMDM_SCHEMATHESIS_SEED to explore other inputs.
MAX_EXAMPLES = 50
SEED = os.environ.get("NANOMDM_SCHEMATHESIS_SEED", "20261129")


def test_docs_copy_is_the_packaged_document() -> None:
    docs = ROOT / "docs" / "openapi.yaml"
    assert docs.read_bytes() == DOCUMENT.read_bytes()


@pytest_twisted.ensureDeferred
async def test_document_is_served_behind_the_key(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        url = server.url + "/v1/openapi.yaml"
        answer = await server.http.get(url, auth=server.api_auth())
        assert answer.code == 200
        assert answer.headers.getRawHeaders("content-type") == ["application/yaml"]
        assert await answer.content() == DOCUMENT.read_bytes()
        assert (await server.http.get(url)).code == 401


@pytest_twisted.ensureDeferred
async def test_every_served_path_is_documented(tmp_path: Path) -> None:
    """A new endpoint is not finished until the document says what it answers."""
    paths = yaml.safe_load(DOCUMENT.read_bytes())["paths"]
    documented = {p.strip("/").split("/{")[0] for p in paths}
    async with serve(tmp_path, migration=True) as server:
        root = server.service.port.factory.resource
        served = {name.decode() for name in root.children} - DEVICE_PATHS
        v1 = root.children[b"v1"]._protected
        served |= {"v1/" + name.decode() for name in v1.children}
    assert served - {"v1"} == documented


async def seed(server, ca) -> None:  # noqa: F811
    """Enrollments (a device with a user channel, another device) and queues in every state."""
    cert, key = issue_push_cert(ca, TOPIC)
    answer = await server.http.put(
        server.url + "/v1/pushcert", data=cert + key, auth=server.api_auth()
    )
    assert answer.code == 200
    first, second = (
        SimulatedDevice.create(
            server.url, make_identity(server.ca), udid=udid, topic=TOPIC, http=server.http
        )
        for udid in EXAMPLE_IDS
    )
    user = first.user_channel()
    for channel in (first, second, user):
        await channel.enroll()
    ids = ",".join(c.id for c in (first, second, user))

    async def enqueue(command: bytes, to: str = ids) -> None:
        answer = await server.http.put(
            server.url + f"/v1/enqueue/{to}?nopush=1", data=command, auth=server.api_auth()
        )
        assert answer.code == 200

    # first: EXAMPLE_COMMAND acknowledged, an error with an ErrorChain, one NotNow.
    await enqueue(make_command("ProfileList", EXAMPLE_COMMAND))
    await enqueue(make_command("InstallProfile", "CMD-ERROR", Payload=b"profile"))
    await enqueue(make_command("DeviceInformation", "CMD-NOTNOW", Queries=["UDID"]))
    await enqueue(make_command("SecurityInfo", "CMD-PENDING"))
    assert (await first.idle()).plist["CommandUUID"] == EXAMPLE_COMMAND
    await first.report("Acknowledged", EXAMPLE_COMMAND, ProfileList=[])
    error_chain = [
        {
            "ErrorCode": 4001,
            "ErrorDomain": "MCInstallationErrorDomain",
            "LocalizedDescription": "The profile could not be installed.",
            "USEnglishDescription": "The profile could not be installed.",
        }
    ]
    await first.report("Error", "CMD-ERROR", ErrorChain=error_chain)
    await first.report("NotNow", "CMD-NOTNOW")
    # second: its queue cleared, one command enqueued after.
    answer = await server.http.delete(
        server.url + f"/v1/queue/{second.id}", auth=server.api_auth()
    )
    assert answer.code == 204
    await enqueue(make_command("ProfileList", "CMD-AFTER-CLEAR"), to=second.id)


@pytest_twisted.ensureDeferred
async def test_the_live_api_keeps_to_its_document(
    tmp_path: Path, ca, fake, storage_spec  # noqa: F811
) -> None:
    (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
    _, apple_port = await start_fake_apple(ca)
    escrow_url = f"https://127.0.0.1:{apple_port.getHost().port}/escrowKeyUnlock"
    try:
        async with serve(
            tmp_path,
            storage_spec,
            apns_url=fake.base_url,
            apns_ca=str(tmp_path / "apns-ca.pem"),
            escrow_key_unlock_url=escrow_url,
            migration=True,
        ) as server:
            await seed(server, ca)
            output, errors, code = await run_schemathesis(server, tmp_path)
    finally:
        await apple_port.stopListening()
    report = (output + errors).decode("utf-8", "replace")
    assert code == 0, report
    # Every operation of the document was tested.
    operations = DOCUMENT.read_text().count("operationId:")
    assert f"{operations} selected / {operations} total" in report, report


async def run_schemathesis(server, workdir: Path):
    """``st run``'s output and exit code; its cache and reports go to ``workdir``."""
    st = Path(sys.executable).parent / "st"
    arguments = [
        "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run",
        server.url + "/v1/openapi.yaml",
        "--auth", f"nanomdm:{server.api_key}",
        # Not the stateful phase: the document declares no links between operations.
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED,
        "--workers", "1",
        "--no-color",
    ]  # fmt: skip
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return await getProcessOutputAndValue(
        str(st), arguments, env=environment, path=str(workdir), reactor=reactor
    )
