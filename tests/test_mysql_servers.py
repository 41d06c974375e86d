"""
Whole servers on MySQL: ``twistd -n nanomdm`` processes sharing one MariaDB
database.

Horizontal: what one server stores, the other serves.  Fault: MariaDB
stops under a running server; requests fail with a clean 500, and once it
is back the same process serves again, with every 200-acknowledged write
still there.
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer, protocol, reactor, task, threads
from twisted.web.client import Agent, HTTPConnectionPool

from cryptography import x509

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, key_pem
from nanomdm_tw.push.service import STALE_CHECK_INTERVAL
from nanomdm_tw.tools.fake_apns import FakeAPNs
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from .mysqlserver import PrivateServer, ThrowawayDatabase
from .serving import free_port

ROOT = Path(__file__).parent.parent
API_KEY = "servers-test-key"
TOPIC = "com.apple.mgmt.External.9d3a1c0e-0f43-4c55-b5a2-0a5d1e6b7c88"


class _Exit(protocol.ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.ended.callback(None)


@dataclass
class Server:
    url: str
    log: Path
    transport: object
    exit: _Exit

    async def stop(self) -> None:
        if not self.exit.ended.called:
            self.transport.signalProcess("TERM")
        await self.exit.ended


async def start(
    http, folder: Path, name: str, dsn: str, options: str = "", extra: tuple[str, ...] = ()
) -> Server:
    """A ``twistd -n nanomdm`` process on MySQL; returns once /version answers."""
    port = free_port()
    log = folder / f"{name}.log"
    argv = [
        str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", f"--logfile={log}",
        "nanomdm", "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--ca", str(folder / "ca" / "ca.pem"), "--api", API_KEY,
        "--storage", "mysql", "--storage-dsn", dsn, "--storage-options", options, *extra,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    exit = _Exit()
    transport = reactor.spawnProcess(exit, argv[0], argv, env=env, path=str(folder))
    server = Server(f"http://127.0.0.1:{port}", log, transport, exit)
    for _ in range(300):
        if exit.ended.called:
            break
        try:
            answer = await http.get(server.url + "/version")
            await answer.content()
            return server
        except Exception:
            await task.deferLater(reactor, 0.1)
    await server.stop()
    raise AssertionError(f"{name} did not start:\n{log.read_text()}")


@pytest.fixture
def ca(tmp_path) -> DevelopmentCA:
    authority = DevelopmentCA.create("servers test CA")
    authority.save(tmp_path / "ca")
    return authority


@pytest_twisted.async_yield_fixture
async def http():
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield HTTPClient(Agent(reactor, pool=pool))
    await pool.closeCachedConnections()


@pytest.fixture
def database():
    db = ThrowawayDatabase()
    yield db
    db.drop()


async def put_push_cert(http, url: str, ca: DevelopmentCA) -> x509.Certificate:
    """Upload a fresh push cert for TOPIC; the certificate uploaded."""
    cert, key = ca.issue_push_certificate(TOPIC)
    answer = await http.put(url + "/v1/pushcert", data=cert_pem(cert) + key_pem(key),
                            auth=("nanomdm", API_KEY))
    await answer.content()
    assert answer.code == 200
    return cert


@pytest_twisted.ensureDeferred
async def test_two_servers_share_one_database(tmp_path, ca, http, database):
    apns = FakeAPNs(reactor, ca)  # trusts push certs from ``ca``; its TLS cert is from ``ca``
    await apns.start()
    push_flags = ("--apns-url", apns.base_url, "--apns-ca", str(tmp_path / "ca" / "ca.pem"))
    a = await start(http, tmp_path, "a", database.dsn, extra=push_flags)
    b = await start(http, tmp_path, "b", database.dsn, extra=push_flags)
    try:
        device = SimulatedDevice.create(a.url, make_identity(ca), http=http, topic=TOPIC)
        await device.enroll()  # via A
        command = make_command("ProfileList", "CMD-1")
        answer = await enqueue(http, b.url, API_KEY, [device.id], command)
        assert answer.code == 200  # via B
        assert (await device.idle()).plist["CommandUUID"] == "CMD-1"  # via A
        assert (await device.report("Acknowledged", "CMD-1")).plist is None
        # B sees the result: its queue for the device is empty, the result is stored.
        device.url = b.url
        assert (await device.idle()).plist is None
        assert database.query("SELECT command_uuid, status FROM command_results") == [
            ("CMD-1", "Acknowledged")
        ]
        # A push cert uploaded via A and renewed via B: A's next push uses the renewal.
        first_cert = await put_push_cert(http, a.url, ca)
        assert await push(http, a.url, device.id) == 200
        renewed_cert = await put_push_cert(http, b.url, ca)
        await task.deferLater(reactor, STALE_CHECK_INTERVAL + 0.5)
        assert await push(http, a.url, device.id) == 200
        presented = [r.client_certificate for r in apns.requests]
        assert presented == [first_cert, renewed_cert]
    finally:
        await a.stop()
        await b.stop()
        await apns.stop()
    for server in (a, b):
        assert "Traceback" not in server.log.read_text()


async def push(http, url: str, enrollment_id: str) -> int:
    answer = await http.get(url + "/v1/push/" + enrollment_id, auth=("nanomdm", API_KEY))
    await answer.content()
    return answer.code


@pytest_twisted.ensureDeferred
async def test_database_outage_fails_cleanly_and_the_server_recovers(tmp_path, ca, http):
    # A MariaDB of this test's own: stopping the machine's would break everything else.
    mariadb = PrivateServer(tmp_path / "mariadb")
    await threads.deferToThread(mariadb.start)
    database = ThrowawayDatabase(server_dsn=mariadb.dsn)
    try:
        await _outage(tmp_path, ca, http, mariadb, database)
    finally:
        await threads.deferToThread(mariadb.remove)


async def _outage(tmp_path, ca, http, mariadb: PrivateServer, database) -> None:
    server = await start(http, tmp_path, "fault", database.dsn, "max_open_conns=4")
    devices = [SimulatedDevice.create(server.url, make_identity(ca), http=http) for _ in range(4)]
    acknowledged: list[str] = []  # command UUIDs whose Acknowledged got a 200
    enqueued: list[str] = []
    failures: list[tuple[int, bytes]] = []
    running = True

    async def traffic(device: SimulatedDevice, number: int) -> None:
        """Enqueue a command and acknowledge it, over and over, recording what got a 200."""
        count = 0
        while running:
            count += 1
            command_uuid = f"CMD-{number}-{count}"
            answer = await enqueue(http, server.url, API_KEY, [device.id],
                                   make_command("ProfileList", command_uuid))
            if answer.code != 200:
                failures.append((answer.code, answer.body))
                await task.deferLater(reactor, 0.05)
                continue
            enqueued.append(command_uuid)
            idle = await device.idle()
            for response in (idle, await device.report("Acknowledged", command_uuid)):
                if response.code != 200:
                    failures.append((response.code, response.body))
            if response.code == 200:
                acknowledged.append(command_uuid)

    try:
        for device in devices:
            await device.enroll()
        loops = [defer.ensureDeferred(traffic(d, n)) for n, d in enumerate(devices)]
        await task.deferLater(reactor, 0.5)
        await threads.deferToThread(mariadb.stop)
        before_outage = len(acknowledged)
        await task.deferLater(reactor, 1.0)
        outage_answer = await devices[0].idle()
    finally:
        await threads.deferToThread(mariadb.start)
    try:
        # The same process serves again: wait for a few more acknowledged commands.
        for _ in range(300):
            if len(acknowledged) >= before_outage + 8:
                break
            await task.deferLater(reactor, 0.1)
        running = False
        await defer.gatherResults(loops, consumeErrors=True)
    finally:
        await server.stop()
    assert outage_answer.code == 500
    assert failures, "no request failed during the outage"
    for code, body in failures:
        assert code == 500
        assert b"Traceback" not in body and b"pymysql" not in body.lower()
    assert len(acknowledged) >= before_outage + 8
    stored = {
        row[0]
        for row in database.query(
            "SELECT command_uuid FROM command_results WHERE status = 'Acknowledged'"
        )
    }
    assert set(acknowledged) <= stored
    queued = {row[0] for row in database.query("SELECT command_uuid FROM commands")}
    assert set(enqueued) <= queued
