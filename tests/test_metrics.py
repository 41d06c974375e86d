"""
/metrics, /healthz and /readyz on real loopback servers: the counters move
with real check-ins, reports, API calls, pushes (fake APNs over TLS) and
webhook deliveries (a real receiver); readiness follows a private MariaDB
that stops and that freezes; --metrics-listen moves the three elsewhere.
"""

from pathlib import Path

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task, threads
from twisted.internet.task import Clock
from zope.interface import implementer

from nanomdm_tw.metrics.processes import exposition
from nanomdm_tw.metrics.queuedepth import QueueDepthSampler, queue_depth_sampler
from nanomdm_tw.server import NanoMDMService
from nanomdm_tw.settings import Settings, StorageSpec
from nanomdm_tw.storage.inspection import IInspectionStore
from nanomdm_tw.tools.sim import DEFAULT_TOPIC, SimulatedDevice, enqueue, make_command
from nanomdm_tw.tools.sim import make_identity

from .fake_apns import ca, fake, issue_push_cert  # noqa: F401 (fixtures)
from .mysqlserver import PrivateServer, ThrowawayDatabase
from .receivers import Answer, Receiver
from .serving import serve
from .test_webhook import RetryWatch, http, messages, receiver, send, watch  # noqa: F401
from .test_webhook import webhook


def parse(text: str) -> dict[tuple, float]:
    """Every sample of the Prometheus text: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(
        v for (n, items), v in samples.items()
        if n == name and set(labels.items()) <= set(items)
    )  # fmt: skip


async def scrape(client, url: str) -> dict[tuple, float]:
    answer = await client.get(url + "/metrics")
    assert answer.code == 200
    assert answer.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    return parse((await answer.content()).decode("utf-8"))


async def get(client, url: str) -> tuple[int, bytes]:
    answer = await client.get(url)
    return answer.code, await answer.content()


async def eventually(condition, what: str, seconds: float = 30.0):
    for _ in range(int(seconds * 10)):
        result = await condition()
        if result:
            return result
        await task.deferLater(reactor, 0.1)
    raise AssertionError("timed out waiting for " + what)


def requests(samples, endpoint: str, message_type: str = "", status: str = "200") -> float:
    return value(
        samples, "nanomdm_http_requests_total",
        endpoint=endpoint, message_type=message_type, status=status,
    )  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_counters_move_with_real_traffic(
    tmp_path: Path, ca, fake, receiver: Receiver  # noqa: F811
) -> None:
    (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
    settings = dict(
        apns_url=fake.base_url,
        apns_ca=str(tmp_path / "apns-ca.pem"),
        webhook_url=receiver.url + "/hook",
    )
    async with serve(tmp_path, **settings) as server:
        client, url = server.http, server.url
        before = await scrape(client, url)
        cert, key = issue_push_cert(ca, DEFAULT_TOPIC)
        answer = await client.put(
            url + "/v1/pushcert", data=cert + key, auth=server.api_auth()
        )
        assert answer.code == 200
        device = SimulatedDevice.create(url, make_identity(server.ca), http=client)
        await device.enroll()
        answer = await client.put(
            f"{url}/v1/enqueue/{device.id}", data=make_command("ProfileList", "CMD-M"),
            auth=server.api_auth(),
        )  # fmt: skip
        assert answer.code == 200
        assert (await device.idle()).plist["CommandUUID"] == "CMD-M"
        assert (await device.report("Acknowledged", "CMD-M")).plist is None
        answer = await client.get(url + "/v1/push/UNKNOWN-ID", auth=server.api_auth())
        assert answer.code == 500  # as NanoMDM: every push of the call failed
        await answer.content()
        answer = await client.get(url + "/v1/push/" + device.id, auth=("nanomdm", "wrong"))
        assert answer.code == 401
        for path in ("/v1/enrollments/", "/v1/queue/"):
            answer = await client.get(url + path + device.id, auth=server.api_auth())
            assert answer.code == 200
            await answer.content()

        async def delivered():
            after = await scrape(client, url)
            moved = value(after, "nanomdm_webhook_deliveries_total") - value(
                before, "nanomdm_webhook_deliveries_total"
            )
            return after if moved == 4 else None

        # Authenticate, TokenUpdate, and two Connect events (Idle, Acknowledged).
        after = await eventually(delivered, "4 webhook deliveries")
    assert len(receiver.requests) == 4

    def moved(name_or_function, *args, **labels) -> float:
        if callable(name_or_function):
            return name_or_function(after, *args, **labels) - name_or_function(
                before, *args, **labels
            )
        return value(after, name_or_function, **labels) - value(
            before, name_or_function, **labels
        )

    assert moved(requests, "/mdm", "Authenticate") == 1
    assert moved(requests, "/mdm", "TokenUpdate") == 1
    assert moved(requests, "/mdm", "report:Idle") == 1
    assert moved(requests, "/mdm", "report:Acknowledged") == 1
    assert moved(requests, "/v1/enqueue") == 1
    assert moved(requests, "/v1/pushcert") == 1
    assert moved(requests, "/v1/push", status="500") == 1
    assert moved(requests, "/v1/enrollments") == 1  # /v1/enrollments/<id>
    assert moved(requests, "/v1/queue") == 1
    assert moved("nanomdm_http_request_duration_seconds_count", endpoint="/mdm") == 4
    assert (
        moved("nanomdm_http_request_duration_seconds_bucket", endpoint="/mdm", le="+Inf") == 4
    )
    assert moved("nanomdm_pushes_total", result="success") == 1  # the enqueue's
    assert moved("nanomdm_pushes_total", result="no_push_info") == 1
    assert moved("nanomdm_pushes_total") == 2
    assert fake.requests and fake.requests[0].token_hex == device.push_token.hex()
    # IDs never become label values.
    endpoints = {dict(labels).get("endpoint") for (_, labels) in after}
    assert not any(device.id in (e or "") or "UNKNOWN" in (e or "") for e in endpoints)


@pytest_twisted.ensureDeferred
async def test_webhook_retries_and_drops_are_counted(
    receiver: Receiver, http, watch: RetryWatch  # noqa: F811 (fixtures)
) -> None:
    before = parse(exposition()[0].decode())
    clock = Clock()
    receiver.answer = Answer(status=503)
    service = webhook(receiver, http, clock, first_backoff=1, max_attempts=2, max_queued=1)
    authenticate, token_update, _ = messages()
    await send(service, authenticate)
    await send(service, token_update)  # the queue holds one: dropped
    clock.advance((await watch.next_retry())["delay"])
    await receiver.wait_for(2)
    await service.stopService()
    after = parse(exposition()[0].decode())

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("nanomdm_webhook_retries_total") == 1
    assert moved("nanomdm_webhook_drops_total", reason="queue_full") == 1
    assert moved("nanomdm_webhook_drops_total", reason="attempts_exhausted") == 1
    assert moved("nanomdm_webhook_deliveries_total") == 0


@pytest_twisted.ensureDeferred
async def test_health_and_readiness_on_the_main_listener(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        assert await get(server.http, server.url + "/healthz") == (200, b"ok\n")
        assert await get(server.http, server.url + "/readyz") == (200, b"ok\n")
        samples = await scrape(server.http, server.url)
        assert requests(samples, "/readyz") >= 1
        # Families without a count yet are listed too.
        assert value(samples, "nanomdm_queue_depth") >= 0
        assert ("nanomdm_webhook_retries_total", ()) in samples


@pytest_twisted.ensureDeferred
async def test_metrics_listen_moves_them_to_their_own_listener(tmp_path: Path) -> None:
    async with serve(tmp_path, metrics_listen="tcp:0:interface=127.0.0.1") as server:
        metrics_url = f"http://127.0.0.1:{server.service.metrics_port.getHost().port}"
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await get(server.http, server.url + path))[0] == 404
        assert await get(server.http, metrics_url + "/healthz") == (200, b"ok\n")
        assert await get(server.http, metrics_url + "/readyz") == (200, b"ok\n")
        assert (await get(server.http, metrics_url + "/version"))[0] == 404
        before = await scrape(server.http, metrics_url)
        answer = await server.http.put(
            server.url + "/v1/enqueue/X", data=b"not a plist", auth=server.api_auth()
        )
        assert answer.code == 400
        after = await scrape(server.http, metrics_url)
        assert requests(after, "/v1/enqueue", status="400") == (
            requests(before, "/v1/enqueue", status="400") + 1
        )


def queue_depth() -> float:
    return value(parse(exposition()[0].decode()), "nanomdm_queue_depth")


@pytest_twisted.ensureDeferred
async def test_queue_depth_is_sampled(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        sampler = QueueDepthSampler(server.storage, interval=60)
        sampler.clock = Clock()
        sampler.startService()  # samples at once, then every 60 s of its clock
        try:
            assert queue_depth() == 0
            device = SimulatedDevice.create(
                server.url, make_identity(server.ca), http=server.http
            )
            await device.enroll()
            for uuid in ("CMD-1", "CMD-2"):
                await enqueue(server.http, server.url, server.api_key, [device.id],
                              make_command("ProfileList", uuid))  # fmt: skip
            assert queue_depth() == 0  # not sampled yet
            sampler.clock.advance(60)
            assert queue_depth() == 2
            assert (await device.idle()).plist["CommandUUID"] == "CMD-1"
            await device.report("Acknowledged", "CMD-1")
            sampler.clock.advance(60)
            assert queue_depth() == 1
        finally:
            await sampler.stopService()


def test_a_storage_without_the_inspection_role_is_not_sampled(log_events) -> None:
    @implementer(IInspectionStore)
    class Partial:
        """Declares the role, implements none of it (a storage from embedding code)."""

    assert queue_depth_sampler(Partial()) is None
    warnings = [e for e in log_events if "queue depth not sampled" in e.get("log_format", "")]
    assert len(warnings) == 1
    assert "pending_count() attribute was not provided" in warnings[0]["error"]


@pytest.fixture
def mariadb(tmp_path: Path):
    """A MariaDB of this test's own: stopping the machine's would break everything else."""
    server = PrivateServer(tmp_path / "mariadb")
    server.start()
    yield server
    server.remove()


@pytest_twisted.ensureDeferred
async def test_readyz_follows_the_database(
    tmp_path: Path, mariadb: PrivateServer, log_events
) -> None:
    database = ThrowawayDatabase(server_dsn=mariadb.dsn)
    storage = StorageSpec("mysql", database.dsn + "?timeout=1s", "")
    async with serve(tmp_path, storage=storage) as server:
        client, url = server.http, server.url
        assert await get(client, url + "/readyz") == (200, b"ok\n")
        before = await scrape(client, url)
        sampler = QueueDepthSampler(server.storage, interval=60)
        sampler.clock = Clock()
        sampler.startService()
        await threads.deferToThread(mariadb.stop)
        try:
            assert await get(client, url + "/readyz") == (503, b"storage unreachable\n")
            assert await get(client, url + "/healthz") == (200, b"ok\n")
            during = await scrape(client, url)
            sampler.clock.advance(60)  # fails, is logged, and sampling goes on

            async def sample_failed():
                return any("sampling the queue depth" in e.get("log_format", "")
                           for e in log_events)  # fmt: skip

            await eventually(sample_failed, "the failed sample to be logged")
        finally:
            await threads.deferToThread(mariadb.start)
        errors = "nanomdm_storage_errors_total"
        assert value(during, errors, interaction="_select_one") > value(
            before, errors, interaction="_select_one"
        )

        async def ready():
            return await get(client, url + "/readyz") == (200, b"ok\n")

        await eventually(ready, "ready again after the restart")
        # The sampler kept going: its next sample sees the queue.
        device = SimulatedDevice.create(url, make_identity(server.ca), http=client)
        await device.enroll()
        await enqueue(client, url, server.api_key, [device.id], make_command("ProfileList"))
        sampler.clock.advance(60)

        async def sampled():
            return queue_depth() == 1

        await eventually(sampled, "a sample after the restart")
        await sampler.stopService()
        # Frozen: connections stay open, nothing answers; the probe still answers.
        mariadb.pause()
        try:
            code, body = await get(client, url + "/readyz")
            assert (code, body) == (503, b"storage did not answer within 2s\n")
            assert await get(client, url + "/healthz") == (200, b"ok\n")
        finally:
            mariadb.resume()
        await eventually(ready, "ready again after the freeze")


@pytest_twisted.ensureDeferred
async def test_own_listener_answers_before_the_database_is_up(
    tmp_path: Path, mariadb: PrivateServer, http  # noqa: F811 (fixture)
) -> None:
    database = ThrowawayDatabase(server_dsn=mariadb.dsn)
    await threads.deferToThread(mariadb.stop)
    service = NanoMDMService(
        Settings(
            listen="tcp:0:interface=127.0.0.1",
            metrics_listen="tcp:0:interface=127.0.0.1",
            dev=True,
            data_dir_override=str(tmp_path / "data"),
            storage=StorageSpec("mysql", database.dsn + "?timeout=1s", ""),
        ),
        reactor,
    )
    service.startService()
    try:

        async def listening():
            return service.metrics_port is not None

        await eventually(listening, "the metrics listener")
        url = f"http://127.0.0.1:{service.metrics_port.getHost().port}"
        assert await get(http, url + "/healthz") == (200, b"ok\n")
        assert await get(http, url + "/readyz") == (503, b"starting: storage not open yet\n")
        assert not service.ready.called  # still trying to reach the database
        await threads.deferToThread(mariadb.start)
        await service.ready
        assert await get(http, url + "/readyz") == (200, b"ok\n")
    finally:
        await service.stopService()
