"""
What MySQL and PostgreSQL must both do as shared, concurrent databases.

Each test runs on both servers, each in a throwaway database: fan-out as one
batched insert, concurrent enqueues of one command, and 200 enrollments
answering one command at once with delete=1 (no deadlock, nothing left).
"""

from dataclasses import dataclass

import psycopg
import pytest
import pytest_twisted
from twisted.internet import defer

from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.storage.mysql import MySQLStorage
from nanomdm_tw.storage.pgsql import PgSQLStorage
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_identity
from nanomdm_tw.tools.sim import make_command as make_sim_command

from . import mysqlserver, pgsqlserver
from .serving import serve
from .storage_messages import TOPIC, checkin, command, enroll, report, retries_logged


@dataclass
class Server:
    name: str  # the --storage name
    storage_class: type
    throwaway: type
    # Round trips of one enqueue to many IDs, and of a TokenUpdate: BEGIN goes
    # with the first write on MySQL (multi-statements), on its own on PostgreSQL.
    fan_out_round_trips: int
    token_update_round_trips: int


SERVERS = [
    Server("mysql", MySQLStorage, mysqlserver.ThrowawayDatabase, 6, 3),
    Server("pgsql", PgSQLStorage, pgsqlserver.ThrowawayDatabase, 7, 4),
]


@pytest.fixture(params=SERVERS, ids=lambda s: s.name)
def server(request) -> Server:
    return request.param


@pytest.fixture
def database(server):
    db = server.throwaway()
    yield db
    db.drop()


@pytest_twisted.async_yield_fixture
async def storage(server, database):
    store = server.storage_class(database.dsn, {})
    await store.open()
    yield store
    await store.close()


@pytest_twisted.ensureDeferred
async def test_enqueue_to_many_is_one_command_row_and_one_batched_insert(
    server, storage, database
):
    ids = [f"BULK-{i:04d}" for i in range(300)]
    for udid in ids:
        await enroll(storage, udid)
    before = storage.round_trips().get("_enqueue_command", (0, 0))
    assert await storage.enqueue_command(ids, command("CMD-FANOUT")) == {}
    calls, trips = storage.round_trips()["_enqueue_command"]
    # known IDs, already queued, the command's INSERT, its read, the queue rows, COMMIT
    assert (calls - before[0], trips - before[1]) == (1, server.fan_out_round_trips)
    assert database.query(
        "SELECT COUNT(*), COUNT(DISTINCT seq) FROM enrollment_queue "
        "WHERE command_uuid = 'CMD-FANOUT'"
    ) == [(300, 300)]


@pytest_twisted.ensureDeferred
async def test_one_command_enqueued_to_batches_at_once(storage, database):
    """As an API client enqueueing one command to many IDs, 50 per request, 8 at a time."""
    ids = [f"BATCH-{i:03d}" for i in range(400)]
    for udid in ids:
        await enroll(storage, udid)
    results = await defer.gatherResults(
        [
            defer.ensureDeferred(storage.enqueue_command(ids[i : i + 50], command("CMD-WIDE")))
            for i in range(0, len(ids), 50)
        ],
        consumeErrors=True,
    )
    assert results == [{}] * 8
    assert database.query(
        "SELECT COUNT(*) FROM enrollment_queue WHERE command_uuid = 'CMD-WIDE'"
    ) == [(400,)]


@pytest_twisted.ensureDeferred
async def test_two_hundred_answers_to_one_command_with_delete(server, database):
    store = server.storage_class(database.dsn, {"delete": True, "max_open_conns": 10})
    await store.open()
    try:
        with retries_logged() as retries:
            requests = [await enroll(store, f"ANSWER-{i:03d}") for i in range(200)]
            ids = [r.enroll_id.id for r in requests]
            assert await store.enqueue_command(ids, command("CMD-SHARED")) == {}
            nexts = await defer.gatherResults(
                [
                    defer.ensureDeferred(
                        store.report_and_next(
                            r, report("Acknowledged", "CMD-SHARED", r.enroll_id.id), False
                        )
                    )
                    for r in requests
                ],
                consumeErrors=True,
            )
            assert nexts == [None] * 200
            assert await store.row_counts() == {
                "commands": 0, "command_results": 0, "enrollment_queue": 0
            }
            assert retries == []  # no deadlock, lock wait or serialization failure retried
            assert len(store._pool.connections) > 1  # the answers really ran side by side
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_two_hundred_devices_answer_one_command_over_http_with_delete(
    tmp_path, server, database
):
    spec = StorageSpec(server.name, database.dsn, "delete=1,max_open_conns=10")
    async with serve(tmp_path, storage=spec) as mdm:
        devices = [
            SimulatedDevice.create(mdm.url, make_identity(mdm.ca), http=mdm.http)
            for _ in range(200)
        ]
        for device in devices:
            await device.enroll()
        answer = await enqueue(
            mdm.http, mdm.url, mdm.api_key, [d.id for d in devices],
            make_sim_command("ProfileList", "CMD-ALL"),
        )  # fmt: skip
        assert answer.code == 200
        assert database.query("SELECT COUNT(*) FROM enrollment_queue") == [(200,)]
        replies = await defer.gatherResults(
            [defer.ensureDeferred(d.report("Acknowledged", "CMD-ALL")) for d in devices],
            consumeErrors=True,
        )
        assert [(r.code, r.plist) for r in replies] == [(200, None)] * 200
    for table in ("commands", "command_results", "enrollment_queue"):
        assert database.query(f"SELECT COUNT(*) FROM {table}") == [(0,)], table


# -- transactions only where something is written ---------------------------------------


def _in_transaction(server, txn) -> bool:
    """What the database server says: is this session inside a transaction now?"""
    if server.name == "mysql":
        txn.execute("SELECT @@in_transaction")
        return bool(txn.fetchone()[0])
    return txn._connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


@pytest_twisted.ensureDeferred
async def test_reading_work_sends_no_begin_and_no_commit(server, storage):
    request = await enroll(storage)
    seen = []

    def idle_check(txn):
        next_command = storage._retrieve_next_command(txn, request.enroll_id.id, False)
        seen.append(_in_transaction(server, txn))
        return next_command

    before = storage.round_trips().get("idle_check", (0, 0))
    assert await storage._interact(idle_check) is None
    assert seen == [False]  # the SELECT ran on its own, not in a transaction
    calls, trips = storage.round_trips()["idle_check"]
    assert (calls - before[0], trips - before[1]) == (1, 1)  # no BEGIN, no COMMIT
    # The storage's own Idle check-in on an empty queue: one round trip.
    assert await storage.retrieve_next_command(request, False) is None
    assert storage.round_trips()["_retrieve_next_command"] == (1, 1)


@pytest_twisted.ensureDeferred
async def test_the_first_write_begins_one_transaction_for_the_rest(server, storage, database):
    await enroll(storage, "W-1")
    seen = []

    def read_then_write_then_fail(txn):
        storage._one(txn, "SELECT serial_number FROM devices WHERE id = ?", ("W-1",))
        seen.append(_in_transaction(server, txn))
        storage._execute(txn, "UPDATE devices SET serial_number = 'CHANGED' WHERE id = 'W-1'")
        seen.append(_in_transaction(server, txn))
        storage._execute(
            txn,
            "INSERT INTO devices (id, authenticate, authenticate_at) "
            "VALUES ('W-2', 'x', CURRENT_TIMESTAMP)",
        )
        raise ValueError("the interaction fails after writing")

    with pytest.raises(ValueError):
        await storage._interact(read_then_write_then_fail)
    assert seen == [False, True]
    # Both writes rolled back together.
    assert database.query("SELECT serial_number FROM devices WHERE id = 'W-1'") == [
        ("SERIAL-W-1",)
    ]
    assert database.query("SELECT COUNT(*) FROM devices WHERE id = 'W-2'") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_a_token_update_is_one_transaction_of_its_statements(server, storage):
    request = await enroll(storage)
    update = checkin("TokenUpdate", Topic=TOPIC, Token=b"\x02", PushMagic="PM2")
    before = storage.round_trips()["_store_token_update"]
    await storage.store_token_update(request, update)
    calls, trips = storage.round_trips()["_store_token_update"]
    # UPDATE and upsert, COMMIT; MySQL sends BEGIN with the UPDATE, psycopg on its own.
    assert (calls - before[0], trips - before[1]) == (1, server.token_update_round_trips)
    assert await storage.retrieve_token_update_tally(request.enroll_id.id) == 2
