"""
The APNs client when APNs misbehaves: unreachable, slow, resetting
streams, and GOAWAY storms.  Every push gets a result (an answer or a
clear error), within the push timeout, and the client keeps nothing of a
push once its result is out.
"""

import pytest_twisted
from h2.errors import ErrorCodes
from twisted.internet import reactor, task

from nanomdm_tw.push.apns import APNsClient, PushResult

from .fake_apns import TOPIC, ca, fake, push_certs, token  # noqa: F401
from .serving import free_port

PUSHES = 40


@pytest_twisted.async_yield_fixture
async def make_client(fake, ca, push_certs):
    clients = []

    def build(**options):
        options = {"base_url": fake.base_url, "extra_ca_pem": ca.cert_pem} | options
        client = APNsClient(reactor, *push_certs[TOPIC], **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


def batch() -> list[tuple[bytes, str]]:
    return [(token(n), f"magic-{n}") for n in range(PUSHES)]


def assert_holds_nothing(client: APNsClient) -> None:
    """No push, deadline or timer outlives its result."""
    assert client._outstanding == 0
    assert not client._queue and not client._deadlines
    assert client._deadline_call is None


@pytest_twisted.ensureDeferred
async def test_nothing_listening_fails_every_push_with_a_reason(make_client):
    client = make_client(base_url=f"https://127.0.0.1:{free_port()}")

    results = await client.push_many(batch(), TOPIC)

    assert len(results) == PUSHES
    assert all(r.status is None for r in results)
    assert all(r.reason.startswith("cannot connect to APNs") for r in results)
    assert client.connections_made == 1
    assert_holds_nothing(client)


@pytest_twisted.ensureDeferred
async def test_slow_apns_answers_every_push_on_one_connection(fake, make_client):
    fake.answer_delay = 0.5
    fake.max_concurrent_streams = 8
    client = make_client(timeout=30)

    results = await client.push_many(batch(), TOPIC)

    assert [r.status for r in results] == [200] * PUSHES
    assert client.connections_made == 1
    assert_holds_nothing(client)


@pytest_twisted.ensureDeferred
async def test_slower_than_the_timeout_is_an_error_per_push(fake, make_client):
    fake.answer_delay = 30  # real seconds: later than the test clock's deadline
    clock = task.Clock()
    client = make_client(timeout=10, clock=clock)
    pending = client.push_many(batch(), TOPIC)
    await fake.wait_for_requests(PUSHES)

    clock.advance(10)
    results = await pending

    assert results == [PushResult(reason="no answer from APNs in 10 s")] * PUSHES
    assert_holds_nothing(client)


@pytest_twisted.ensureDeferred
async def test_reset_streams_fail_their_pushes_without_resending(fake, make_client):
    fake.reset_code = ErrorCodes.INTERNAL_ERROR
    client = make_client()

    results = await client.push_many(batch(), TOPIC)

    # A reset stream may have been processed: it is never sent twice.
    assert {r.reason for r in results} == {"APNs reset the stream: INTERNAL_ERROR"}
    assert len(fake.requests) == PUSHES
    assert client.connections_made == 1

    fake.reset_code = None  # the same connection serves on
    assert (await client.push(token(99), "m", TOPIC)).status == 200
    assert client.connections_made == 1
    assert_holds_nothing(client)


@pytest_twisted.ensureDeferred
async def test_refused_streams_are_retried_a_bounded_number_of_times(fake, make_client):
    fake.reset_code = ErrorCodes.REFUSED_STREAM
    client = make_client()

    results = await client.push_many(batch(), TOPIC)

    assert {r.reason for r in results} == {"APNs did not take the push in 3 tries"}
    assert len(fake.requests) == 3 * PUSHES
    assert_holds_nothing(client)


@pytest_twisted.ensureDeferred
async def test_goaway_storm_gives_up_after_a_few_connections(fake, make_client):
    fake.goaway_storm = True
    client = make_client()

    results = await client.push_many(batch(), TOPIC)

    assert len(results) == PUSHES
    assert all(r.status is None for r in results)
    assert all("GOAWAY" in r.reason for r in results), results[0]
    assert "3 connections in a row ended without an answer" in results[0].reason
    assert client.connections_made <= 3
    assert fake.requests == []
    assert_holds_nothing(client)

    fake.goaway_storm = False  # APNs well again: the next push gets through
    assert (await client.push(token(99), "m", TOPIC)).status == 200
