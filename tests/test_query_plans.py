"""
The cost of a request does not grow with the tables: every statement uses an index.

Each backend gets a store seeded with 10,000 enrollments and 100,000 queue +
result rows (tools/seed.py), with fresh planner statistics.  The device and
API paths are then driven through the storage interface while a Recorder
keeps every statement sent, and each one is EXPLAINed with its own
parameters: no full scan of a big table (MariaDB: no type ALL or index, no
estimate of hundreds of rows; PostgreSQL: no Seq Scan; SQLite: no SCAN), but
for a page (ORDER BY ... LIMIT) read by walking an index in its order, which
stops at the limit.  Migration check-ins and row counts read whole tables by
design (admin and diagnostics) and are left out; the inspection overview's
counts read a whole index, never a table.  Last, 50 enrollments at once against the
seeded store: all succeed, none hits a deadlock or lock wait timeout.
"""

import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest_twisted
from twisted.internet import defer

from nanomdm_tw.mdm.request import MDMRequest
from nanomdm_tw.storage import QUEUE_ERROR_UNKNOWN
from nanomdm_tw.storage.mysql import MYSQL, MySQLStorage
from nanomdm_tw.storage.pgsql import PGSQL, PgSQLStorage
from nanomdm_tw.storage.dialect import Dialect
from nanomdm_tw.storage.inspection import EnrollmentFilter
from nanomdm_tw.storage.sqlite import SQLITE, SQLiteStorage
from nanomdm_tw.tools import seed

from . import mysqlserver, pgsqlserver
from .query_plans import Recorder, Statement, full_scans
from .storage_messages import TOPIC, checkin, command, enroll, report, retries_logged

ROWS = 100_000  # queue + result rows, over 10,000 enrollments


@dataclass
class Seeded:
    name: str
    dialect: Dialect
    dsn: str
    storage_class: type
    database: Any = None  # the throwaway database, for the servers

    def connect(self) -> Any:
        if self.database is None:
            return sqlite3.connect(SQLiteStorage(self.dsn).path)
        return self.database.connect()

    async def open(self, **options: Any) -> Any:
        store = self.storage_class(self.dsn, options)
        await store.open()
        return store


async def _seeded_sqlite(tmp_path_factory) -> Seeded:
    seeded = Seeded("sqlite", SQLITE, str(tmp_path_factory.mktemp("seeded")), SQLiteStorage)
    await (await seeded.open()).close()  # creates the schema
    return seeded


def _seeded_server(name: str) -> Seeded:
    server, dialect, storage_class = {
        "mysql": (mysqlserver, MYSQL, MySQLStorage),
        "pgsql": (pgsqlserver, PGSQL, PgSQLStorage),
    }[name]
    database = server.ThrowawayDatabase()
    return Seeded(name, dialect, database.dsn, storage_class, database)


@pytest_twisted.async_yield_fixture(scope="module", params=["sqlite", "mysql", "pgsql"])
async def seeded(request, tmp_path_factory):
    if request.param == "sqlite":
        store = await _seeded_sqlite(tmp_path_factory)
    else:
        store = _seeded_server(request.param)
    connection = store.connect()
    try:
        filled = seed.seed(connection, store.dialect, ROWS)
        seed.analyze(connection, store.dialect)
    finally:
        connection.close()
    assert (filled.enrollments, filled.rows) == (10_000, ROWS)
    yield store
    if store.database is not None:
        store.database.drop()


def _request(n: int) -> MDMRequest:
    """The MDMRequest of seeded enrollment ``n`` (a device, or a user channel)."""
    if seed.is_user_channel(n):
        fields = {"UserID": seed.user_channel_id(n).split(":")[1]}
        return MDMRequest(checkin("CheckOut", seed.device_id(n - 1), **fields).enroll_id)
    return MDMRequest(checkin("CheckOut", seed.device_id(n)).enroll_id)


CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


async def _check_ins(store) -> None:
    """Enrollment, re-enrollment of a device with a user channel, the user channel's messages."""
    await enroll(store, "PLAN-NEW-DEVICE")
    await enroll(store, seed.device_id(8))  # enrollment 9 is its user channel
    user = _request(9)
    user_fields = dict(UserID=seed.user_channel_id(9).split(":")[1], UserShortName="u9")
    udid = seed.device_id(8)
    await store.store_user_authenticate(user, checkin("UserAuthenticate", udid, **user_fields))
    await store.store_token_update(
        user,
        checkin("TokenUpdate", udid, Topic=TOPIC, Token=b"\x01", PushMagic="M", **user_fields),
    )
    await store.clear_queue(user)
    await store.disable(user)  # a user channel's CheckOut
    await store.disable(_request(10))  # a device's CheckOut
    device = _request(18)
    await store.store_bootstrap_token(
        device, checkin("SetBootstrapToken", seed.device_id(18), BootstrapToken=b"token")
    )
    await store.retrieve_bootstrap_token(
        device, checkin("GetBootstrapToken", seed.device_id(18))
    )
    await store.retrieve_token_update_tally(seed.device_id(18))
    for n in (20, 21, 22):
        store.touch(seed.enrollment_id(n))
    await store._last_seen.flush()


async def _queue(store) -> None:
    """Idle, each kind of report, enqueue to one and to many (two chunks), push info."""
    device = _request(28)
    udid = seed.device_id(28)
    assert await store.retrieve_next_command(device, False) is not None
    await store.report_and_next(device, report("Idle", "", udid), False)
    await store.report_and_next(device, report("NotNow", seed.command_uuid(28, 4), udid), True)
    await store.report_and_next(device, report("Error", seed.command_uuid(28, 3), udid), False)
    await store.store_command_report(
        device, report("Acknowledged", seed.command_uuid(28, 4), udid)
    )
    many = [seed.enrollment_id(n) for n in range(1000, 1600)]
    assert await store.enqueue_command([udid], command("PLAN-CMD-ONE")) == {}
    errors = await store.enqueue_command(many + ["PLAN-UNKNOWN"], command("PLAN-CMD-MANY"))
    assert errors == {"PLAN-UNKNOWN": QUEUE_ERROR_UNKNOWN}
    await store.retrieve_push_info([udid])
    await store.retrieve_push_info(many)


async def _certificates(store) -> None:
    """Push certificates and certificate authentication."""
    token = await store.store_push_cert(TOPIC, CERT_PEM, KEY_PEM)
    await store.retrieve_push_cert(TOPIC)
    await store.is_push_cert_stale(TOPIC, token)
    udid = seed.device_id(30)
    await store.has_cert_hash(seed.cert_hash(30))
    await store.enrollment_has_cert_hash(udid)
    await store.is_cert_hash_associated(udid, seed.cert_hash(30))
    await store.associate_cert_hash(udid, "ab" * 32)
    await store.enrollment_id_for_cert_hash(seed.cert_hash(30))


async def _with_delete(store) -> None:
    """delete=1: answers remove queue rows (the last one collects its command); so do clears."""
    device = _request(38)
    udid = seed.device_id(38)
    await store.report_and_next(device, report("Acknowledged", seed.command_uuid(38, 4), udid),
                                False)
    assert await store.enqueue_command([udid], command("PLAN-CMD-ONLY")) == {}
    await store.report_and_next(device, report("Acknowledged", "PLAN-CMD-ONLY", udid), False)
    await store.clear_queue(_request(48))


async def _inspection(store) -> None:
    """The inspection API's reads and queue edits: every filter, page and history."""
    first = seed.enrollment_id(100)
    await store.query_enrollments(EnrollmentFilter(), 100)
    await store.query_enrollments(EnrollmentFilter(), 100, after=first)
    await store.query_enrollments(EnrollmentFilter(), 100, offset=200)
    await store.query_enrollments(
        EnrollmentFilter(), 100, include_device_cert=True, include_unlock_token=True
    )
    ids = tuple(seed.enrollment_id(n) for n in range(200, 300))
    for wanted in [
        EnrollmentFilter(ids=ids),
        EnrollmentFilter(serials=("SERIAL00000200", "SERIAL00000300")),
        EnrollmentFilter(user_short_names=("user209", "user309")),
        EnrollmentFilter(types=("User",)),
        EnrollmentFilter(types=("Device", "User Enrollment (Device)")),
        EnrollmentFilter(enabled=False),
        EnrollmentFilter(enabled=True),
        EnrollmentFilter(topic=seed.TOPIC),
        EnrollmentFilter(user_id=seed.user_channel_id(209)),
        EnrollmentFilter(device_id=seed.device_id(208)),
        EnrollmentFilter(ids=ids, enabled=True, types=("Device",)),
        EnrollmentFilter(device_id=seed.device_id(208), user_short_names=("user209",)),
    ]:
        await store.query_enrollments(wanted, 100)
        await store.query_enrollments(wanted, 100, after=first)
    udid = seed.device_id(58)
    entries = await store.queued_commands(udid, 2)
    await store.queued_commands(udid, 2, after=entries[-1].cursor)
    await store.queued_commands(udid, 2, offset=1)
    history = await store.queued_commands(udid, 3, include_answered=True)
    await store.queued_commands(udid, 3, after=history[-1].cursor, include_answered=True)
    await store.retrieve_command(seed.command_uuid(58, 0))
    await store.command_deliveries(seed.command_uuid(58, 0), 50)
    await store.command_deliveries(seed.command_uuid(58, 0), 50, after=seed.enrollment_id(20))
    await store.remove_queued_command(udid, seed.command_uuid(58, 4))
    await store.remove_queued_command(udid, seed.command_uuid(58, 0))  # answered: False
    await store.clear_queue_by_id(seed.device_id(68))


async def _inspection_with_delete(store) -> None:
    """delete=1: a removed entry goes with its NotNow result, and the command if unreferenced."""
    await store.remove_queued_command(seed.device_id(78), seed.command_uuid(78, 3))
    await store.clear_queue_by_id(seed.device_id(88))


# Substrings of statements the run must have sent: the recorder saw the real work.
EXPECTED = [
    "INSERT INTO devices",
    "UPDATE enrollment_queue SET active = FALSE",
    "UPDATE enrollments SET enabled = FALSE",
    "UPDATE devices SET token_update",
    "INSERT INTO enrollments",
    "INSERT INTO users",
    "UPDATE devices SET bootstrap_token_b64",
    "SELECT bootstrap_token_b64",
    "UPDATE enrollments SET last_seen_at",
    "FROM enrollment_queue AS q",
    "INSERT INTO command_results",
    "INSERT INTO commands",
    "INSERT INTO enrollment_queue",
    "SELECT id, topic, push_magic, token_hex",
    "INSERT INTO push_certs",
    "FROM cert_auth_associations WHERE sha256",
    "INSERT INTO cert_auth_associations",
    "DELETE FROM enrollment_queue",
    "DELETE FROM command_results",
    "DELETE FROM commands",
    "FROM enrollments AS e WHERE e.device_id IN (SELECT d.id FROM devices",
    "FROM devices WHERE id IN",
    "FROM users AS u WHERE u.id = e.user_id",
    "FROM commands WHERE command_uuid IN",
    "FROM enrollment_queue AS q LEFT JOIN command_results AS r",
    "WHERE q.command_uuid = ?",
    "FROM commands WHERE command_uuid = ?",
    "UPDATE enrollment_queue SET active = FALSE, updated_at = CURRENT_TIMESTAMP WHERE id = ? "
    "AND command_uuid = ?",
    "DELETE FROM enrollment_queue WHERE id = ? AND command_uuid = ? AND NOT EXISTS",
]


@pytest_twisted.ensureDeferred
async def test_every_statement_of_the_device_and_api_paths_uses_an_index(seeded):
    store = await seeded.open()
    deleting = await seeded.open(delete=True)
    recorders = [Recorder(store), Recorder(deleting)]
    try:
        await store.ping()  # /readyz's
        await _check_ins(store)
        await _queue(store)
        await _certificates(store)
        await _inspection(store)
        await _with_delete(deleting)
        await _inspection_with_delete(deleting)
    finally:
        await store.close()
        await deleting.close()
    statements = [s for r in recorders for s in r.distinct()]
    # The database servers collect a command in a second transaction (networked.py).
    second_phase = ["FOR UPDATE SKIP LOCKED"] if seeded.database is not None else []
    for expected in EXPECTED + second_phase:
        assert any(expected in s.query for s in statements), expected
    connection = seeded.connect()
    try:
        scans = {
            s.query: problems
            for s in statements
            if (problems := full_scans(connection, seeded.dialect, s))
        }
    finally:
        connection.close()
    assert not scans, "full scans:\n" + "\n".join(
        f"{query}\n    {'; '.join(problems)}" for query, problems in scans.items()
    )


@pytest_twisted.ensureDeferred
async def test_whole_table_counts_read_an_index_not_the_table(seeded):
    """The overview's counts (enrollments by type and enabled, pending entries) read indexes."""
    if seeded.name == "pgsql":
        # As autovacuum keeps it on a server in service: pages marked all-visible,
        # without which PostgreSQL never counts over an index alone.
        connection = seeded.connect()
        try:
            connection.autocommit = True
            connection.execute("VACUUM enrollments, enrollment_queue, command_results")
        finally:
            connection.close()
    store = await seeded.open()
    recorder = Recorder(store)
    try:
        counts = await store.enrollment_counts()
        pending = await store.pending_count()
    finally:
        await store.close()
    # Seeded (the other tests add a few): 10,000 enrollments, one in ten a user
    # channel; per enrollment one pending entry and one NotNow.
    assert sum(counts.values()) >= 10_000 and counts[("User", True)] >= 999
    assert pending >= 2 * 10_000 - 100
    connection = seeded.connect()
    try:
        scans = {
            s.query: problems
            for s in recorder.distinct()
            if (problems := full_scans(connection, seeded.dialect, s, whole=True))
        }
    finally:
        connection.close()
    assert len(recorder.distinct()) == 2
    if seeded.name == "pgsql":
        # PostgreSQL prices a hash join of the two narrow queue tables, read whole,
        # below any index for this count, and so it should at this size; the count
        # is for overviews and sampling, never a request's.
        scans = {query: found for query, found in scans.items() if "enrollment_queue" not in query}
    assert not scans, scans


# NanoMDM's clear-queue statement, as this storage sent it before: an OR across an
# IN (subquery), which no index can serve.
OLD_CLEAR_QUEUE = (
    "UPDATE enrollment_queue SET active = FALSE, updated_at = CURRENT_TIMESTAMP "
    "WHERE (id = ? OR id IN (SELECT e.id FROM enrollments AS e WHERE e.device_id = ?)) "
    "AND active = TRUE AND NOT EXISTS (SELECT 1 FROM command_results AS r "
    "WHERE r.id = enrollment_queue.id AND r.command_uuid = enrollment_queue.command_uuid "
    "AND r.status != 'NotNow')"
)


def test_a_full_scan_is_found(seeded):
    """The check can fail: a statement without a usable index is reported."""
    connection = seeded.connect()
    try:
        unindexed = Statement("SELECT id FROM enrollment_queue WHERE priority = ?", (1,))
        assert full_scans(connection, seeded.dialect, unindexed)
        if seeded.name != "sqlite":  # SQLite's OR optimisation does serve this one
            old = Statement(OLD_CLEAR_QUEUE, (seed.device_id(8), seed.device_id(8)))
            assert full_scans(connection, seeded.dialect, old)
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_fifty_enrollments_at_once_on_a_seeded_store(seeded):
    """New devices and re-enrolling seeded ones (with queues to clear) together."""
    store = await seeded.open(max_open_conns=20)
    udids = [f"CONCURRENT-{i:02d}" for i in range(35)]
    reenrolling = range(5008, 5158, 10)  # 15 devices, each with a user channel (n + 1)
    udids += [seed.device_id(n) for n in reenrolling]
    answering = range(6000, 6500, 10)  # meanwhile, 50 other devices answer a command
    try:
        with retries_logged() as retries:
            await defer.gatherResults(
                [defer.ensureDeferred(enroll(store, udid)) for udid in udids]
                + [
                    store.report_and_next(
                        _request(n),
                        report("Acknowledged", seed.command_uuid(n, 4), seed.device_id(n)),
                        False,
                    )
                    for n in answering
                ],
                consumeErrors=True,
            )
        info = await store.retrieve_push_info(udids)
        again = [
            await store.retrieve_next_command(_request(n + user), False)
            for n in reenrolling
            for user in (0, 1)
        ]
    finally:
        await store.close()
    assert sorted(info) == sorted(udids)
    assert again == [None] * 30  # their seeded queues were cleared, user channels' too
    assert retries == []  # no deadlock, no lock wait timeout


@pytest_twisted.ensureDeferred
async def test_seed_store_fills_a_sqlite_store_with_history(tmp_path):
    """What the bench's --seed-rows gets: enrollments, queues, results of every outcome."""
    folder = str(tmp_path / "db")
    store = SQLiteStorage(folder)
    await store.open()
    await store.close()
    assert seed.seed_store("sqlite", folder, 1000) == seed.Seeded(100, 600, 400)
    connection = sqlite3.connect(SQLiteStorage(folder).path)
    try:
        counted = connection.execute(
            "SELECT (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM users), "
            "(SELECT COUNT(*) FROM enrollment_queue WHERE active), "
            "(SELECT COUNT(*) FROM command_results WHERE status = 'NotNow')"
        ).fetchone()
    finally:
        connection.close()
    assert counted == (90, 10, 500, 100)
