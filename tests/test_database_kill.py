"""
A database server SIGKILLed and started again under load, on MariaDB and
PostgreSQL: each a private server of this test's own (never the machine's).

Devices enroll, the API enqueues commands, devices acknowledge them, all
the time.  While the database is dead, requests fail with a server error
(never 401: a device must retry, not re-enroll); once it is back the same
server process serves again without a restart; and every row whose write
was answered 200 (enrollment, queued command, acknowledged result) is in
the database after the crash recovery.
"""

from dataclasses import dataclass, field

import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from . import mysqlserver, pgsqlserver
from .serving import serve

LOOPS = 4


@dataclass
class Acknowledged:
    """What the server answered 200 for, and every other answer."""

    enrollments: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    failures: list[tuple[str, int, bytes]] = field(default_factory=list)

    def failed(self, what: str, answer) -> None:
        self.failures.append((what, answer.code, answer.body))


async def _traffic(server, acknowledged: Acknowledged, number: int, running) -> None:
    """Enroll a device, enqueue a command for it and acknowledge it, over and over."""
    count = 0
    while running():
        count += 1
        device = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        answers = [await device.authenticate()]
        if answers[-1].code == 200:
            answers.append(await device.token_update())
        if answers[-1].code != 200:
            acknowledged.failed("enroll", answers[-1])
            await task.deferLater(reactor, 0.05)
            continue
        acknowledged.enrollments.append(device.id)
        command_uuid = f"CMD-{number}-{count}"
        answer = await enqueue(server.http, server.url, server.api_key, [device.id],
                               make_command("ProfileList", command_uuid))  # fmt: skip
        if answer.code != 200:
            acknowledged.failed("enqueue", answer)
            continue
        acknowledged.queued.append(command_uuid)
        idle = await device.idle()
        if idle.code != 200:
            acknowledged.failed("idle", idle)
            continue
        report = await device.report("Acknowledged", command_uuid)
        if report.code == 200:
            acknowledged.results.append(command_uuid)
        else:
            acknowledged.failed("report", report)


async def _wait_for(condition, seconds: float = 60.0) -> bool:
    for _ in range(int(seconds * 10)):
        if condition():
            return True
        await task.deferLater(reactor, 0.1)
    return condition()


async def _kill_under_load(tmp_path, kind: str, server_process, database) -> None:
    storage = StorageSpec(kind, database.dsn, "max_open_conns=4")
    acknowledged = Acknowledged()
    running = True
    async with serve(tmp_path, storage=storage) as server:
        loops = [
            defer.ensureDeferred(_traffic(server, acknowledged, n, lambda: running))
            for n in range(LOOPS)
        ]
        try:
            assert await _wait_for(lambda: len(acknowledged.results) >= 8)
            await threads.deferToThread(server_process.kill)
            before = len(acknowledged.results)
            # Traffic meets the dead database for a while.
            await task.deferLater(reactor, 1.0)
            await threads.deferToThread(server_process.start)
            recovered = await _wait_for(lambda: len(acknowledged.results) >= before + 20)
        finally:
            running = False
            await defer.gatherResults(loops, consumeErrors=True)
    assert recovered, f"no recovery after the restart: {acknowledged.failures[-5:]}"
    assert acknowledged.failures, "nothing failed while the database was dead"
    for what, code, body in acknowledged.failures:
        assert code in (500, 503), (what, code, body)
        assert b"Traceback" not in body
    enrolled = {row[0] for row in database.query("SELECT id FROM enrollments")}
    assert set(acknowledged.enrollments) <= enrolled
    queued = {row[0] for row in database.query("SELECT command_uuid FROM commands")}
    assert set(acknowledged.queued) <= queued
    results = {
        row[0]
        for row in database.query(
            "SELECT command_uuid FROM command_results WHERE status = 'Acknowledged'"
        )
    }
    assert set(acknowledged.results) <= results


@pytest_twisted.ensureDeferred
async def test_mariadb_killed_under_load_keeps_every_acknowledged_row(tmp_path):
    mariadb = mysqlserver.PrivateServer(tmp_path / "mariadb")
    await threads.deferToThread(mariadb.start)
    try:
        database = mysqlserver.ThrowawayDatabase(server_dsn=mariadb.dsn)
        await _kill_under_load(tmp_path, "mysql", mariadb, database)
    finally:
        await threads.deferToThread(mariadb.remove)


@pytest_twisted.ensureDeferred
async def test_postgresql_killed_under_load_keeps_every_acknowledged_row(tmp_path):
    postgres = await threads.deferToThread(pgsqlserver.PrivateServer)
    try:
        await threads.deferToThread(postgres.start)
        database = pgsqlserver.ThrowawayDatabase(server_dsn=postgres.server_dsn)
        await _kill_under_load(tmp_path, "pgsql", postgres, database)
    finally:
        await threads.deferToThread(postgres.remove)
