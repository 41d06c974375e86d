"""The APNs client against the fake APNs, over real TLS HTTP/2 on loopback."""

import json

import pytest_twisted
from twisted.internet import reactor, task

from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.push.apns import APNsClient, PushResult

from .fake_apns import OTHER_TOPIC, TOPIC, ca, fake, push_certs, token  # noqa: F401


@pytest_twisted.async_yield_fixture
async def make_client(fake, ca, push_certs):
    """Builds clients for the fake (closed at teardown, before the fake stops)."""
    clients = []

    def build(topic=TOPIC, **options):
        options = {"base_url": fake.base_url, "extra_ca_pem": ca.cert_pem} | options
        client = APNsClient(reactor, *push_certs[topic], **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


def never_answering(fake, make_client):
    """A client timing out after 10 s on a test clock, and a fake that never answers."""
    fake.answer_delay = None
    clock = task.Clock()
    return make_client(timeout=10, clock=clock), clock


@pytest_twisted.ensureDeferred
async def test_single_push_sends_apples_request(fake, make_client):
    client = make_client()

    result = await client.push(token(1), "magic-1", TOPIC)

    assert result.status == 200 and result.apns_id
    [request] = fake.requests
    assert request.path == "/3/device/" + token(1).hex()
    assert request.headers[":method"] == "POST"
    assert request.headers["apns-push-type"] == "mdm"
    assert request.headers["apns-topic"] == TOPIC
    assert request.headers["apns-priority"] == "10"
    assert "apns-expiration" not in request.headers
    assert json.loads(request.body) == {"mdm": "magic-1"}
    assert request.client_topic == TOPIC


@pytest_twisted.ensureDeferred
async def test_expiration_is_sent_as_unix_time(fake, make_client):
    clock = task.Clock()
    clock.advance(1_700_000_000)
    client = make_client(expiration=3600, clock=clock)

    await client.push(token(1), "magic-1", TOPIC)

    assert fake.requests[0].headers["apns-expiration"] == str(1_700_003_600)


@pytest_twisted.ensureDeferred
async def test_many_pushes_share_one_connection_within_stream_limit(fake, make_client):
    fake.max_concurrent_streams = 10
    client = make_client()

    results = await client.push_many([(token(n), f"m{n}") for n in range(500)], TOPIC)

    assert [r.status for r in results] == [200] * 500
    assert len({r.apns_id for r in results}) == 500
    assert fake.peak_open_streams == 10
    assert client.connections_made == 1 and fake.connections_accepted == 1
    assert sorted(r.token_hex for r in fake.requests) == sorted(
        token(n).hex() for n in range(500)
    )


@pytest_twisted.ensureDeferred
async def test_bodies_wait_for_the_flow_control_window(fake, make_client):
    fake.initial_window_size = 8
    client = make_client()
    magics = [f"a-push-magic-longer-than-the-window-{n}" for n in range(20)]

    results = await client.push_many(
        [(token(n), magic) for n, magic in enumerate(magics)], TOPIC
    )

    assert [r.status for r in results] == [200] * 20
    assert sorted(json.loads(r.body)["mdm"] for r in fake.requests) == sorted(magics)


@pytest_twisted.ensureDeferred
async def test_two_topics_use_their_own_certificate_and_connection(fake, make_client):
    first, second = make_client(TOPIC), make_client(OTHER_TOPIC)

    results = [
        await first.push(token(1), "m1", TOPIC),
        await second.push(token(2), "m2", OTHER_TOPIC),
        await first.push(token(3), "m3", TOPIC),
    ]

    assert [r.status for r in results] == [200, 200, 200]
    assert [(r.headers["apns-topic"], r.client_topic) for r in fake.requests] == [
        (TOPIC, TOPIC),
        (OTHER_TOPIC, OTHER_TOPIC),
        (TOPIC, TOPIC),
    ]
    assert [r.connection for r in fake.requests] == [1, 2, 1]


@pytest_twisted.ensureDeferred
async def test_rejections_map_to_status_and_reason(fake, make_client):
    fake.unregistered.add(token(1).hex())
    fake.bad_tokens.add(token(2).hex())
    client = make_client()

    gone, bad, fine = await client.push_many(
        [(token(1), "m"), (token(2), "m"), (token(3), "m")], TOPIC
    )

    assert (gone.status, gone.reason) == (410, "Unregistered")
    assert (bad.status, bad.reason) == (400, "BadDeviceToken")
    assert fine.status == 200 and fine.apns_id


@pytest_twisted.ensureDeferred
async def test_goaway_mid_batch_retries_unprocessed_pushes(fake, make_client):
    fake.max_concurrent_streams = 10
    fake.goaway_after = 25
    client = make_client()

    results = await client.push_many([(token(n), f"m{n}") for n in range(60)], TOPIC)

    assert [r.status for r in results] == [200] * 60
    connections = [r.connection for r in fake.requests]
    assert connections.count(1) == 25 and connections.count(2) == 25
    assert client.connections_made == 3
    # Nothing was delivered twice: every token reached the server exactly once.
    assert sorted(r.token_hex for r in fake.requests) == sorted(
        token(n).hex() for n in range(60)
    )


@pytest_twisted.ensureDeferred
async def test_silent_connection_is_replaced_after_a_timeout(fake, make_client):
    client, clock = never_answering(fake, make_client)
    lost = client.push(token(1), "m", TOPIC)
    await fake.wait_for_requests(1)
    clock.advance(10)
    await lost

    fake.answer_delay = 0
    result = await client.push(token(2), "m", TOPIC)

    assert result.status == 200
    assert [r.connection for r in fake.requests] == [1, 2]


@pytest_twisted.ensureDeferred
async def test_connection_closed_by_apns_is_reopened_for_the_next_push(
    fake, make_client
):
    fake.goaway_after = 1
    client = make_client()

    first = await client.push(token(1), "m", TOPIC)
    second = await client.push(token(2), "m", TOPIC)

    assert (first.status, second.status) == (200, 200)
    assert [r.connection for r in fake.requests] == [1, 2]
    assert client.connections_made == 2


@pytest_twisted.ensureDeferred
async def test_untrusted_server_fails_the_push_without_retrying(fake, make_client):
    client = make_client(extra_ca_pem=DevelopmentCA.create().cert_pem)

    results = await client.push_many([(token(1), "m"), (token(2), "m")], TOPIC)

    assert all(r.status is None and r.reason for r in results)
    assert client.connections_made == 1
    assert fake.requests == []


@pytest_twisted.ensureDeferred
async def test_unreachable_apns_is_a_push_error(fake, make_client):
    client = make_client()
    await fake.stop()

    result = await client.push(token(1), "m", TOPIC)

    assert result.status is None
    assert result.reason.startswith("cannot connect to APNs")
    await fake.start()


@pytest_twisted.ensureDeferred
async def test_pushes_time_out_at_their_own_deadlines(fake, make_client):
    client, clock = never_answering(fake, make_client)

    early = client.push(token(1), "m", TOPIC)
    await fake.wait_for_requests(1)
    clock.advance(5)
    late = client.push_many([(token(2), "m"), (token(3), "m")], TOPIC)
    await fake.wait_for_requests(3)
    clock.advance(4)
    assert not early.called
    clock.advance(1)
    assert await early == PushResult(reason="no answer from APNs in 10 s")
    assert not late.called
    clock.advance(5)

    assert [r.reason for r in await late] == ["no answer from APNs in 10 s"] * 2


@pytest_twisted.ensureDeferred
async def test_push_timed_out_in_the_queue_is_never_sent(fake, make_client):
    fake.max_concurrent_streams = 1
    client, clock = never_answering(fake, make_client)
    both = client.push_many([(token(1), "m"), (token(2), "m")], TOPIC)
    await fake.wait_for_requests(1)
    clock.advance(10)
    assert [r.reason for r in await both] == ["no answer from APNs in 10 s"] * 2

    fake.answer_delay = 0
    result = await client.push(token(3), "m", TOPIC)

    assert result.status == 200
    assert [r.token_hex for r in fake.requests] == [token(1).hex(), token(3).hex()]


@pytest_twisted.ensureDeferred
async def test_a_long_lived_connection_forgets_old_closed_streams(fake, make_client):
    client = make_client()

    for batch in range(3):
        pushes = [(token(n), f"m{n}") for n in range(batch * 1000, (batch + 1) * 1000)]
        results = await client.push_many(pushes, TOPIC)
        assert [r.status for r in results] == [200] * 1000

    assert client.connections_made == 1
    h2 = client._connection._h2
    # 3,000 streams closed on one connection; only the newest are remembered.
    assert len(h2._closed_streams) == h2.MAX_CLOSED_STREAMS == 2048
