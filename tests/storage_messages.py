"""Messages for driving a storage backend directly, as the core service does."""

import plistlib
from collections.abc import Iterator
from contextlib import contextmanager

from twisted.logger import globalLogPublisher

from nanomdm_tw.mdm.messages import decode_checkin, decode_command, decode_command_report
from nanomdm_tw.mdm.request import MDMRequest

TOPIC = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9"


def checkin(message_type: str, udid: str = "DEVICE-1", **fields):
    return decode_checkin(plistlib.dumps({"MessageType": message_type, "UDID": udid, **fields}))


def command(command_uuid: str):
    return decode_command(
        plistlib.dumps({"CommandUUID": command_uuid, "Command": {"RequestType": "ProfileList"}})
    )


def report(status: str, command_uuid: str, udid: str = "DEVICE-1"):
    return decode_command_report(
        plistlib.dumps({"UDID": udid, "Status": status, "CommandUUID": command_uuid})
    )


async def enroll(store, udid: str = "DEVICE-1", token: bytes = b"\xde\xad\xbe\xef"):
    """Authenticate then TokenUpdate, with the core service's clear and disable between."""
    authenticate = checkin("Authenticate", udid, Topic=TOPIC, SerialNumber="SERIAL-" + udid)
    request = MDMRequest(authenticate.enroll_id)
    await store.store_authenticate(request, authenticate)
    await store.clear_queue(request)
    await store.disable(request)
    update = checkin("TokenUpdate", udid, Topic=TOPIC, Token=token, PushMagic="MAGIC-" + udid)
    await store.store_token_update(request, update)
    return request


@contextmanager
def retries_logged() -> Iterator[list]:
    """The log events of interactions retried meanwhile (deadlocks, lock waits, lost links)."""
    retries = []

    def observer(event):
        if "retrying" in event.get("log_format", ""):
            retries.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield retries
    finally:
        globalLogPublisher.removeObserver(observer)
