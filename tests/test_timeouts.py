"""
Timeouts everywhere: every outbound call and every wait for the database
ends, and the client is told what NanoMDM tells it when the other side is
unreachable.  Black holes are real loopback sockets: one that accepts and
never answers, one that never accepts; the database black hole is a
private MariaDB or PostgreSQL frozen with SIGSTOP.
"""

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol

from nanomdm_tw.crypto.devca import DevelopmentCA, cert_pem, key_pem
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from . import pgsqlserver
from .fake_apns import TOPIC, ca, fake, push_certs, token  # noqa: F401
from .mysqlserver import PrivateServer, ThrowawayDatabase
from .receivers import Receiver
from .serving import serve
from .test_apns import make_client  # noqa: F401
from .test_authproxy import proxied
from .test_escrow_migration import FORM

# Short enough for a quick test, long enough for a loaded machine's loopback.
TIMEOUT = 0.5


class _Silent(Protocol):
    def connectionMade(self) -> None:
        self.factory.hole.connections.append(self.transport)


class BlackHole:
    """A loopback port that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.connections: list = []
        self._port = None

    async def start(self) -> "BlackHole":
        factory = Factory.forProtocol(_Silent)
        factory.hole = self
        self._port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port.getHost().port}"

    async def stop(self) -> None:
        for transport in self.connections:
            transport.abortConnection()
        await self._port.stopListening()


@pytest_twisted.async_yield_fixture
async def black_hole():
    hole = await BlackHole().start()
    yield hole
    await hole.stop()


@pytest.fixture
def never_accepting():
    """A loopback port whose accept queue is full: a connect to it gets no answer at all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(8):  # until a connect hangs: the queue is full
        filler = socket.socket()
        filler.settimeout(0.3)
        fillers.append(filler)
        try:
            filler.connect(listener.getsockname())
        except OSError:
            break
    else:
        pytest.fail("the accept queue never filled")
    yield listener.getsockname()[1]
    for s in (*fillers, listener):
        s.close()


async def enrolled(server) -> SimulatedDevice:
    device = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
    await device.enroll()
    return device


async def eventually(condition, what: str, seconds: float = 60.0):
    for _ in range(int(seconds * 10)):
        if await condition():
            return
        await task.deferLater(reactor, 0.1)
    raise AssertionError("timed out waiting for " + what)


# -- outbound HTTP ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_auth_proxy_target_that_never_answers_is_a_504(tmp_path: Path) -> None:
    target = await Receiver().start()
    target.hang = True  # takes the request, never answers
    try:
        async with serve(tmp_path, auth_proxy_url=target.url, http_timeout=TIMEOUT) as server:
            device = await enrolled(server)
            response, body = await proxied(server, device.identity, "/authproxy/asset")
            assert (response.code, body) == (504, b"gateway timeout\n")
            assert len(target.requests) == 1
    finally:
        target.release()
        await target.stop()


@pytest_twisted.ensureDeferred
async def test_escrow_key_unlock_to_a_silent_apple_is_a_502(tmp_path: Path, black_hole) -> None:
    apple_ca = DevelopmentCA.create("fake Apple CA")
    (tmp_path / "apple-ca.pem").write_bytes(apple_ca.cert_pem)
    url = f"https://{black_hole.address}/deviceservicesworkers/escrowKeyUnlock"
    async with serve(
        tmp_path, apns_ca=str(tmp_path / "apple-ca.pem"), escrow_key_unlock_url=url,
        http_timeout=TIMEOUT,
    ) as server:  # fmt: skip
        cert, key = apple_ca.issue_push_certificate(FORM["topic"])
        upload = await server.http.put(
            server.url + "/v1/pushcert", data=cert_pem(cert) + key_pem(key),
            auth=server.api_auth(),
        )  # fmt: skip
        assert upload.code == 200
        answer = await server.http.post(
            server.url + "/v1/escrowkeyunlock",
            data=urlencode(FORM).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=server.api_auth(),
        )
        assert answer.code == 502
        assert json.loads(await answer.content()) == {
            "error": f"escrow key unlock: no answer within {TIMEOUT:g}s"
        }
    assert len(black_hole.connections) == 1


@pytest_twisted.ensureDeferred
async def test_dm_server_that_never_answers_is_the_unreachable_error(
    tmp_path: Path, black_hole
) -> None:
    dm = f"http://{black_hole.address}/ddm/"
    async with serve(tmp_path, dm=dm, http_timeout=TIMEOUT) as server:
        device = await enrolled(server)
        answer = await device.checkin("DeclarativeManagement", Endpoint="status")
        assert answer.code == 500
        assert b"Declarative Management: no answer within 0.5s" in answer.body
        assert (await device.idle()).code == 200  # the device is served on
    assert len(black_hole.connections) == 1


@pytest_twisted.ensureDeferred
async def test_webhook_receiver_that_never_answers_is_retried(tmp_path: Path, black_hole) -> None:
    webhook = f"http://{black_hole.address}/webhook"
    async with serve(tmp_path, webhook_url=webhook, webhook_timeout=TIMEOUT) as server:
        device = await enrolled(server)
        assert (await device.idle()).code == 200

        async def retried():
            # Each attempt timed out, gave its connection up, and a new one came.
            return len(black_hole.connections) >= 2

        await eventually(retried, "a second attempt after the first timed out")


@pytest_twisted.ensureDeferred
async def test_apns_that_never_accepts_is_given_up_on(make_client, never_accepting) -> None:
    client = make_client(base_url=f"https://127.0.0.1:{never_accepting}", timeout=TIMEOUT)
    first = await client.push(token(1), "m", TOPIC)
    assert first.status is None
    assert first.reason in (
        f"no answer from APNs in {TIMEOUT:g} s",
        "cannot connect to APNs: User timeout caused connection failure.",
    )

    async def connect_given_up():
        return client._connecting is None

    await eventually(connect_given_up, "the connect to time out")
    second = await client.push(token(2), "m", TOPIC)
    assert second.status is None
    assert client.connections_made == 2  # a new connect, not a wait on the first


# -- the database ----------------------------------------------------------------


@pytest.fixture
def mariadb(tmp_path: Path):
    """A MariaDB of this test's own: freezing the machine's would hang everything else."""
    server = PrivateServer(tmp_path / "mariadb")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def postgres():
    """A PostgreSQL of this test's own, for the same reason."""
    server = pgsqlserver.PrivateServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


CAPACITY = 2  # max_open_conns
MAX_WAITING = 4


async def _black_holed(tmp_path: Path, storage: StorageSpec, database_server) -> None:
    """
    Freeze ``database_server`` under check-ins: each answered 503 in time, at
    most CAPACITY + MAX_WAITING waiting for it, and served again once it thaws.
    """
    async with serve(
        tmp_path, storage=storage, storage_timeout=1.0, storage_max_waiting=MAX_WAITING
    ) as server:
        devices = [await enrolled(server) for _ in range(3)]
        assert {(await d.idle()).code for d in devices} == {200}
        admission = server.storage._admission
        peak = []
        sampler = task.LoopingCall(lambda: peak.append(admission.in_flight))
        await threads.deferToThread(database_server.pause)
        try:
            sampler.start(0.005)
            checkins = [ensureDeferred(devices[n % 3].idle()) for n in range(40)]
            answers = await gatherResults(checkins)
            sampler.stop()
            api = await server.http.get(
                server.url + "/v1/enrollments?limit=1", auth=server.api_auth()
            )
            api_body = await api.content()
        finally:
            await threads.deferToThread(database_server.resume)
        # Memory stays bounded: what reached the pool, running or waiting, never grew past this.
        assert max(peak) == CAPACITY + MAX_WAITING
        assert {answer.code for answer in answers} == {503}  # never 401: devices retry
        assert {answer.headers.getRawHeaders(b"retry-after")[0] for answer in answers} == {b"1"}
        assert answers[0].body.startswith(b"database busy: ")
        assert api.code == 503
        assert api.headers.getRawHeaders(b"retry-after") == [b"1"]
        assert json.loads(api_body)["error"].startswith("database busy: ")

        async def serving_again():
            return all([(await d.idle()).code == 200 for d in devices])

        await eventually(serving_again, "check-ins answered again, without a restart")


@pytest_twisted.ensureDeferred
async def test_black_holed_database_answers_503_in_time_and_recovers(
    tmp_path: Path, mariadb: PrivateServer
) -> None:
    database = ThrowawayDatabase(server_dsn=mariadb.dsn)
    pool = f"max_open_conns={CAPACITY},min_open_conns=1"
    await _black_holed(tmp_path, StorageSpec("mysql", database.dsn, pool), mariadb)
    database.drop()


@pytest_twisted.ensureDeferred
async def test_black_holed_postgresql_answers_503_in_time_and_recovers(
    tmp_path: Path, postgres: pgsqlserver.PrivateServer
) -> None:
    database = pgsqlserver.ThrowawayDatabase(server_dsn=postgres.server_dsn)
    pool = f"max_open_conns={CAPACITY},min_open_conns=1"
    await _black_holed(tmp_path, StorageSpec("pgsql", database.dsn, pool), postgres)
    database.drop()


@pytest_twisted.ensureDeferred
async def test_sqlite_write_lock_held_past_the_timeout_is_busy(tmp_path: Path) -> None:
    import sqlite3

    from nanomdm_tw.errors import StorageBusy
    from nanomdm_tw.storage.sqlite import SQLiteStorage

    storage = SQLiteStorage(str(tmp_path / "db"), {"timeout": TIMEOUT}, reactor)
    await storage.open()
    other_process = sqlite3.connect(storage.path, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")  # the write lock, held
        with pytest.raises(StorageBusy, match="ran past 0.5s"):
            await storage._store_last_seen(["device-1"])
        other_process.execute("ROLLBACK")
        await storage._store_last_seen(["device-1"])
    finally:
        other_process.close()
        await storage.close()


@pytest_twisted.ensureDeferred
async def test_mariadb_sessions_end_statements_past_the_timeout() -> None:
    from nanomdm_tw.errors import StorageBusy
    from nanomdm_tw.storage.mysql import MySQLStorage

    database = ThrowawayDatabase()
    storage = MySQLStorage(database.dsn, {"timeout": 1.5}, reactor)
    try:
        await storage.open()

        def session(txn):
            txn.execute("SELECT @@max_statement_time, @@innodb_lock_wait_timeout")
            return txn.fetchone()

        def sleep(txn):
            txn.execute("SELECT SLEEP(5)")
            return txn.fetchone()

        assert await storage._interact(session) == (1.5, 2)
        with pytest.raises(StorageBusy, match="ran past 1.5s"):
            await storage._interact(sleep)
    finally:
        await storage.close()
        database.drop()


@pytest_twisted.ensureDeferred
async def test_postgresql_statements_blocked_past_the_timeout_end() -> None:
    from nanomdm_tw.errors import StorageBusy
    from nanomdm_tw.storage.pgsql import PgSQLStorage

    from .pgsqlserver import ThrowawayDatabase as PgSQLDatabase

    database = PgSQLDatabase()
    storage = PgSQLStorage(database.dsn, {"timeout": 1.0}, reactor)
    holder = database.connect()
    try:
        await storage.open()

        def count(txn):
            txn.execute("SELECT count(*) FROM enrollments")
            return txn.fetchone()[0]

        def statement_timeout(txn):
            txn.execute("SHOW statement_timeout")
            return txn.fetchone()[0]

        assert await storage._interact(statement_timeout) == "1s"
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE enrollments IN ACCESS EXCLUSIVE MODE")  # held till ROLLBACK
        with pytest.raises(StorageBusy, match="ran past 1s"):
            await storage._interact(count)
        holder.execute("ROLLBACK")
        assert await storage._interact(count) == 0
    finally:
        holder.close()
        await storage.close()
        database.drop()


@pytest_twisted.ensureDeferred
async def test_postgresql_connections_give_a_silent_host_up() -> None:
    """libpq has no read timeout: TCP keepalives and TCP_USER_TIMEOUT, 5 s past the timeout."""
    from nanomdm_tw.storage.pgsql import PgSQLStorage

    from .pgsqlserver import ThrowawayDatabase as PgSQLDatabase

    database = PgSQLDatabase()
    storage = PgSQLStorage(database.dsn, {"timeout": 1.5}, reactor)
    try:
        await storage.open()

        def socket_options(txn):
            with socket.socket(fileno=os.dup(txn._cursor.connection.fileno())) as sock:
                return [
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    *(sock.getsockopt(socket.IPPROTO_TCP, option) for option in (
                        socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT,
                        socket.TCP_USER_TIMEOUT,
                    )),
                ]  # fmt: skip

        assert await storage._interact(socket_options) == [1, 7, 1, 5, 6500]
    finally:
        await storage.close()
        database.drop()


def test_postgresql_dsn_keeps_its_own_socket_timeouts() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from nanomdm_tw.storage.pgsql import parse_pgsql_dsn, with_timeouts

    dsn = parse_pgsql_dsn("host=db keepalives_idle=60 tcp_user_timeout=0 connect_timeout=9")
    params = conninfo_to_dict(with_timeouts(dsn, 1.5))
    assert (params["keepalives_idle"], params["tcp_user_timeout"]) == ("60", "0")
    assert (params["connect_timeout"], params["keepalives_count"]) == ("9", "5")


def test_session_limits_follow_the_server_kind() -> None:
    from nanomdm_tw.storage.mysql import statement_limits

    assert statement_limits("10.11.6-MariaDB-0+deb12u1", 2.5) == [
        "SET SESSION max_statement_time = 2.5",
        "SET SESSION innodb_lock_wait_timeout = 3",
    ]
    # MySQL bounds SELECTs only, in milliseconds; writes by the lock wait timeout.
    assert statement_limits("8.0.36", 2.5) == [
        "SET SESSION max_execution_time = 2500",
        "SET SESSION innodb_lock_wait_timeout = 3",
    ]
