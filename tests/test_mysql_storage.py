"""
MySQL specifics against the machine's MariaDB: DSNs, options, the schema and
its command, NanoMDM compatibility, the queue index, delete=1 under load,
batched last-seen, retries and reconnection.  The storage semantics
themselves are the conformance suite's (mysql is one of its backends).
"""

import base64
import importlib.util
import ssl

import pymysql
from pymysql.constants import CLIENT
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.storage import make_storage, parse_storage_options
from nanomdm_tw.storage.dsn import parse_dsn
from nanomdm_tw.storage.lastseen import LastSeenBatcher
from nanomdm_tw.storage.multi import MultiStorage
from nanomdm_tw.storage import mysql as mysql_backend
from nanomdm_tw.storage.mysql import MySQLStorage, expected_schema
from nanomdm_tw.storage.sqlbase import not_idempotent
from nanomdm_tw.tap import Options
from nanomdm_tw.tools import schema as schema_tool
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from .mysqlserver import ThrowawayDatabase
from .serving import serve
from . import nanomdm_sql
from .storage_messages import TOPIC, checkin, command, enroll, report



# -- DSNs and options -------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn, expected",
    [
        (
            "nano:s3cret@tcp(db.example:3307)/nanomdm?timeout=5s&charset=utf8mb4",
            {"user": "nano", "password": "s3cret", "host": "db.example", "port": 3307,
             "database": "nanomdm", "charset": "utf8mb4", "connect_timeout": 5.0},
        ),
        (
            "nano@unix(/run/mysqld/mysqld.sock)/nanomdm",
            {"user": "nano", "password": "", "unix_socket": "/run/mysqld/mysqld.sock",
             "database": "nanomdm", "charset": "utf8mb4"},
        ),
        (
            "nano:pa:ss@word@/nanomdm",
            {"user": "nano", "password": "pa:ss@word", "host": "127.0.0.1", "port": 3306,
             "database": "nanomdm", "charset": "utf8mb4"},
        ),
        (
            "root@tcp([::1]:3306)/x?parseTime=true&readTimeout=1m30s",
            {"user": "root", "password": "", "host": "::1", "port": 3306, "database": "x",
             "charset": "utf8mb4", "read_timeout": 90.0},
        ),
    ],
)
def test_go_sql_driver_dsns(dsn, expected):
    # Every connection reports matched rows: UPDATE rowcounts mean what SQLite's mean.
    assert parse_dsn(dsn).connect_kwargs() == {**expected, "client_flag": CLIENT.FOUND_ROWS}


@pytest.mark.parametrize("dsn", ["nanomdm", "user@pipe(x)/db", "user@tcp(host:3306"])
def test_bad_dsns_are_refused(dsn):
    with pytest.raises(ValueError, match="MySQL DSN"):
        parse_dsn(dsn)


def test_dsn_tls_modes():
    verified = parse_dsn("u@tcp(db:3306)/d?tls=true").connect_kwargs()["ssl"]
    assert (verified.check_hostname, verified.verify_mode) == (True, ssl.CERT_REQUIRED)
    for mode in ("skip-verify", "preferred"):
        unverified = parse_dsn(f"u@tcp(db:3306)/d?tls={mode}").connect_kwargs()["ssl"]
        assert unverified.verify_mode == ssl.CERT_NONE
    assert "ssl" not in parse_dsn("u@tcp(db:3306)/d?tls=false").connect_kwargs()


@pytest.mark.parametrize("mode", ["custom", "TRUE", "yes", "skip_verify"])
def test_dsn_unknown_tls_mode_is_refused(mode):
    with pytest.raises(ValueError, match=f"tls='{mode}' is not supported"):
        parse_dsn(f"u@tcp(db:3306)/d?tls={mode}")


def test_dsn_redacts_its_password():
    assert parse_dsn("nano:s3cret@tcp(db:3306)/nanomdm").redacted() == (
        "nano:***@tcp(db:3306)/nanomdm"
    )


def test_pool_options():
    options = parse_storage_options(
        "delete=1,max_open_conns=20,min_open_conns=2,conn_max_lifetime=1h30m,"
        "conn_max_idle_time=500ms"
    )
    assert options == {
        "delete": True,
        "max_open_conns": 20,
        "min_open_conns": 2,
        "conn_max_lifetime": 5400.0,
        "conn_max_idle_time": 0.5,
    }
    for bad in ("conn_max_lifetime=5", "max_open_conns=0", "conn_max_idle_time=1d"):
        with pytest.raises(ValueError, match="invalid value for"):
            parse_storage_options(bad)
    storage = make_storage("mysql", "u:p@tcp(h:1)/d", "max_open_conns=4,min_open_conns=9")
    assert isinstance(storage, MySQLStorage)
    assert (storage._max_open, storage._min_open, storage._delete) == (4, 4, False)


# -- fixtures -------------------------------------------------------------------


@pytest.fixture
def database():
    db = ThrowawayDatabase()
    yield db
    db.drop()


@pytest_twisted.async_yield_fixture
async def storage(database):
    store = MySQLStorage(database.dsn, {})
    await store.open()
    yield store
    await store.close()


# -- the schema and its command ------------------------------------------------------


def test_schema_command_creates_checks_and_reports(capsys):
    empty = ThrowawayDatabase(with_schema=False)
    try:
        assert schema_tool.main(["mysql", "--dsn", empty.dsn, "--check"]) == 1
        assert "the database lacks: table devices, table users" in capsys.readouterr().out
        assert schema_tool.main(["mysql", "--dsn", empty.dsn]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "schema upgraded from version 0 to 3",
            "schema complete (version 3)",
        ]
        assert schema_tool.main(["mysql", "--dsn", empty.dsn, "--check"]) == 0
        empty.query("ALTER TABLE enrollment_queue DROP INDEX idx_queue_lookup")
        assert schema_tool.main(["mysql", "--dsn", empty.dsn, "--check"]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == (
            "the database lacks: index enrollment_queue.idx_queue_lookup"
        )
    finally:
        empty.drop()
    assert schema_tool.main(["mysql", "--print"]) == 0
    assert "CREATE TABLE enrollment_queue" in capsys.readouterr().out


def test_a_database_is_upgraded_from_the_first_file_it_lacks():
    """Version 2 (without the inspection indexes) gains version 3's; nothing runs twice."""
    database = ThrowawayDatabase()
    try:
        assert expected_schema(3) == [
            "index users.idx_user_short_name",
            "index enrollments.idx_enabled",
            "index enrollments.idx_type_enabled",
        ]
        for table, index in (("users", "idx_user_short_name"), ("enrollments", "idx_enabled")):
            database.query(f"ALTER TABLE {table} DROP INDEX {index}")
        assert schema_tool.upgrade(database.dsn, dialect="mysql", check_only=True) == (
            2, 2, ["index users.idx_user_short_name", "index enrollments.idx_enabled"]
        )
        database.query("ALTER TABLE enrollments DROP INDEX idx_type_enabled")
        assert schema_tool.upgrade(database.dsn, dialect="mysql") == (2, 3, [])
        assert schema_tool.upgrade(database.dsn, dialect="mysql") == (3, 3, [])
    finally:
        database.drop()


def test_expected_schema_names_nanomdm_tables_and_our_column():
    expected = expected_schema()
    for item in (
        "table devices", "table users", "table enrollments", "table commands",
        "table command_results", "table enrollment_queue", "view view_queue",
        "table push_certs", "table cert_auth_associations",
        "column enrollments.last_seen_at", "column enrollment_queue.seq",
        "column command_results.not_now_tally", "index enrollment_queue.idx_queue_next",
        "index cert_auth_associations.idx_sha256",
    ):
        assert item in expected
    assert "column devices.PRIMARY" not in expected


@pytest_twisted.ensureDeferred
async def test_open_refuses_a_database_without_the_schema():
    empty = ThrowawayDatabase(with_schema=False)
    try:
        with pytest.raises(RuntimeError, match="lacks table devices.*nanomdm-tw-schema"):
            await MySQLStorage(empty.dsn).open()
    finally:
        empty.drop()


# -- NanoMDM compatibility ---------------------------------------------------------



class NanoMDMWrites:
    """What NanoMDM's MySQL backend sends for each step (its upserts in VALUES() form)."""

    def __init__(self, database: ThrowawayDatabase):
        self.connection = database.connect()

    def run(self, sql: str, *args) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, args)

    def authenticate(self, authenticate) -> None:
        udid = authenticate.enroll_id.id
        self.run(
            "INSERT INTO devices (id, identity_cert, serial_number, authenticate, "
            "authenticate_at) VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP) ON DUPLICATE KEY "
            "UPDATE identity_cert = VALUES(identity_cert), serial_number = "
            "VALUES(serial_number), authenticate = VALUES(authenticate), "
            "authenticate_at = CURRENT_TIMESTAMP",
            udid, None, authenticate.serial_number, authenticate.raw,
        )
        self.run(
            "UPDATE enrollments SET enabled = 0, token_update_tally = 0, last_seen_at = "
            "CURRENT_TIMESTAMP WHERE device_id = %s AND enabled = 1",
            udid,
        )

    def token_update(self, update) -> None:
        udid = update.enroll_id.id
        self.run(
            "UPDATE devices SET token_update = %s, token_update_at = CURRENT_TIMESTAMP, "
            "unlock_token = %s, unlock_token_at = CURRENT_TIMESTAMP WHERE id = %s LIMIT 1",
            update.raw, update.unlock_token, udid,
        )
        self.run(
            "INSERT INTO enrollments (id, device_id, user_id, type, topic, push_magic, "
            "token_hex, last_seen_at, token_update_tally) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP, 1) ON DUPLICATE KEY UPDATE "
            "device_id = VALUES(device_id), user_id = VALUES(user_id), type = VALUES(type), "
            "topic = VALUES(topic), push_magic = VALUES(push_magic), "
            "token_hex = VALUES(token_hex), enabled = 1, last_seen_at = CURRENT_TIMESTAMP, "
            "token_update_tally = token_update_tally + 1",
            udid, udid, None, "Device", update.topic, update.push_magic, update.token.hex(),
        )

    def bootstrap_token(self, udid: str, token: bytes) -> None:
        self.run(
            "UPDATE devices SET bootstrap_token_b64 = %s, bootstrap_token_at = CURRENT_TIMESTAMP "
            "WHERE id = %s",
            base64.b64encode(token).decode(), udid,
        )

    def enqueue(self, udid: str, queued) -> None:
        self.run(
            "INSERT INTO commands (command_uuid, request_type, command) VALUES (%s, %s, %s)",
            queued.command_uuid, queued.request_type, queued.raw,
        )
        self.run(
            "INSERT INTO enrollment_queue (id, command_uuid) VALUES (%s, %s)",
            udid, queued.command_uuid,
        )

    def report(self, udid: str, answer) -> None:
        not_now = answer.status == "NotNow"
        self.run(
            "INSERT INTO command_results (id, command_uuid, status, result"
            + (", not_now_at, not_now_tally" if not_now else "")
            + ") VALUES (%s, %s, %s, %s"
            + (", CURRENT_TIMESTAMP, 1" if not_now else "")
            + ") ON DUPLICATE KEY UPDATE status = VALUES(status), result = VALUES(result)"
            + (", not_now_tally = not_now_tally + 1" if not_now else ""),
            udid, answer.command_uuid, answer.status, answer.raw,
        )

    def next_command(self, udid: str) -> str | None:
        """NanoMDM's SelectNextCommand (including NotNow)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.command_uuid FROM enrollment_queue AS q "
                "INNER JOIN commands AS c ON q.command_uuid = c.command_uuid "
                "LEFT JOIN command_results r ON r.command_uuid = q.command_uuid "
                "AND r.id = q.id WHERE q.id = %s AND q.active = 1 "
                "AND (r.status IS NULL OR r.status = 'NotNow') "
                "ORDER BY q.priority DESC, q.created_at LIMIT 1",
                (udid,),
            )
            row = cursor.fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.connection.commit()
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


# Every byte value, as a binary unlock token can hold.
UNLOCK_TOKEN = bytes(range(256))
BOOTSTRAP_TOKEN = b"\x00bootstrap\xff"


def nanomdm_database() -> ThrowawayDatabase:
    """A database made from NanoMDM's own schema file, verbatim, then upgraded by our command."""
    database = nanomdm_sql.nanomdm_database("mysql")
    assert schema_tool.upgrade(database.dsn, dialect="mysql") == (1, 3, [])
    return database


@pytest_twisted.ensureDeferred
async def test_rows_we_write_are_the_rows_nanomdm_writes():
    ours_db, theirs_db = nanomdm_database(), nanomdm_database()
    ours = MySQLStorage(ours_db.dsn)
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
            theirs.enqueue("DEVICE-1", command(command_uuid))
        for answer in (report("NotNow", "CMD-B"), report("Acknowledged", "CMD-A")):
            await ours.store_command_report(request, answer)
            theirs.report("DEVICE-1", answer)
        theirs.close()
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
        # NanoMDM's next-command query reads what we queued, and we read what it queued.
        assert NanoMDMWrites(ours_db).next_command("DEVICE-1") == "CMD-B"
        assert (await ours.retrieve_next_command(request, False)).command_uuid == "CMD-B"
        assert (await ours.retrieve_next_command(request, True)) is None
    finally:
        await ours.close()
        ours_db.drop()
        theirs_db.drop()


# -- the queue -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_next_command_query_walks_the_queue_index(storage, database):
    request = await enroll(storage)
    for i in range(30):
        await storage.enqueue_command(["DEVICE-1"], command(f"CMD-{i}"))
    plan = database.query(
        "EXPLAIN SELECT c.command_uuid, c.request_type, c.command "
        "FROM enrollment_queue AS q "
        "INNER JOIN commands AS c ON c.command_uuid = q.command_uuid "
        "LEFT JOIN command_results AS r ON r.id = q.id AND r.command_uuid = q.command_uuid "
        "WHERE q.id = %s AND q.active = TRUE AND (r.status IS NULL OR r.status = 'NotNow') "
        f"ORDER BY {storage.dialect.queue_order} LIMIT 1",
        "DEVICE-1",
    )
    by_table = {row[2]: row for row in plan}  # id, select_type, table, type, keys, key, ...
    assert by_table["q"][5] == "idx_queue_next"
    assert by_table["c"][3] == "eq_ref" and by_table["c"][5] == "PRIMARY"
    assert by_table["r"][3] == "eq_ref" and by_table["r"][5] == "PRIMARY"
    assert not any("filesort" in (row[9] or "") or "temporary" in (row[9] or "") for row in plan)
    assert (await storage.retrieve_next_command(request, False)).command_uuid == "CMD-0"


# -- last seen --------------------------------------------------------------------


STALE_LAST_SEEN = "SELECT COUNT(*) FROM enrollments WHERE YEAR(last_seen_at) = 2001"


@pytest_twisted.ensureDeferred
async def test_last_seen_is_written_in_batches_off_the_request_path(database):
    clock = Clock()
    store = MySQLStorage(database.dsn, {})
    await store.open()
    try:
        for udid in ("B", "A", "C"):
            await enroll(store, udid)
        database.query("UPDATE enrollments SET last_seen_at = '2001-01-01 00:00:00'")
        # The batcher again, on a test clock, flushing every 5 s.
        await store._last_seen.stop()
        store._last_seen = LastSeenBatcher(store._store_last_seen, clock)
        store._last_seen.start()
        before = store.round_trips().get("_update_last_seen", (0, 0))
        for udid in ("C", "A", "C", "B"):
            store.touch(udid)
        assert database.query(STALE_LAST_SEEN) == [(3,)]
        clock.advance(5)
        await store._last_seen.stop()
        assert database.query(STALE_LAST_SEEN) == [(0,)]
        calls, trips = store.round_trips()["_update_last_seen"]
        assert (calls - before[0], trips - before[1]) == (1, 2)  # one UPDATE, one COMMIT
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_last_seen_batcher_sorts_flushes_when_full_and_logs_failures():
    writes, events = [], []

    def write(ids):
        writes.append(ids)
        if len(writes) == 2:
            return defer.fail(pymysql.err.OperationalError(2006, "gone away"))
        return defer.succeed(None)

    clock = Clock()
    batcher = LastSeenBatcher(write, clock, interval=5, max_ids=3)
    batcher.start()
    observer = events.append
    globalLogPublisher.addObserver(observer)
    try:
        for enrollment_id in ("z", "x", "z", "y"):  # the third distinct ID flushes
            batcher.touch(enrollment_id)
        batcher.touch("w")
        clock.advance(5)  # fails: logged, the timer keeps running
        batcher.touch("v")
        clock.advance(5)
        await batcher.stop()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert writes == [["x", "y", "z"], ["w"], ["v"]]
    assert [e["count"] for e in events if "last-seen update" in e.get("log_format", "")] == [1]


# -- errors, retries and reconnection --------------------------------------------------


def test_which_failures_are_retried(storage):
    def failure(error):
        try:
            raise error
        except Exception:
            return Failure()

    deadlock = failure(pymysql.err.OperationalError(1213, "Deadlock found"))
    gone = failure(pymysql.err.OperationalError(2006, "MySQL server has gone away"))
    refused = failure(pymysql.err.OperationalError(2003, "Can't connect"))
    duplicate = failure(pymysql.err.IntegrityError(1062, "Duplicate entry"))
    assert storage._should_retry(deadlock, idempotent=False)
    assert storage._should_retry(refused, idempotent=False)
    assert storage._should_retry(gone, idempotent=True)
    assert not storage._should_retry(gone, idempotent=False)
    assert not storage._should_retry(duplicate, idempotent=True)
    assert getattr(storage._store_token_update, "idempotent", True) is False
    assert getattr(storage._store_authenticate, "idempotent", True) is True


async def connection_id(store) -> int:
    return (await store._interact(store._one, "SELECT CONNECTION_ID()"))[0]


@pytest_twisted.ensureDeferred
async def test_connections_killed_by_the_server_are_replaced_before_use(storage, database):
    request = await enroll(storage)
    before = await connection_id(storage)
    database.query(f"KILL {before}")
    # Not even the non-idempotent TokenUpdate fails: the dead connection is noticed first.
    update = checkin("TokenUpdate", Topic=TOPIC, Token=b"\x01", PushMagic="PM")
    await storage.store_token_update(request, update)
    assert await storage.retrieve_token_update_tally("DEVICE-1") == 2
    assert await connection_id(storage) != before


@pytest_twisted.ensureDeferred
async def test_connection_lifetime_and_idle_time(database):
    now = [0.0]
    store = MySQLStorage(
        database.dsn,
        parse_storage_options("max_open_conns=1,conn_max_lifetime=1m,conn_max_idle_time=10s"),
    )
    await store.open()
    store._pool._clock = lambda: now[0]
    try:
        first = await connection_id(store)
        now[0] = 5.0
        assert await connection_id(store) == first
        now[0] = 16.0  # idle for 11 s
        second = await connection_id(store)
        assert second != first
        for step in range(6):  # used every 9 s: never idle, but a minute old at last
            now[0] += 9.0
            assert await connection_id(store) == second
        now[0] += 9.0
        assert await connection_id(store) != second
    finally:
        await store.close()


# -- multi storage ---------------------------------------------------------------


def test_repeated_storage_flags_make_multi_storage():
    options = Options(environ={})
    options.parseOptions([
        "--dev", "--storage", "mysql", "--storage-dsn", "u@tcp(db:3306)/nanomdm",
        "--storage-options", "delete=1", "--storage", "inmem", "--storage-dsn", "",
        "--storage-options", "",
    ])  # fmt: skip
    assert options.settings.storage == StorageSpec("mysql", "u@tcp(db:3306)/nanomdm", "delete=1")
    assert options.settings.extra_storages == (StorageSpec("inmem", "", ""),)
    for argv in (
        ["--storage", "mysql", "--storage", "inmem", "--storage-dsn", "x"],
        ["--storage", "mysql", "--storage-dsn", "x", "--storage", "inmem",
         "--storage-dsn", "", "--storage-options", "delete=1"],
    ):  # fmt: skip
        with pytest.raises(UsageError, match="must have same number of --storage"):
            Options(environ={}).parseOptions(["--dev", *argv])


@pytest_twisted.ensureDeferred
async def test_server_on_multi_storage_writes_every_backend(tmp_path, database):
    async with serve(
        tmp_path,
        storage=StorageSpec("mysql", database.dsn, ""),
        extra_storages=(StorageSpec("inmem", "", ""),),
    ) as server:
        assert isinstance(server.storage, MultiStorage)
        device = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
        await device.enroll()
        mirror = server.storage.mirrors[0]
        assert await mirror.retrieve_token_update_tally(device.id) == 1
    assert database.query("SELECT token_update_tally FROM enrollments") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_a_deadlock_victim_runs_once_more_a_lost_commit_does_not(storage):
    attempts = []

    def flaky(txn, code):
        attempts.append(code)
        txn.execute("SELECT 1")
        if len(attempts) == 1:
            raise pymysql.err.OperationalError(code, "injected")
        return "done"

    assert await storage._interact(flaky, 1213) == "done"
    assert attempts == [1213, 1213]
    attempts.clear()
    with pytest.raises(pymysql.err.OperationalError):
        await storage._interact(not_idempotent(flaky), 2013)
    assert attempts == [2013]


# -- drivers ----------------------------------------------------------------------------

HAS_MYSQLCLIENT = importlib.util.find_spec("MySQLdb") is not None
# Every driver installed here; PyMySQL always is.
INSTALLED_DRIVERS = ["pymysql"] + (["mysqlclient"] if HAS_MYSQLCLIENT else [])


def test_driver_option_and_the_default_choice():
    assert parse_storage_options("driver=pymysql") == {"driver": "pymysql"}
    with pytest.raises(ValueError, match="invalid value for driver"):
        parse_storage_options("driver=oracle")
    default = "mysqlclient" if HAS_MYSQLCLIENT else "pymysql"
    assert MySQLStorage("u@tcp(h:1)/d").driver == default
    assert MySQLStorage("u@tcp(h:1)/d", {"driver": "pymysql"}).driver == "pymysql"
    # go-sql-driver's tls modes map onto PyMySQL's TLS settings.
    assert MySQLStorage("u@tcp(h:1)/d?tls=true").driver == "pymysql"


def test_mysqlclient_asked_for_where_it_is_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mysql_backend, "_has_mysqlclient", lambda: False)
    assert MySQLStorage("u@tcp(h:1)/d").driver == "pymysql"
    with pytest.raises(ValueError, match="mysqlclient is not installed"):
        MySQLStorage("u@tcp(h:1)/d", {"driver": "mysqlclient"})


@pytest.mark.parametrize("driver", INSTALLED_DRIVERS)
@pytest_twisted.ensureDeferred
async def test_each_installed_driver_serves_the_queue_and_survives_a_killed_connection(
    driver, database
):
    store = MySQLStorage(database.dsn, {"driver": driver, "max_open_conns": 1})
    await store.open()
    try:
        assert store._pool.dbapiName == {"mysqlclient": "MySQLdb", "pymysql": "pymysql"}[driver]
        request = await enroll(store)
        queued = command("CMD-DRIVER")
        assert await store.enqueue_command([request.enroll_id.id], queued) == {}
        assert await store.retrieve_next_command(request, False) == queued
        acknowledged = report("Acknowledged", "CMD-DRIVER")
        assert await store.report_and_next(request, acknowledged, False) is None
        before = await connection_id(store)
        database.query(f"KILL {before}")
        update = checkin("TokenUpdate", Topic=TOPIC, Token=b"\x03", PushMagic="PM3")
        await store.store_token_update(request, update)  # not idempotent: no retry needed
        assert await store.retrieve_token_update_tally(request.enroll_id.id) == 2
        assert await connection_id(store) != before
    finally:
        await store.close()
