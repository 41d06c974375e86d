"""
A NanoMDM deployment's store, built as NanoMDM would have left it: what an import must keep.

Simulated devices (which can later talk to the importing server with the
same identities) and the real iOS device of tests/fixtures went through
NanoMDM: enrollment, a user channel, a bootstrap token, commands answered,
answered NotNow, still waiting, a cleared queue, a checkout, a renewed
identity certificate and a push certificate uploaded three times.
"""

import json
import plistlib
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, key_pem
from nanomdm_tw.crypto.identity import cert_hash
from nanomdm_tw.tools.sim import (
    DEFAULT_TOPIC,
    Identity,
    SimulatedDevice,
    make_command,
    make_identity,
)

from .nanomdm_filekv import FileKVStore

FIXTURES = Path(__file__).parent / "fixtures"

# Queued to the device in this order; UUIDs that sort the other way round.
ANSWERED, NOT_NOW, WAITING, WAITING_TOO, SHARED = (
    "Z-answered", "Y-not-now", "X-waiting", "W-waiting", "V-shared"
)  # fmt: skip
CLEARED_NOT_NOW, CLEARED = "U-cleared-not-now", "T-cleared"
BOOTSTRAP_TOKEN = b"bootstrap token bytes"
UNLOCK_TOKEN = b"\x00unlock\xfftoken"


@dataclass
class Scenario:
    ca: DevelopmentCA
    device: SimulatedDevice
    user: SimulatedDevice
    gone: SimulatedDevice
    fixture_udid: str
    fixture_token_update: dict
    superseded: Identity  # the device's identity before renewal

    def at(self, url: str, http) -> "Scenario":
        """The simulated channels pointed at a server."""
        return replace(
            self,
            device=replace(self.device, url=url, http=http),
            user=replace(self.user, url=url, http=http),
            gone=replace(self.gone, url=url, http=http),
        )


def _report(channel: SimulatedDevice, command_uuid: str, status: str) -> bytes:
    return channel.prepare_report(status, command_uuid).body


def _enroll(store: FileKVStore, device: SimulatedDevice, unlock_token: bytes = b"") -> None:
    der = device.identity.cert.public_bytes(Encoding.DER)
    authenticate = device.prepare_checkin(
        "Authenticate", Topic=device.topic, SerialNumber=device.serial_number
    ).body
    store.store_authenticate(device.id, authenticate, der, device.serial_number)
    store.associate_cert_hash(device.id, cert_hash(device.identity.cert))
    token_update = device.prepare_token_update(unlock_token=unlock_token or None).body
    store.store_token_update(
        device.id, token_update, "Device", device.topic, device.push_magic,
        device.push_token, unlock_token,
    )  # fmt: skip


def build_filekv_store(folder: Path, ca: DevelopmentCA) -> Scenario:
    store = FileKVStore(folder)
    device = SimulatedDevice.create("http://unused", make_identity(ca))
    # An identity NanoMDM saw first, then the renewed one: only the latter stays valid.
    superseded = make_identity(ca)
    store.associate_cert_hash(device.id, cert_hash(superseded.cert))
    _enroll(store, device, UNLOCK_TOKEN)
    store.store_bootstrap_token(device.id, BOOTSTRAP_TOKEN)

    user = device.user_channel("user")
    store.store_user_authenticate(user.id, user.prepare_checkin("UserAuthenticate").body)
    store.store_token_update(
        user.id, user.prepare_token_update().body, "User", user.topic, user.push_magic,
        user.push_token, parent_id=device.id,
    )  # fmt: skip

    for command_uuid in (ANSWERED, NOT_NOW, WAITING, WAITING_TOO):
        store.enqueue_command([device.id], command_uuid, make_command("ProfileList", command_uuid),
                              "ProfileList")  # fmt: skip
    store.enqueue_command([device.id, user.id], SHARED, make_command("DeviceInformation", SHARED),
                          "DeviceInformation")  # fmt: skip
    store.store_command_report(device.id, ANSWERED, "Acknowledged", _report(device, ANSWERED,
                               "Acknowledged"))  # fmt: skip
    store.store_command_report(device.id, NOT_NOW, "NotNow", _report(device, NOT_NOW, "NotNow"))
    store.store_command_report(user.id, SHARED, "Acknowledged", _report(user, SHARED,
                               "Acknowledged"))  # fmt: skip

    gone = SimulatedDevice.create("http://unused", make_identity(ca))
    _enroll(store, gone)
    for command_uuid in (CLEARED_NOT_NOW, CLEARED):
        store.enqueue_command([gone.id], command_uuid, make_command("ProfileList", command_uuid),
                              "ProfileList")  # fmt: skip
    store.store_command_report(gone.id, CLEARED_NOT_NOW, "NotNow",
                               _report(gone, CLEARED_NOT_NOW, "NotNow"))  # fmt: skip
    store.clear_queue(gone.id)
    store.disable(gone.id)  # CheckOut

    # The real iOS device, enrolled without a certificate NanoMDM kept.
    authenticate = (FIXTURES / "Authenticate.1.plist").read_bytes()
    token_update = (FIXTURES / "TokenUpdate.1.plist").read_bytes()
    fixture = plistlib.loads(token_update)
    store.store_authenticate(fixture["UDID"], authenticate, None,
                             plistlib.loads(authenticate).get("SerialNumber", ""))  # fmt: skip
    store.store_token_update(
        fixture["UDID"], token_update, "Device", fixture["Topic"], fixture["PushMagic"],
        fixture["Token"], fixture.get("UnlockToken", b""),
    )  # fmt: skip

    for _ in range(3):  # uploaded, then renewed twice: stale token 2
        cert, key = ca.issue_push_certificate(DEFAULT_TOPIC)
        store.store_push_cert(DEFAULT_TOPIC, cert_pem(cert), key_pem(key))
    return Scenario(ca, device, user, gone, fixture["UDID"], fixture, superseded)


# The order NanoMDM would have sent the device's queue in: the NotNow first, then the
# waiting ones in enqueue order (filekv, SQL) or in file name order (the file store).
QUEUE_ORDER = [NOT_NOW, WAITING, WAITING_TOO, SHARED]
FILE_STORE_ORDER = [NOT_NOW, SHARED, WAITING_TOO, WAITING]


async def assert_devices_carry_on(
    server, scenario: Scenario, fake, order: list[str] = QUEUE_ORDER
) -> None:
    """The imported deployment, served: cert auth, queues, bootstrap token, pushes."""
    s = scenario.at(server.url, server.http)
    # Cert auth knows the device's certificate (no -retro), and the queue resumes in order.
    delivered = [command["CommandUUID"] for command in await s.device.run_queue()]
    assert delivered == order
    assert (await s.user.idle()).plist is None  # it had answered the shared command
    assert (await s.device.get_bootstrap_token()).plist == {"BootstrapToken": BOOTSTRAP_TOKEN}
    # The identity NanoMDM accepted before the renewal is refused, as NanoMDM refuses it.
    assert (await replace(s.device, identity=scenario.superseded).idle()).code == 403

    answer = await server.http.get(
        server.url + f"/v1/push/{s.device.id},{s.gone.id}", auth=server.api_auth()
    )
    status = json.loads(await answer.content())["status"]
    assert set(status[s.device.id]) == {"push_result"}
    assert status[s.gone.id] == {"push_error": "no push info"}  # it had checked out
    (pushed,) = [r for r in fake.requests if r.token_hex == s.device.push_token.hex()]
    assert pushed.client_topic == DEFAULT_TOPIC  # the imported push certificate
    assert json.loads(pushed.body) == {"mdm": s.device.push_magic}

    fixture = scenario.fixture_token_update
    info = (await server.storage.retrieve_push_info([scenario.fixture_udid]))[
        scenario.fixture_udid
    ]
    assert (info.topic, info.token, info.push_magic) == (
        fixture["Topic"], fixture["Token"], fixture["PushMagic"]
    )  # fmt: skip
