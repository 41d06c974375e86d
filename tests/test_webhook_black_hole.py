"""
A webhook receiver black-holed: it accepts TCP connections and reads
nothing, as a frozen or partitioned process does.

Devices and the API are served meanwhile; events wait and are retried,
then delivered, in order per enrollment, once the receiver is back; and
the connections held open to the black hole stay bounded however many
enrollments have events waiting.
"""

import json
from collections import defaultdict
from pathlib import Path

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater

from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.services.webhook import MAX_CONCURRENT_DELIVERIES, WebhookService
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from .receivers import Receiver
from .serving import serve
from .test_webhook import dropped, http, messages, receiver, webhook  # noqa: F401

ENROLLMENTS = 150


async def advance(clock: Clock, seconds: float, settled=lambda: True) -> None:
    """
    Move the webhook's clock on a second at a time, letting the real sockets
    work: each step waits (up to a real second) for ``settled()``, lest a
    timeout on the clock overtake a connection still being made.
    """
    for _ in range(int(seconds)):
        for _ in range(200):
            await deferLater(reactor, 0.005)
            if settled():
                break
        clock.advance(1)


def connected(service: WebhookService, receiver: Receiver):
    """Whether every post in flight has its connection open at the black hole."""
    return lambda: (
        MAX_CONCURRENT_DELIVERIES - service._slots.tokens == len(receiver._factory.protocols)
    )


@pytest_twisted.ensureDeferred
async def test_three_minutes_of_black_hole_then_every_event_arrives(
    receiver: Receiver, http: HTTPClient, log_events: list[dict]  # noqa: F811
) -> None:
    # Clock time: the webhook's default timeout (10 s) and backoff (1 s doubling
    # to 60 s, 8 attempts) spread its attempts over a bit more than 3 minutes.
    clock = Clock()
    service = webhook(receiver, http, clock)
    receiver.black_hole()
    sent: dict[str, list[str]] = defaultdict(list)
    for number in range(ENROLLMENTS):
        for message in messages(f"DEVICE-{number}")[:2]:
            request = MDMRequest(message.enroll_id)
            await service.checkin(request, message)
            sent[message.enroll_id.id].append(request.trace_id)
    await advance(clock, 180, connected(service, receiver))
    receiver.wake()
    await advance(clock, 200)
    for _ in range(200):  # the last deliveries may still be on the wire
        if len(receiver.requests) >= 2 * ENROLLMENTS:
            break
        await deferLater(reactor, 0.05)
    recorded = receiver.requests
    delivered: dict[str, list[str]] = defaultdict(list)
    for event in (json.loads(r.body) for r in recorded):
        events = delivered[event["checkin_event"]["udid"]]
        # At least once: a request the webhook gave up on may still be read
        # by the waking receiver, and it comes again (receivers dedupe by ID).
        if not events or events[-1] != event["event_id"]:
            events.append(event["event_id"])
    assert delivered == sent  # every event, in order per enrollment
    assert dropped(log_events) == []
    # One connection per enrollment would be 150 sockets held by the black hole.
    assert receiver.peak_connections <= MAX_CONCURRENT_DELIVERIES
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_devices_and_the_api_are_served_while_the_receiver_is_a_black_hole(
    tmp_path: Path, receiver: Receiver  # noqa: F811
) -> None:
    # Real time, a few seconds: the receiver wakes before the webhook's 10 s timeout.
    receiver.black_hole()
    async with serve(tmp_path, webhook_url=receiver.url) as server:
        devices = [
            SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
            for _ in range(20)
        ]
        for d in devices:
            await d.enroll()
        ids = [d.id for d in devices]
        command = make_command("ProfileList", "CMD-1")
        answer = await enqueue(server.http, server.url, server.api_key, ids, command)
        assert answer.code == 200
        for d in devices:
            assert (await d.idle()).plist["CommandUUID"] == "CMD-1"
            assert (await d.report("Acknowledged", "CMD-1")).code == 200
        answer = await server.http.get(server.url + "/v1/enrollments", auth=server.api_auth())
        await answer.content()
        assert answer.code == 200
        assert receiver.requests == []
        receiver.wake()
        # Authenticate, TokenUpdate and the Acknowledged report of every device.
        recorded = await receiver.wait_for(4 * len(devices))
    topics = [json.loads(r.body)["topic"] for r in recorded]
    assert topics.count("mdm.Connect") == 2 * len(devices)  # the Idle and the report
    assert topics.count("mdm.Authenticate") == len(devices)
