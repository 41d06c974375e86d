"""
PostgreSQL specifics against the machine's PostgreSQL: DSNs, options, the schema
and its command, NanoMDM compatibility, the queue index, delete=1 under load,
retries and reconnection.  The storage semantics themselves are the
conformance suite's (pgsql is one of its backends).

The shared server is never stopped: a restart is simulated by terminating
the sessions on the test's own throwaway database.
"""

import base64
import re
import threading

import psycopg
import pytest
import pytest_twisted
from twisted.enterprise.adbapi import ConnectionLost
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.storage import make_storage
from nanomdm_tw.storage.pgsql import CannotConnect, PgSQLStorage, expected_schema, parse_pgsql_dsn
from nanomdm_tw.storage.sqlbase import not_idempotent
from nanomdm_tw.tools import schema as schema_tool

from .pgsqlserver import ThrowawayDatabase
from . import nanomdm_sql
from .storage_messages import TOPIC, checkin, command, enroll, report



# -- DSNs and options -------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn, expected",
    [
        (
            "postgres://nano:s3cret@db.example:5433/nanomdm?sslmode=disable",
            {"user": "nano", "password": "s3cret", "host": "db.example", "port": "5433",
             "dbname": "nanomdm", "sslmode": "disable"},
        ),
        (
            "host=db.example user=nano dbname=nanomdm sslmode=verify-full connect_timeout=5",
            {"host": "db.example", "user": "nano", "dbname": "nanomdm",
             "sslmode": "verify-full", "connect_timeout": "5"},
        ),
        # lib/pq's defaults, not libpq's: TLS required, TCP to localhost.
        ("postgresql:///nanomdm", {"dbname": "nanomdm", "sslmode": "require", "host": "localhost"}),
        ("user=nano", {"user": "nano", "sslmode": "require", "host": "localhost"}),
        ("host=/run/postgresql", {"host": "/run/postgresql", "sslmode": "require"}),
    ],
)
def test_lib_pq_dsns(dsn, expected, monkeypatch):
    for variable in ("PGHOST", "PGSSLMODE"):
        monkeypatch.delenv(variable, raising=False)
    assert parse_pgsql_dsn(dsn).params == expected


@pytest.mark.parametrize("dsn", ["host=db bogus=1", "postgres://db/x?nonsense=1", "dbname='x"])
def test_bad_dsns_are_refused(dsn):
    with pytest.raises(ValueError, match="invalid PostgreSQL DSN"):
        parse_pgsql_dsn(dsn)


def test_dsn_redacts_its_password():
    assert parse_pgsql_dsn("postgres://nano:s3cret@db/nanomdm").redacted() == (
        "dbname=nanomdm host=db password=*** sslmode=require user=nano"
    )


def test_pool_options():
    storage = make_storage(
        "pgsql", "postgres://u@h/d", "delete=1,max_open_conns=4,min_open_conns=9"
    )
    assert isinstance(storage, PgSQLStorage)
    assert (storage._max_open, storage._min_open, storage._delete) == (4, 4, True)
    assert storage.dsn.database == "d"


# -- fixtures -------------------------------------------------------------------


@pytest.fixture
def database():
    db = ThrowawayDatabase()
    yield db
    db.drop()


@pytest_twisted.async_yield_fixture
async def storage(database):
    store = PgSQLStorage(database.dsn, {})
    await store.open()
    yield store
    await store.close()


# -- the schema and its command ------------------------------------------------------


def test_schema_command_creates_checks_and_reports(capsys):
    empty = ThrowawayDatabase(with_schema=False)
    try:
        assert schema_tool.main(["pgsql", "--dsn", empty.dsn, "--check"]) == 1
        assert "the database lacks: table devices, table users" in capsys.readouterr().out
        assert schema_tool.main(["pgsql", "--dsn", empty.dsn]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "schema upgraded from version 0 to 5",
            "schema complete (version 5)",
        ]
        assert schema_tool.main(["pgsql", "--dsn", empty.dsn]) == 0
        assert capsys.readouterr().out.splitlines() == ["schema complete (version 5)"]
        empty.query("DROP INDEX idx_queue_next")
        empty.query("DROP TRIGGER update_at_to_current_timestamp ON commands")
        assert schema_tool.main(["pgsql", "--dsn", empty.dsn, "--check"]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == (
            "the database lacks: trigger commands.update_at_to_current_timestamp, "
            "index enrollment_queue.idx_queue_next"
        )
    finally:
        empty.drop()
    assert schema_tool.main(["pgsql", "--print"]) == 0
    assert "CREATE TABLE enrollment_queue" in capsys.readouterr().out
    assert schema_tool.main(["pgsql", "--dsn", "host=127.0.0.1 port=1 sslmode=disable"]) == 2


def test_expected_schema_names_nanomdm_tables_and_our_column():
    expected = expected_schema()
    for item in (
        "table devices", "table users", "table enrollments", "table commands",
        "table command_results", "table enrollment_queue", "view view_queue",
        "table push_certs", "table cert_auth_associations",
        "column devices.unlock_token", "column users.device_id",
        "column enrollments.last_seen_at", "column enrollment_queue.seq",
        "column command_results.not_now_tally", "index enrollment_queue.idx_queue_next",
        "index enrollment_queue.idx_enrollment_queue_active_retrieval",
        "index command_results.idx_command_results_lookup", "index devices.serial_number",
        "trigger devices.update_at_to_current_timestamp",
        "index enrollments.idx_enrollments_device_id",
        "index enrollment_queue.idx_enrollment_queue_command_uuid",
        "index command_results.idx_command_results_command_uuid",
        "index cert_auth_associations.idx_sha256",
    ):
        assert item in expected
    assert not any(word in item for item in expected for word in ("PRIMARY", "CHECK", "ON"))


def test_a_version_2_database_gains_the_lookup_indexes():
    database = ThrowawayDatabase()
    try:
        for index in ("idx_enrollments_device_id", "idx_enrollment_queue_command_uuid",
                      "idx_command_results_command_uuid", "idx_sha256"):
            database.query(f"DROP INDEX {index}")
        assert schema_tool.upgrade(database.dsn, dialect="pgsql", check_only=True) == (
            2, 2, ["index enrollments.idx_enrollments_device_id",
                   "index enrollment_queue.idx_enrollment_queue_command_uuid",
                   "index command_results.idx_command_results_command_uuid",
                   "index cert_auth_associations.idx_sha256"]
        )
        assert schema_tool.upgrade(database.dsn, dialect="pgsql") == (2, 5, [])
    finally:
        database.drop()


@pytest_twisted.ensureDeferred
async def test_open_refuses_a_database_without_the_schema():
    empty = ThrowawayDatabase(with_schema=False)
    try:
        with pytest.raises(RuntimeError, match="lacks table devices.*nanomdm-tw-schema pgsql"):
            await PgSQLStorage(empty.dsn).open()
    finally:
        empty.drop()


# -- NanoMDM compatibility ---------------------------------------------------------



class NanoMDMWrites:
    """
    What NanoMDM's PostgreSQL backend sends for each step.

    lib/pq hands a []byte argument for a TEXT column over as its raw bytes,
    which is the raw plist as text: a decoded str here.
    """

    def __init__(self, database: ThrowawayDatabase):
        self.connection = database.connect()

    def run(self, sql: str, *args) -> None:
        self.connection.execute(sql, args)

    def authenticate(self, authenticate) -> None:
        udid = authenticate.enroll_id.id
        self.run(
            "INSERT INTO devices (id, identity_cert, serial_number, authenticate, "
            "authenticate_at) VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP) "
            "ON CONFLICT ON CONSTRAINT devices_pkey DO UPDATE SET "
            "identity_cert = EXCLUDED.identity_cert, serial_number = EXCLUDED.serial_number, "
            "authenticate = EXCLUDED.authenticate, authenticate_at = CURRENT_TIMESTAMP",
            udid, None, authenticate.serial_number, authenticate.raw.decode(),
        )
        self.run(
            "UPDATE enrollments SET enabled = FALSE, token_update_tally = 0, last_seen_at = "
            "CURRENT_TIMESTAMP WHERE device_id = %s AND enabled = TRUE",
            udid,
        )

    def token_update(self, update) -> None:
        udid = update.enroll_id.id
        self.run(
            "UPDATE devices SET token_update = %s, token_update_at = CURRENT_TIMESTAMP, "
            "unlock_token = %s, unlock_token_at = CURRENT_TIMESTAMP WHERE id = %s",
            update.raw.decode(), update.unlock_token, udid,
        )
        self.run(
            "INSERT INTO enrollments (id, device_id, user_id, type, topic, push_magic, "
            "token_hex, last_seen_at, token_update_tally) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP, 1) "
            "ON CONFLICT ON CONSTRAINT enrollments_pkey DO UPDATE SET "
            "device_id = EXCLUDED.device_id, user_id = EXCLUDED.user_id, type = EXCLUDED.type, "
            "topic = EXCLUDED.topic, push_magic = EXCLUDED.push_magic, "
            "token_hex = EXCLUDED.token_hex, enabled = TRUE, last_seen_at = CURRENT_TIMESTAMP, "
            "token_update_tally = enrollments.token_update_tally + 1",
            udid, udid, None, "Device", update.topic, update.push_magic, update.token.hex(),
        )

    def bootstrap_token(self, udid: str, token: bytes) -> None:
        self.run(
            "UPDATE devices SET bootstrap_token_b64 = %s, bootstrap_token_at = CURRENT_TIMESTAMP "
            "WHERE id = %s",
            base64.b64encode(token).decode(), udid,
        )

    def enqueue(self, udids: list[str], queued) -> None:
        self.run(
            "INSERT INTO commands (command_uuid, request_type, command) VALUES (%s, %s, %s)",
            queued.command_uuid, queued.request_type, queued.raw.decode(),
        )
        self.run(
            "INSERT INTO enrollment_queue (id, command_uuid) VALUES "
            + ", ".join(["(%s, %s)"] * len(udids)),
            *(value for udid in udids for value in (udid, queued.command_uuid)),
        )

    def report(self, udid: str, answer) -> None:
        not_now = answer.status == "NotNow"
        self.run(
            "INSERT INTO command_results (id, command_uuid, status, result, not_now_at, "
            "not_now_tally) VALUES (%s, %s, %s, %s, "
            + ("CURRENT_TIMESTAMP, 1" if not_now else "NULL, 0")
            + ") ON CONFLICT ON CONSTRAINT command_results_pkey DO UPDATE SET "
            "status = EXCLUDED.status, result = EXCLUDED.result"
            + (", not_now_tally = command_results.not_now_tally + 1" if not_now else ""),
            udid, answer.command_uuid, answer.status, answer.raw.decode(),
        )

    def next_command(self, udid: str, skip_not_now: bool = False) -> str | None:
        """NanoMDM's RetrieveNextCommand."""
        row = self.connection.execute(
            "SELECT c.command_uuid FROM enrollment_queue AS q "
            "INNER JOIN commands AS c ON q.command_uuid = c.command_uuid "
            "LEFT JOIN command_results r ON r.command_uuid = q.command_uuid AND r.id = q.id "
            "WHERE q.id = %s AND q.active = TRUE "
            "AND (r.status IS NULL OR (r.status = 'NotNow' AND NOT %s)) "
            "ORDER BY q.priority DESC, q.created_at LIMIT 1",
            (udid, skip_not_now),
        ).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.connection.close()


ROWS = {
    "devices": "SELECT id, identity_cert, serial_number, unlock_token, authenticate, "
    "token_update, bootstrap_token_b64 FROM devices ORDER BY id",
    "enrollments": "SELECT id, device_id, user_id, type, topic, push_magic, token_hex, "
    "enabled, token_update_tally, last_seen_at IS NOT NULL FROM enrollments ORDER BY id",
    "commands": "SELECT command_uuid, request_type, command FROM commands ORDER BY command_uuid",
    "enrollment_queue": "SELECT id, command_uuid, active, priority, seq IS NOT NULL "
    "FROM enrollment_queue ORDER BY id, command_uuid",
    "command_results": "SELECT id, command_uuid, status, result, not_now_at IS NOT NULL, "
    "not_now_tally FROM command_results ORDER BY id, command_uuid",
}


# Every byte value: a token NanoMDM's TEXT column of old could not hold.
UNLOCK_TOKEN = bytes(range(256))
BOOTSTRAP_TOKEN = b"\x00bootstrap\xff"


def nanomdm_database() -> ThrowawayDatabase:
    """A database made from NanoMDM's own schema file, verbatim, then upgraded by our command."""
    database = nanomdm_sql.nanomdm_database("pgsql")
    assert schema_tool.upgrade(database.dsn, dialect="pgsql") == (1, 5, [])
    return database


@pytest_twisted.ensureDeferred
async def test_rows_we_write_are_the_rows_nanomdm_writes():
    ours_db, theirs_db = nanomdm_database(), nanomdm_database()
    ours = PgSQLStorage(ours_db.dsn)
    theirs = NanoMDMWrites(theirs_db)
    try:
        await ours.open()
        authenticate = checkin("Authenticate", Topic=TOPIC, SerialNumber="C02XYZ")
        update = checkin(
            "TokenUpdate", Topic=TOPIC, Token=b"\x00\xffTOKEN", PushMagic="PM-1",
            UnlockToken=UNLOCK_TOKEN,
        )
        request = MDMRequest(authenticate.enroll_id)
        await ours.store_authenticate(request, authenticate)
        await ours.clear_queue(request)
        await ours.disable(request)
        theirs.authenticate(authenticate)
        for _ in range(2):  # the second TokenUpdate makes the tally 2
            await ours.store_token_update(request, update)
            theirs.token_update(update)
        await ours.store_bootstrap_token(
            request, checkin("SetBootstrapToken", BootstrapToken=BOOTSTRAP_TOKEN)
        )
        theirs.bootstrap_token("DEVICE-1", BOOTSTRAP_TOKEN)
        for command_uuid in ("CMD-B", "CMD-A"):
            await ours.enqueue_command(["DEVICE-1"], command(command_uuid))
            theirs.enqueue(["DEVICE-1"], command(command_uuid))
        for answer in (report("NotNow", "CMD-B"), report("NotNow", "CMD-B"),
                       report("Acknowledged", "CMD-A")):
            await ours.store_command_report(request, answer)
            theirs.report("DEVICE-1", answer)
        for table, query in ROWS.items():
            assert ours_db.query(query) == theirs_db.query(query), table
        # Read back as NanoMDM reads them: the unlock token raw, the bootstrap token base64.
        [(unlock_token, bootstrap_b64)] = ours_db.query(
            "SELECT unlock_token, bootstrap_token_b64 FROM devices"
        )
        assert bytes(unlock_token) == UNLOCK_TOKEN
        assert base64.b64decode(bootstrap_b64) == BOOTSTRAP_TOKEN
        enrollment = ours_db.query(ROWS["enrollments"])[0]
        assert enrollment[6] == "00ff544f4b454e" and enrollment[8] == 2
        assert ours_db.query("SELECT authenticate FROM devices")[0][0] == authenticate.raw.decode()
        assert ours_db.query("SELECT not_now_tally FROM command_results WHERE status = 'NotNow'") \
            == [(2,)]
        # NanoMDM's next-command query reads what we queued, and we read what it queued.
        assert NanoMDMWrites(ours_db).next_command("DEVICE-1") == "CMD-B"
        assert NanoMDMWrites(ours_db).next_command("DEVICE-1", skip_not_now=True) is None
        theirs.enqueue(["DEVICE-1"], command("CMD-C"))
        assert theirs_db.query(
            "SELECT seq IS NOT NULL FROM enrollment_queue WHERE command_uuid = 'CMD-C'"
        ) == [(True,)]
        theirs_store = PgSQLStorage(theirs_db.dsn)
        await theirs_store.open()
        try:
            assert (await theirs_store.retrieve_next_command(request, True)).command_uuid == (
                "CMD-C"
            )
        finally:
            await theirs_store.close()
        # NanoMDM's updated_at triggers fire on our UPDATEs too.
        assert ours_db.query(
            "SELECT COUNT(*) FROM devices WHERE updated_at > created_at"
        ) == [(1,)]
    finally:
        theirs.close()
        await ours.close()
        ours_db.drop()
        theirs_db.drop()


@pytest_twisted.ensureDeferred
async def test_the_unlock_token_is_stored_raw_in_bytea(storage, database):
    """As NanoMDM's schema has it: BYTEA holding the token's bytes, whatever they are."""
    request = await enroll(storage)
    update = checkin(
        "TokenUpdate", Topic=TOPIC, Token=b"\x01", PushMagic="PM", UnlockToken=UNLOCK_TOKEN
    )
    await storage.store_token_update(request, update)
    assert database.query("SELECT unlock_token FROM devices") == [(UNLOCK_TOKEN,)]


def test_version_4_turns_base64_text_unlock_tokens_into_bytea():
    """Databases made by our earlier schema held base64 text; the upgrade decodes it."""
    database = ThrowawayDatabase()
    try:
        database.query("ALTER TABLE devices ALTER COLUMN unlock_token TYPE TEXT")
        database.query(
            "INSERT INTO devices (id, authenticate, authenticate_at, unlock_token) "
            "VALUES ('D', 'a', CURRENT_TIMESTAMP, %s)",
            base64.b64encode(UNLOCK_TOKEN).decode(),
        )
        assert schema_tool.upgrade(database.dsn, dialect="pgsql", check_only=True) == (
            3, 3, ["type devices.unlock_token bytea"]
        )
        assert schema_tool.upgrade(database.dsn, dialect="pgsql") == (3, 5, [])
        assert database.query("SELECT unlock_token FROM devices") == [(UNLOCK_TOKEN,)]
        assert schema_tool.upgrade(database.dsn, dialect="pgsql") == (5, 5, [])
    finally:
        database.drop()


# -- the queue -----------------------------------------------------------------


class _Recorder:
    """A stand-in transaction that keeps the statement instead of running it."""

    def execute(self, sql, args=()):
        self.sql, self.args = sql, args

    def fetchone(self):
        return None


@pytest_twisted.ensureDeferred
async def test_next_command_query_walks_the_queue_index(storage, database):
    """10,000 queue rows, fresh statistics, enable_seqscan left on: the planner picks the index."""
    await enroll(storage)
    database.query(
        "INSERT INTO devices (id, authenticate, authenticate_at) "
        "SELECT 'D-' || n, 'x', now() FROM generate_series(1, 500) AS n"
    )
    database.query(
        "INSERT INTO enrollments (id, device_id, type, topic, push_magic, token_hex, "
        "last_seen_at) SELECT 'D-' || n, 'D-' || n, 'Device', 't', 'm', 'aa', now() "
        "FROM generate_series(1, 500) AS n"
    )
    database.query(
        "INSERT INTO commands (command_uuid, request_type, command) "
        "SELECT 'C-' || n, 'ProfileList', '<?xml' FROM generate_series(1, 2000) AS n"
    )  # the store's commands, of which 20 are queued to every enrollment
    database.query(
        "INSERT INTO enrollment_queue (id, command_uuid) SELECT 'D-' || d, 'C-' || c "
        "FROM generate_series(1, 500) AS d, generate_series(1, 20) AS c"
    )
    database.query(
        "INSERT INTO command_results (id, command_uuid, status, result) "
        "SELECT 'D-' || d, 'C-1', 'Acknowledged', '<?xml' FROM generate_series(1, 500) AS d"
    )
    # Some history, as a server in service has: with every row active, reading the
    # primary key costs the same as the partial queue index, and a tie goes either way
    # (as it does once another index on the queue exists).
    database.query(
        "UPDATE enrollment_queue SET active = FALSE "
        "WHERE command_uuid IN ('C-2', 'C-3', 'C-4', 'C-5', 'C-6')"
    )
    database.query("ANALYZE")
    recorder = _Recorder()
    storage._transaction(recorder, storage._retrieve_next_command, "D-7", False)
    plan = "\n".join(row[0] for row in database.query("EXPLAIN " + recorder.sql, *recorder.args))
    # The enrollment's queue rows come from the index (a bitmap or plain index
    # scan), then at most its own few rows are sorted; no table is read whole.
    assert re.search(r"Index Scan (on|using) idx_queue_next", plan), plan
    assert "Seq Scan" not in plan, plan


def _retry_log(events: list):
    return lambda event: events.append(event) if "retrying" in event.get("log_format", "") else None


# -- errors, retries and reconnection --------------------------------------------------


def _failure(error: BaseException) -> Failure:
    try:
        raise error
    except BaseException:
        return Failure()


def test_which_failures_are_retried(storage):
    deadlock = _failure(psycopg.errors.DeadlockDetected("deadlock detected"))
    serialization = _failure(psycopg.errors.SerializationFailure("could not serialize"))
    terminated = _failure(psycopg.errors.AdminShutdown("terminating connection"))
    lost = _failure(psycopg.OperationalError("server closed the connection unexpectedly"))
    refused = _failure(CannotConnect("connection refused"))
    duplicate = _failure(psycopg.errors.UniqueViolation("duplicate key"))
    for failure in (deadlock, serialization, refused):
        assert storage._should_retry(failure, idempotent=False)
    for failure in (terminated, lost, _failure(ConnectionLost())):
        assert storage._should_retry(failure, idempotent=True)
        assert not storage._should_retry(failure, idempotent=False)
    assert not storage._should_retry(duplicate, idempotent=True)
    assert getattr(storage._store_token_update, "idempotent", True) is False


@pytest_twisted.ensureDeferred
async def test_a_deadlock_victim_runs_once_more_a_lost_commit_does_not(storage):
    attempts = []

    def flaky(txn, error):
        attempts.append(error)
        txn.execute("SELECT 1")
        if len(attempts) == 1:
            raise error
        return "done"

    deadlock = psycopg.errors.DeadlockDetected("injected")
    assert await storage._interact(flaky, deadlock) == "done"
    assert attempts == [deadlock, deadlock]
    attempts.clear()
    with pytest.raises(psycopg.OperationalError):
        await storage._interact(not_idempotent(flaky), psycopg.OperationalError("injected"))
    assert len(attempts) == 1


@pytest_twisted.ensureDeferred
async def test_a_real_deadlock_is_retried(database):
    """Two transactions locking two rows in opposite orders: PostgreSQL picks a victim (40P01)."""
    store = PgSQLStorage(database.dsn, {"max_open_conns": 2, "min_open_conns": 2})
    await store.open()
    retries = []
    observer = _retry_log(retries)
    globalLogPublisher.addObserver(observer)
    both_hold_one = threading.Barrier(2)
    winner_holds_both = threading.Event()
    first_runs = set()

    def lock_both(txn, first, second):
        if first in first_runs:
            # The victim's second run starts once the winner holds both rows: taking
            # its first row earlier could deadlock the two again.
            winner_holds_both.wait(10)
        txn.execute("UPDATE devices SET serial_number = 'X' WHERE id = %s", (first,))
        if first not in first_runs:
            first_runs.add(first)
            both_hold_one.wait(10)
        txn.execute("UPDATE devices SET serial_number = 'Y' WHERE id = %s", (second,))
        winner_holds_both.set()
        return first

    try:
        for udid in ("A", "B"):
            await enroll(store, udid)
        results = await defer.gatherResults(
            [store._interact(lock_both, "A", "B"), store._interact(lock_both, "B", "A")],
            consumeErrors=True,
        )
        assert sorted(results) == ["A", "B"]
        assert [event["error"].split("\n")[0] for event in retries] == ["deadlock detected"]
    finally:
        globalLogPublisher.removeObserver(observer)
        await store.close()


async def backend_pid(store) -> int:
    return (await store._interact(store._one, "SELECT pg_backend_pid()"))[0]


@pytest_twisted.ensureDeferred
async def test_sessions_ended_by_the_server_are_replaced_before_use(storage, database):
    request = await enroll(storage)
    before = await backend_pid(storage)
    assert database.terminate_connections() >= 1
    # Not even the non-idempotent TokenUpdate fails: the dead connection is noticed first.
    update = checkin("TokenUpdate", Topic=TOPIC, Token=b"\x01", PushMagic="PM")
    await storage.store_token_update(request, update)
    assert await storage.retrieve_token_update_tally("DEVICE-1") == 2
    assert await backend_pid(storage) != before


@pytest_twisted.ensureDeferred
async def test_a_session_ended_mid_use_fails_writes_once_and_retries_reads(database):
    """Without the check before use: reads run again on a new connection, writes fail once."""
    store = PgSQLStorage(database.dsn, {"max_open_conns": 1, "min_open_conns": 1})
    await store.open()
    store._pool._worn_out = lambda conn, tid, now: False
    try:
        request = await enroll(store)
        database.terminate_connections()
        assert await store.retrieve_token_update_tally("DEVICE-1") == 1
        database.terminate_connections()
        update = checkin("TokenUpdate", Topic=TOPIC, Token=b"\x01", PushMagic="PM")
        with pytest.raises(psycopg.OperationalError):
            await store.store_token_update(request, update)
        await store.store_token_update(request, update)
        assert await store.retrieve_token_update_tally("DEVICE-1") == 2
    finally:
        await store.close()
