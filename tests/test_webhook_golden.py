"""
NanoMDM's golden webhook bodies (its service/webhook/testdata, copied with its
licence into tests/fixtures/nanomdm-webhook/): our webhook must POST the same
bytes for the same message, as NanoMDM's own test demands of NanoMDM.

NanoMDM's test fixes ``created_at`` to Go's zero time and the event ID to
``test_event_id``; the golden files carry the message in ``raw_payload``.
"""

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool

from nanomdm_tw.mdm.messages import decode_checkin, decode_command_report
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.services.webhook import WebhookService

from .receivers import Receiver

GOLDEN = Path(__file__).parent / "fixtures" / "nanomdm-webhook"
GO_ZERO_TIME = -62135596800.0  # 0001-01-01T00:00:00Z as Unix seconds
HMAC_KEY = b"12345"


@pytest_twisted.async_yield_fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.mark.parametrize("name", ["Authenticate.2.json", "DeviceInformation.1.json"])
@pytest_twisted.ensureDeferred
async def test_body_is_nanomdms_golden_event(name: str, receiver: Receiver) -> None:
    golden = (GOLDEN / name).read_bytes().strip()
    event = json.loads(golden)
    payload = event.get("checkin_event") or event["acknowledge_event"]
    raw = base64.b64decode(payload["raw_payload"])
    clock = Clock()
    clock.rightNow = GO_ZERO_TIME
    pool = HTTPConnectionPool(reactor, persistent=False)
    service = WebhookService(
        receiver.url, HTTPClient(Agent(reactor, pool=pool)), hmac_key=HMAC_KEY, clock=clock
    )
    service.startService()
    try:
        if "checkin_event" in event:
            message = decode_checkin(raw)
            await service.checkin(MDMRequest(message.enroll_id, trace_id="test_event_id"), message)
        else:
            report = decode_command_report(raw)
            await service.command_report(
                MDMRequest(report.enroll_id, trace_id="test_event_id"), report
            )
        (recorded,) = await receiver.wait_for(1)
    finally:
        await service.stopService()
        await pool.closeCachedConnections()

    assert recorded.body == golden
    expected = base64.b64encode(hmac.new(HMAC_KEY, golden, hashlib.sha256).digest())
    assert recorded.header("X-Hmac-Signature") == expected.decode("ascii")
