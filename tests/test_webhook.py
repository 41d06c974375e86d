"""
The webhook: NanoMDM's event JSON over real loopback HTTP, retries with an
injected clock, ordering, bounds, shut-down; and the multi-service rule
that the device's answer never depends on the webhook.
"""

import base64
import hashlib
import hmac
import json
import plistlib
import re
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from nanomdm_tw.errors import HTTPStatusError
from nanomdm_tw.mdm.messages import decode_checkin, decode_command_report
from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.metrics.processes import exposition
from nanomdm_tw.services.interfaces import IMDMService
from nanomdm_tw.services.multi import MultiMDMService
from nanomdm_tw.services.webhook import WebhookService
from nanomdm_tw.services.webhook_event import checkin_event, encode_event
from nanomdm_tw.tools.sim import Prepared, SimulatedDevice, make_identity

from .receivers import Answer, Receiver
from .serving import serve

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = json.loads((FIXTURES / "webhook-event.schema.json").read_text())
HMAC_KEY = b"webhook-secret"


def validate(body: bytes) -> dict:
    event = json.loads(body)
    jsonschema.Draft202012Validator(SCHEMA).validate(event)
    assert datetime.fromisoformat(event["created_at"]).tzinfo is not None
    assert re.fullmatch(r"[0-9a-f]{16}", event["event_id"])
    return event


def signature_ok(recorded) -> bool:
    expected = base64.b64encode(hmac.new(HMAC_KEY, recorded.body, hashlib.sha256).digest())
    return recorded.header("X-Hmac-Signature") == expected.decode("ascii")


@pytest_twisted.async_yield_fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    receiver.release()
    await receiver.stop()


def device(server, enroll_type: str = "device", **kwargs) -> SimulatedDevice:
    identity = kwargs.pop("identity", None) or make_identity(server.ca)
    return SimulatedDevice.create(server.url, identity, enroll_type, http=server.http, **kwargs)


# Through the whole server.


@pytest_twisted.ensureDeferred
async def test_every_topic_matches_the_schema(tmp_path: Path, receiver: Receiver) -> None:
    settings = dict(webhook_url=receiver.url + "/hook", webhook_hmac_key=HMAC_KEY.decode())
    async with serve(tmp_path, **settings) as server:
        d = device(server)
        await d.authenticate()
        await d.token_update()
        await d.token_update()
        await d.set_bootstrap_token(b"bootstrap")
        await d.get_bootstrap_token()
        await d.checkin("DeclarativeManagement", Endpoint="tokens")
        await d.checkin("GetToken", TokenServiceType="com.apple.maid")
        prepared = d.prepare_report("Idle")
        await d.send(Prepared(prepared.url + "?source=test", prepared.body, prepared.headers))
        await d.report("Acknowledged", "CMD-1")
        user = d.user_channel()
        await user.token_update()
        await user.user_authenticate()
        await d.checkout()
        recorded = await receiver.wait_for(12)

    events = [validate(r.body) for r in recorded]
    assert [e["topic"] for e in events] == [
        "mdm.Authenticate",
        "mdm.TokenUpdate",
        "mdm.TokenUpdate",
        "mdm.SetBootstrapToken",
        "mdm.GetBootstrapToken",
        "mdm.DeclarativeManagement",
        "mdm.GetToken",
        "mdm.Connect",
        "mdm.Connect",
        "mdm.TokenUpdate",
        "mdm.UserAuthenticate",
        "mdm.CheckOut",
    ]
    assert all(r.method == b"POST" and r.path == b"/hook" for r in recorded)
    assert all(r.header("Content-Type") == "application/json; charset=utf-8" for r in recorded)
    assert all(signature_ok(r) for r in recorded)
    assert all(r.header("X-Trace-ID") == e["event_id"] for r, e in zip(recorded, events))
    assert len({e["event_id"] for e in events}) == len(events)

    authenticate = events[0]["checkin_event"]
    assert authenticate["udid"] == d.enrollment.udid
    assert authenticate["ids"] == {"id": d.id, "type": "Device"}
    assert plistlib.loads(base64.b64decode(authenticate["raw_payload"]))["MessageType"] == (
        "Authenticate"
    )
    assert "token_update_tally" not in authenticate and "url_params" not in authenticate
    assert [e["checkin_event"]["token_update_tally"] for e in events[1:3]] == [1, 2]
    idle, acknowledged = events[7]["acknowledge_event"], events[8]["acknowledge_event"]
    assert idle["status"] == "Idle" and "command_uuid" not in idle
    assert idle["url_params"] == {"source": "test"}
    assert acknowledged["status"] == "Acknowledged"
    assert acknowledged["command_uuid"] == "CMD-1"
    assert events[9]["checkin_event"]["ids"] == {
        "id": user.id,
        "parent_id": d.id,
        "type": "User",
    }
    assert events[9]["checkin_event"]["token_update_tally"] == 1


@pytest_twisted.ensureDeferred
async def test_device_answer_does_not_wait_for_a_hanging_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.hang = True
    async with serve(tmp_path, webhook_url=receiver.url) as server:
        d = device(server)
        await d.enroll()
        assert (await d.idle()).code == 200
        # The first event is still unanswered while the device got all its answers.
        assert len(await receiver.wait_for(1)) == 1
        receiver.release()
        await receiver.wait_for(3)


@pytest_twisted.ensureDeferred
async def test_core_errors_still_reach_the_device_and_the_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with serve(tmp_path, webhook_url=receiver.url) as server:
        d = device(server)
        await d.enroll()
        answer = await d.checkin("DeclarativeManagement", Endpoint="status")
        assert answer.code == 500
        (_, _, dm) = await receiver.wait_for(3)
        assert json.loads(dm.body)["topic"] == "mdm.DeclarativeManagement"


@pytest_twisted.ensureDeferred
async def test_webhook_queue_bytes_setting_bounds_the_server_s_queue(
    tmp_path: Path, receiver: Receiver, log_events: list[dict]
) -> None:
    await receiver.go_down()
    async with serve(tmp_path, webhook_url=receiver.url, webhook_queue_bytes=1000) as server:
        d = device(server)
        assert (await d.authenticate()).code == 200  # its event is larger than 1000 bytes
    drops = [e for e in log_events if "webhook event dropped" in e.get("log_format", "")]
    assert [e["reason"] for e in drops] == ["queue_bytes_full"]
    assert re.fullmatch(r"[0-9a-f]{16}", drops[0]["event_id"])


# The JSON encoding itself.


def test_json_is_encoded_as_go_does() -> None:
    raw = (FIXTURES / "Authenticate.1.plist").read_bytes()
    message = decode_checkin(raw)
    request = MDMRequest(message.enroll_id, trace_id="0123456789abcdef", params={"a": "<&>"})
    body = encode_event(checkin_event(request, message, created_at=1700000000.25))
    udid = message.enrollment.udid
    assert body == (
        '{"checkin_event":{"ids":{"id":"%s","type":"Device"},"raw_payload":"%s",'
        '"udid":"%s","url_params":{"a":"\\u003c\\u0026\\u003e"}},'
        '"created_at":"2023-11-14T22:13:20.25Z","event_id":"0123456789abcdef",'
        '"topic":"mdm.Authenticate"}'
        % (udid, base64.b64encode(raw).decode(), udid)
    ).encode()


# Delivery: retries, order, bounds, shut-down (webhook alone, injected clock).


def messages(udid: str = "0000-DEVICE") -> list:
    """Authenticate, TokenUpdate and an Acknowledged report of one device."""
    authenticate = plistlib.dumps(
        {"MessageType": "Authenticate", "UDID": udid, "Topic": "com.apple.mgmt.x"}
    )
    token_update = plistlib.dumps(
        {
            "MessageType": "TokenUpdate",
            "UDID": udid,
            "Topic": "com.apple.mgmt.x",
            "Token": b"token",
            "PushMagic": "magic",
        }
    )
    report = plistlib.dumps({"UDID": udid, "Status": "Acknowledged", "CommandUUID": "C1"})
    return [
        decode_checkin(authenticate),
        decode_checkin(token_update),
        decode_command_report(report),
    ]


class TallyStore:
    def __init__(self) -> None:
        self.tally = 0

    async def retrieve_token_update_tally(self, enrollment_id: str) -> int:
        self.tally += 1
        return self.tally


@pytest_twisted.async_yield_fixture
async def http():
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield HTTPClient(Agent(reactor, pool=pool))
    await pool.closeCachedConnections()


def webhook(receiver: Receiver, http: HTTPClient, clock: Clock, **options) -> WebhookService:
    service = WebhookService(
        receiver.url, http, TallyStore(), hmac_key=HMAC_KEY, clock=clock, **options
    )
    service.startService()
    return service


async def send(service: WebhookService, message) -> None:
    request = MDMRequest(message.enroll_id)
    if hasattr(message, "message_type"):
        await service.checkin(request, message)
    else:
        await service.command_report(request, message)


class RetryWatch:
    """Hands out the webhook's "retrying" log events: it is then waiting on its clock."""

    def __init__(self) -> None:
        self._retries: DeferredQueue = DeferredQueue()
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict) -> None:
        if "delay" in event and "attempt" in event:
            reactor.callLater(0, self._retries.put, event)

    def next_retry(self) -> Deferred:
        return self._retries.get()

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._observe)


@pytest.fixture
def watch():
    watch = RetryWatch()
    yield watch
    watch.close()


def dropped(log_events: list[dict]) -> list[str]:
    return [e["event_id"] for e in log_events if "webhook event dropped" in e.get("log_format", "")]


@pytest_twisted.ensureDeferred
async def test_receiver_down_then_up_gets_every_event_in_order(
    receiver: Receiver, http: HTTPClient, log_events: list[dict], watch: RetryWatch
) -> None:
    clock = Clock()
    service = webhook(receiver, http, clock, first_backoff=0.5, max_attempts=10)
    await receiver.go_down()
    for message in messages():
        await send(service, message)
    waited = 0.0
    while waited < 2.0:  # down for 2 s of the webhook's clock
        retry = await watch.next_retry()
        clock.advance(retry["delay"])
        waited += retry["delay"]
    retry = await watch.next_retry()
    await receiver.come_up()
    clock.advance(retry["delay"])
    recorded = await receiver.wait_for(3)
    topics = [json.loads(r.body)["topic"] for r in recorded]
    assert topics == ["mdm.Authenticate", "mdm.TokenUpdate", "mdm.Connect"]
    assert json.loads(recorded[1].body)["checkin_event"]["token_update_tally"] == 1
    assert all(signature_ok(r) for r in recorded)
    assert dropped(log_events) == []
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_attempts_are_bounded_and_the_drop_is_logged(
    receiver: Receiver, http: HTTPClient, log_events: list[dict], watch: RetryWatch
) -> None:
    clock = Clock()
    receiver.answer = Answer(status=503)
    service = webhook(receiver, http, clock, first_backoff=1, max_attempts=3)
    authenticate, token_update, _ = messages()
    await send(service, authenticate)
    await send(service, token_update)
    for expected_delay in (1, 2):  # exponential
        retry = await watch.next_retry()
        assert retry["delay"] == expected_delay
        clock.advance(retry["delay"])
    await receiver.wait_for(3)
    receiver.answer = Answer(status=204)
    recorded = await receiver.wait_for(4)
    assert [json.loads(r.body)["topic"] for r in recorded] == ["mdm.Authenticate"] * 3 + [
        "mdm.TokenUpdate"
    ]
    assert dropped(log_events) == [json.loads(recorded[0].body)["event_id"]]
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_queue_is_bounded(
    receiver: Receiver, http: HTTPClient, log_events: list[dict]
) -> None:
    receiver.hang = True
    service = webhook(receiver, http, Clock(), max_queued=2)
    requests = []
    for udid in ("A", "B", "C", "D"):
        authenticate = messages(udid)[0]
        requests.append(MDMRequest(authenticate.enroll_id))
        await service.checkin(requests[-1], authenticate)
    assert dropped(log_events) == [requests[2].trace_id, requests[3].trace_id]
    await receiver.wait_for(2)
    receiver.release()
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_timeout_counts_as_a_failed_attempt(
    receiver: Receiver, http: HTTPClient, watch: RetryWatch
) -> None:
    clock = Clock()
    receiver.hang = True
    service = webhook(receiver, http, clock, timeout=5, first_backoff=1)
    await send(service, messages()[0])
    await receiver.wait_for(1)
    clock.advance(5)
    retry = await watch.next_retry()
    assert retry["error"] == "no answer within 5s"
    receiver.release()
    clock.advance(retry["delay"])
    await receiver.wait_for(2)
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_shutdown_waits_briefly_then_drops(
    receiver: Receiver, http: HTTPClient, log_events: list[dict]
) -> None:
    clock = Clock()
    receiver.hang = True
    service = webhook(receiver, http, clock, shutdown_grace=3, timeout=60)
    request = MDMRequest(messages()[0].enroll_id)
    await service.checkin(request, messages()[0])
    await service.command_report(request, messages()[2])
    await receiver.wait_for(1)
    stopped = service.stopService()
    clock.advance(2.9)
    assert not stopped.called
    clock.advance(0.1)
    await stopped
    assert dropped(log_events) == [request.trace_id, request.trace_id]
    # After stopping, new events are refused (and logged), not queued.
    await service.checkin(request, messages()[0])
    assert len(dropped(log_events)) == 3


@pytest_twisted.ensureDeferred
async def test_shutdown_lets_pending_deliveries_finish(
    receiver: Receiver, http: HTTPClient, log_events: list[dict]
) -> None:
    receiver.hang = True
    service = webhook(receiver, http, Clock())
    await send(service, messages()[0])
    await receiver.wait_for(1)
    stopped = service.stopService()
    receiver.release()
    await stopped
    assert dropped(log_events) == []


# Multi-service: the core answers, the others cannot interfere.


@implementer(IMDMService)
class Core:
    def __init__(self, error: Exception | None = None):
        self.error = error

    async def checkin(self, request, message):
        if self.error:
            raise self.error
        return b"core answer"

    async def command_report(self, request, report):
        return None


@implementer(IMDMService)
class Listener:
    def __init__(self, outcome: str):
        self.outcome = outcome
        self.seen: list = []
        self.never: Deferred = Deferred()

    async def checkin(self, request, message):
        self.seen.append(message)
        if self.outcome == "fail":
            raise RuntimeError("listener broke")
        if self.outcome == "hang":
            await self.never
        return b"listener answer"

    async def command_report(self, request, report):
        self.seen.append(report)
        raise RuntimeError("listener broke")


@pytest_twisted.ensureDeferred
async def test_multi_answers_with_the_core_only(log_events: list[dict]) -> None:
    failing, hanging = Listener("fail"), Listener("hang")
    multi = MultiMDMService(Core(), failing, hanging)
    authenticate, _, report = messages()
    request = MDMRequest(authenticate.enroll_id)
    assert await multi.checkin(request, authenticate) == b"core answer"
    assert await multi.command_report(request, report) is None
    assert failing.seen == [authenticate, report] and hanging.seen == [authenticate, report]
    assert any("Listener failed" in str(e.get("log_format", "")) or e.get("service") == "Listener"
               for e in log_events if e.get("log_failure"))
    hanging.never.callback(None)


@pytest_twisted.ensureDeferred
async def test_multi_returns_core_errors_and_still_runs_the_others() -> None:
    listener = Listener("ok")
    multi = MultiMDMService(Core(HTTPStatusError("gone", 410)), listener)
    authenticate = messages()[0]
    with pytest.raises(HTTPStatusError) as raised:
        await multi.checkin(MDMRequest(authenticate.enroll_id), authenticate)
    assert raised.value.status == 410
    assert listener.seen == [authenticate]


def big_report(udid: str, size: int):
    """An Acknowledged report carrying ``size`` bytes (an InstalledApplicationList, say)."""
    return decode_command_report(
        plistlib.dumps(
            {"UDID": udid, "Status": "Acknowledged", "CommandUUID": "BIG", "Data": b"\0" * size}
        )
    )


def drops_counted(reason: str) -> float:
    """The /metrics sample of nanomdm_webhook_drops_total for ``reason``."""
    text = exposition()[0].decode()
    line = f'nanomdm_webhook_drops_total{{reason="{reason}"}} '
    return sum(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


@pytest.mark.parametrize("outage", ["down", "black-holed"])
@pytest_twisted.ensureDeferred
async def test_queue_is_bounded_in_bytes_while_the_receiver_is_away(
    receiver: Receiver, http: HTTPClient, log_events: list[dict], watch: RetryWatch, outage
) -> None:
    clock = Clock()
    bound = 1 << 20
    counted_before = drops_counted("queue_bytes_full")
    if outage == "down":
        await receiver.go_down()
    else:
        receiver.hang = True
    service = webhook(
        receiver, http, clock, max_queued_bytes=bound, timeout=10, first_backoff=1,
        max_attempts=20,
    )  # fmt: skip
    requests = []
    for number in range(8):  # about 360 KB of JSON each: two fit
        report = big_report(f"DEVICE-{number % 2}", 200_000)
        requests.append(MDMRequest(report.enroll_id))
        await service.command_report(requests[-1], report)
        assert 0 < service.queued_bytes <= bound
    assert dropped(log_events) == [r.trace_id for r in requests[2:]]
    assert drops_counted("queue_bytes_full") - counted_before == 6
    if outage == "black-holed":
        await receiver.wait_for(2)
        clock.advance(10)  # both posts time out
    retries = [await watch.next_retry() for _ in range(2)]  # one per enrollment
    assert [r["delay"] for r in retries] == [1, 1]
    # Back: what was kept is delivered, and the queue has room again.
    if outage == "down":
        await receiver.come_up()
    else:
        receiver.release()
    clock.advance(1)
    offset = len(receiver.requests)
    recorded = await receiver.wait_for(offset + 2)
    delivered = {json.loads(r.body)["event_id"] for r in recorded[offset:]}
    assert delivered == {requests[0].trace_id, requests[1].trace_id}
    await service.stopService()
    assert service.queued_bytes == 0
    service.startService()
    report = big_report("DEVICE-0", 200_000)
    again = MDMRequest(report.enroll_id)
    await service.command_report(again, report)
    recorded = await receiver.wait_for(offset + 3)
    assert json.loads(recorded[-1].body)["event_id"] == again.trace_id
    await service.stopService()
    assert len(dropped(log_events)) == 6 and service.queued_bytes == 0
