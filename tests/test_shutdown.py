"""
Shut-down and crashes of a real daemon process, on SQLite and on MariaDB.

SIGTERM: requests under way (enqueues waiting on a slow APNs) are answered
200, new connections are refused, batched last-seen times and pending
webhook events are written out, and the process (with its workers) exits 0
within the grace.  SIGKILL mid-load: after a restart, everything the server
answered 200 for is there.
"""

import base64
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, key_pem
from nanomdm_tw.storage.sqlite import database_path
from nanomdm_tw.tools.fake_apns import FakeAPNs
from nanomdm_tw.tools.sim import DEFAULT_TOPIC, SimulatedDevice, make_command, make_identity
from .mysqlserver import ThrowawayDatabase
from .serving import free_port

ROOT = Path(__file__).resolve().parent.parent
API = ("nanomdm", "shutdown-test")
GRACE = 20  # seconds; the slow pushes take PUSH_DELAY, far less


class Backend:
    """Where the daemon keeps its data, and a way to look at it from the test."""

    def __init__(self, name: str, tmp_path: Path):
        self.name = name
        self.database = ThrowawayDatabase() if name == "mysql" else None
        self.path = tmp_path / "db"

    @property
    def flags(self) -> list[str]:
        if self.database is not None:
            return ["-storage", "mysql", "-storage-dsn", self.database.dsn]
        return ["-storage", "sqlite", "-storage-dsn", str(self.path)]

    def query(self, sql: str, *args) -> list[tuple]:
        if self.database is not None:
            return self.database.query(sql, *args)
        with sqlite3.connect(database_path(str(self.path))) as connection:
            return connection.execute(sql.replace("%s", "?"), args).fetchall()

    def drop(self) -> None:
        if self.database is not None:
            self.database.drop()


@pytest.fixture(params=["sqlite", "mysql"])
def backend(request, tmp_path):
    chosen = Backend(request.param, tmp_path)
    yield chosen
    chosen.drop()


class WebhookReceiver(Resource):
    """Answers each event after ``delay`` seconds, so that some are pending at SIGTERM."""

    isLeaf = True

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.events = 0

    def render_POST(self, request):
        def answer():
            self.events += 1
            request.finish()

        reactor.callLater(self.delay, answer)
        return NOT_DONE_YET


class Daemon:
    """``nanomdm-tw`` in a subprocess, with a development CA the test shares."""

    def __init__(self, tmp_path: Path, backend: Backend, apns: FakeAPNs, *flags: str):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "server.log"
        self.argv = [
            sys.executable, "-m", "nanomdm_tw.cli", "-dev", "-api", API[1],
            "-listen", f"127.0.0.1:{self.port}", *backend.flags,
            "-apns-url", apns.base_url, "-apns-ca", str(tmp_path / "ca.pem"), *flags,
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp_path,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )  # fmt: skip

    async def wait_until_serving(self, http: HTTPClient) -> None:
        for _ in range(300):
            assert self.process.poll() is None, self.log.read_text()
            try:
                response = await http.get(self.url + "/version")
                await response.content()
                return
            except Exception:
                await task.deferLater(reactor, 0.1)
        raise AssertionError("the server did not answer:\n" + self.log.read_text())

    async def exit_status(self, seconds: float) -> int | None:
        """The exit status once the process is gone, None if it is still there after ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return self.process.returncode
            await task.deferLater(reactor, 0.05)
        return None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest_twisted.async_yield_fixture
async def world(tmp_path):
    """A CA the server and the devices share (written where --dev finds it), a fake APNs, HTTP."""
    ca = DevelopmentCA.create()
    ca.save(tmp_path / "db" / "devca")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    apns = FakeAPNs(reactor, ca)
    await apns.start()
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield ca, apns, HTTPClient(Agent(reactor, pool=pool))
    await pool.closeCachedConnections()
    await apns.stop()


async def upload_push_cert(http: HTTPClient, daemon: Daemon, ca: DevelopmentCA) -> None:
    cert, key = ca.issue_push_certificate(DEFAULT_TOPIC)
    response = await http.put(daemon.url + "/v1/pushcert", data=cert_pem(cert) + key_pem(key), auth=API)
    assert response.code == 200, await response.text()


async def enqueue(http: HTTPClient, daemon: Daemon, enrollment_id: str, command: bytes) -> int:
    response = await http.put(f"{daemon.url}/v1/enqueue/{enrollment_id}", data=command, auth=API)
    await response.content()
    return response.code


class RawClient(Protocol):
    """An HTTP/1.1 client on one connection: what it received, and when it closed."""

    def __init__(self):
        self.answer = b""
        self.closed: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.answer += data

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(self.answer)


async def connect(daemon: "Daemon") -> RawClient:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.port), RawClient())


async def start_slow_upload(daemon: "Daemon", enrollment_id: str, command: bytes) -> RawClient:
    """A request whose body is half sent."""
    client = await connect(daemon)
    auth = base64.b64encode(":".join(API).encode()).decode()
    client.transport.write(
        f"PUT /v1/enqueue/{enrollment_id}?nopush=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Basic {auth}\r\nContent-Length: {len(command)}\r\n\r\n".encode()
        + command[: len(command) // 2]
    )
    return client


async def connection_refused(http: HTTPClient, url: str) -> bool:
    try:
        response = await http.get(url + "/version")
        await response.content()
    except Exception:
        return True
    return False


@pytest_twisted.ensureDeferred
async def test_sigterm_finishes_requests_under_way_and_exits_0(tmp_path, backend, world):
    ca, apns, http = world
    apns.answer_delay = 3.0  # every enqueue below waits this long for its push
    receiver = WebhookReceiver(delay=0.3)
    webhook_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(receiver)
    )
    # On MariaDB a worker process serves too: it must stop the same way.
    workers = ["-workers", "2"] if backend.name == "mysql" else []
    daemon = Daemon(
        tmp_path, backend, apns, "-shutdown-grace", f"{GRACE}s", *workers,
        "-webhook-url", f"http://127.0.0.1:{webhook_port.getHost().port}/events",
    )  # fmt: skip
    daemon.start()
    try:
        await daemon.wait_until_serving(http)
        while workers and daemon.log.read_text().count("nanomdm-tw listening on") < 2:
            await task.deferLater(reactor, 0.1)  # the worker serves too
        await upload_push_cert(http, daemon, ca)
        devices = [SimulatedDevice.create(daemon.url, make_identity(ca), http=http) for _ in range(3)]
        for device in devices:
            await device.enroll()
        backend.query("UPDATE enrollments SET last_seen_at = '2000-01-01 00:00:00'")
        for device in devices:
            assert (await device.idle()).code == 200  # seen now: batched, not yet written
        events_answered = 3 * len(devices)  # Authenticate, TokenUpdate, Idle
        commands = [make_command("DeviceInformation", Queries=["OSVersion"]) for _ in devices]
        under_way = [
            Deferred.fromCoroutine(enqueue(http, daemon, device.id, command))
            for device, command in zip(devices, commands)
        ]
        # And one client still sending its request's body.
        slow_command = make_command("ProfileList")
        slow = await start_slow_upload(daemon, devices[0].id, slow_command)
        # And a keep-alive connection, idle after its first request.
        idle = await connect(daemon)
        idle.transport.write(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while b"\r\n\r\n" not in idle.answer:
            await task.deferLater(reactor, 0.05)
        await apns.wait_for_requests(len(devices))  # every enqueue is waiting for APNs
        daemon.process.send_signal(signal.SIGTERM)
        await idle.closed
        idle_closed_first = not any(d.called for d in under_way)
        refused = False
        while not refused and not all(d.called for d in under_way):
            refused = await connection_refused(http, daemon.url)
        slow.transport.write(slow_command[len(slow_command) // 2 :])
        slow_answer = await slow.closed
        answers = await DeferredList(under_way, consumeErrors=True)
        status = await daemon.exit_status(GRACE)
    finally:
        daemon.kill()
        await webhook_port.stopListening()
    log = daemon.log.read_text()
    assert refused, "a new connection was accepted during shut-down"
    assert idle_closed_first, "the idle connection stayed open until the requests were done"
    assert answers == [(True, 200)] * len(devices)
    assert slow_answer.startswith(b"HTTP/1.1 200 "), slow_answer
    assert b"\r\nConnection: close\r\n" in slow_answer
    assert status == 0, log
    assert "Traceback" not in log and "requests cut" not in log and "dropping" not in log
    assert receiver.events == events_answered
    if workers:  # the worker stopped as the first process did, and was waited for
        assert log.count("nanomdm-tw stopped") == 2 and "worker 1: " in log
    queued = backend.query("SELECT COUNT(*) FROM enrollment_queue")
    assert queued == [(len(devices) + 1,)]
    stale = backend.query("SELECT id FROM enrollments WHERE last_seen_at < '2001-01-01'")
    assert stale == []


class Load:
    """Simulated devices enrolling and answering commands, and an API client enqueueing."""

    def __init__(self, http: HTTPClient, daemon: Daemon, ca: DevelopmentCA):
        self.http = http
        self.daemon = daemon
        self.ca = ca
        self.running = True
        self.enrolled: list[SimulatedDevice] = []
        self.queued: set[tuple[str, str]] = set()  # (enrollment ID, command UUID) answered 200
        self.acknowledged: set[tuple[str, str]] = set()
        self.failures = 0  # requests refused or cut while the server was down

    async def device(self, number: int) -> None:
        while self.running:
            try:
                await self._step(number)
            except Exception:
                self.failures += 1
                await task.deferLater(reactor, 0.05)

    async def _step(self, number: int) -> None:
        device = SimulatedDevice.create(self.daemon.url, make_identity(self.ca), http=self.http)
        if (await device.authenticate()).code != 200:
            return
        if (await device.token_update()).code != 200:
            return
        self.enrolled.append(device)
        for _ in range(3):
            command_uuid = f"kill-{number}-{len(self.queued)}-{os.urandom(4).hex()}"
            code = await enqueue(
                self.http, self.daemon, device.id, make_command("ProfileList", command_uuid)
            )
            if code == 200:
                self.queued.add((device.id, command_uuid))
        response = await device.idle()
        while response.code == 200 and response.plist is not None:
            command_uuid = response.plist["CommandUUID"]
            response = await device.report("Acknowledged", command_uuid)
            if response.code == 200:
                self.acknowledged.add((device.id, command_uuid))


@pytest_twisted.ensureDeferred
async def test_sigkill_mid_load_loses_nothing_acknowledged(tmp_path, backend, world):
    ca, apns, http = world
    daemon = Daemon(tmp_path, backend, apns, "-workers", "1")
    daemon.start()
    load = Load(http, daemon, ca)
    try:
        await daemon.wait_until_serving(http)
        await upload_push_cert(http, daemon, ca)
        clients = [Deferred.fromCoroutine(load.device(n)) for n in range(4)]
        while len(load.acknowledged) < 10:
            await task.deferLater(reactor, 0.1)
        daemon.kill()  # SIGKILL, in the middle of whatever the clients are doing
        before_kill = len(load.acknowledged)
        await task.deferLater(reactor, 0.5)
        daemon.start()
        await daemon.wait_until_serving(http)
        while len(load.acknowledged) < before_kill + 10:
            await task.deferLater(reactor, 0.1)
        load.running = False
        await DeferredList(clients)
        daemon.process.send_signal(signal.SIGTERM)
        assert await daemon.exit_status(GRACE) == 0
    finally:
        load.running = False
        daemon.kill()
    assert load.failures > 0, "the clients never noticed the server was killed"
    enrollments = {row[0] for row in backend.query("SELECT id FROM enrollments")}
    assert {device.id for device in load.enrolled} <= enrollments
    known = set(backend.query("SELECT id, command_uuid FROM enrollment_queue"))
    known |= set(backend.query("SELECT id, command_uuid FROM command_results"))
    assert load.queued <= known
    answered = set(
        backend.query("SELECT id, command_uuid FROM command_results WHERE status = 'Acknowledged'")
    )
    assert load.acknowledged <= answered
    assert "Traceback" not in daemon.log.read_text()
