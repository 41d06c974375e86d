"""
The MySQL backend: NanoMDM's MySQL database, shared by any number of servers.

PyMySQL under an adbapi pool.  The SQL is the shared layer's (sql.py); what
is MySQL's own lives here: the pool (reconnecting, with Go-style connection
lifetimes), which errors are worth a second try, the schema as NanoMDM's
tables plus our ``enrollment_queue.seq``, and ``delete=1`` split into two
transactions so that many enrollments answering one command do not queue up
on that command's row.

Works on MySQL 8.0.19+ and MariaDB 10.6+ (SKIP LOCKED) with the same SQL.
"""

import re
import select
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool, Transaction
from twisted.python.failure import Failure

from ..mdm.messages import CommandReport
from . import NOT_NOW
from .dsn import MySQLDSN, parse_dsn
from .sql import Dialect, SQLStorage, schema_files

MYSQL = Dialect(
    name="mysql",
    paramstyle="format",
    upsert_style="on_duplicate_key",
    # NanoMDM's order (created_at), with seq breaking same-second ties;
    # served in index order by idx_queue_next.
    queue_order="q.priority DESC, q.created_at, q.seq",
    share_lock=" LOCK IN SHARE MODE",  # MySQL 8 and MariaDB both still accept it
)

DEFAULT_MAX_OPEN_CONNS = 10
DEFAULT_MIN_OPEN_CONNS = 3

# The whole transaction was rolled back: running it again is always safe.
_ROLLED_BACK = {1205, 1213}  # lock wait timeout, deadlock
# Nothing reached the server.
_NOT_CONNECTED = {2002, 2003}  # cannot connect (socket, TCP)
# The connection died mid-way: the COMMIT may or may not have happened.
_CONNECTION_LOST = {2006, 2013, 2055}  # gone away, lost during query, lost


def _error_code(error: BaseException) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_connection_error(error: BaseException) -> bool:
    """The database is unreachable or the connection died (as opposed to a bad query)."""
    import pymysql

    if isinstance(error, (ConnectionLost, pymysql.err.InterfaceError)):
        return True
    return _error_code(error) in _NOT_CONNECTED | _CONNECTION_LOST


class MySQLPool(ConnectionPool):
    """
    adbapi's pool with Go's ``SetConnMaxLifetime`` / ``SetConnMaxIdleTime``.

    A pooled connection is replaced before use when it is too old, has been
    idle too long, or the server has closed it (a server restart leaves every
    idle connection half-closed: the socket is readable, which a healthy idle
    MySQL connection never is).
    """

    def __init__(self, *args: Any, max_lifetime: float = 0.0, max_idle_time: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_lifetime = max_lifetime
        self.max_idle_time = max_idle_time
        self._clock = clock
        self._opened_at: dict[int, float] = {}
        self._used_at: dict[int, float] = {}

    def connect(self) -> Any:
        tid = self.threadID()
        conn = self.connections.get(tid)
        now = self._clock()
        if conn is not None and self._worn_out(conn, tid, now):
            self.disconnect(conn)
        if self.connections.get(tid) is None:
            self._opened_at[tid] = now
        self._used_at[tid] = now
        return super().connect()

    def _worn_out(self, conn: Any, tid: int, now: float) -> bool:
        if self.max_lifetime and now - self._opened_at[tid] >= self.max_lifetime:
            return True
        if self.max_idle_time and now - self._used_at[tid] >= self.max_idle_time:
            return True
        sock = getattr(conn, "_sock", None)
        if sock is None:
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)


class MySQLStorage(SQLStorage):
    dialect = MYSQL

    def __init__(self, dsn: str, options: dict[str, Any] | None = None, reactor: Any = None):
        super().__init__(options)
        options = options or {}
        self.dsn: MySQLDSN = parse_dsn(dsn)
        self._reactor = reactor
        self._max_open = options.get("max_open_conns", DEFAULT_MAX_OPEN_CONNS)
        self._min_open = min(options.get("min_open_conns", DEFAULT_MIN_OPEN_CONNS), self._max_open)
        self._max_lifetime = options.get("conn_max_lifetime", 0.0)
        self._max_idle_time = options.get("conn_max_idle_time", 0.0)

    def _make_pool(self) -> ConnectionPool:
        return MySQLPool(
            "pymysql",
            autocommit=False,
            cp_min=self._min_open,
            cp_max=self._max_open,
            cp_reconnect=True,
            cp_noisy=False,
            cp_reactor=self._reactor,
            max_lifetime=self._max_lifetime,
            max_idle_time=self._max_idle_time,
            **self.dsn.connect_kwargs(),
        )

    async def open(self) -> None:
        """Connect and check the schema; creating it is the schema command's job."""
        self._pool = self._make_pool()
        missing = await self._interact(missing_schema)
        if missing:
            await self.close()
            raise RuntimeError(
                f"MySQL database {self.dsn.database!r} lacks {', '.join(missing)}: "
                "create or upgrade it with nanomdm-tw-schema mysql --dsn DSN"
            )
        self._start_last_seen()

    def _schema_version(self, txn: Transaction) -> int:
        """Read from the tables themselves, so a database NanoMDM created counts as version 1."""
        present = _columns(txn)
        if not present:
            return 0
        return 2 if "enrollment_queue.seq" in present else 1

    def _set_schema_version(self, txn: Transaction, version: int) -> None:
        """Nothing to record: the version is read off the tables."""

    def _should_retry(self, failure: Failure, idempotent: bool) -> bool:
        error = failure.value
        code = _error_code(error)
        if code in _ROLLED_BACK | _NOT_CONNECTED:
            return True
        return idempotent and is_connection_error(error)

    # -- delete=1 -------------------------------------------------------------

    def _record_report(self, txn, enrollment_id: str, report: CommandReport) -> None:
        if self._delete and not report.is_idle and report.status != NOT_NOW:
            self._finish_command(txn, enrollment_id, report.command_uuid)
        else:
            super()._record_report(txn, enrollment_id, report)

    def _finish_command(self, txn, enrollment_id: str, command_uuid: str) -> None:
        """
        Drop this enrollment's queue row and result, commit, then collect the command.

        The reference check must see the other enrollments' committed deletes,
        so it runs after our COMMIT, in a second transaction.  Enrollments
        finishing together may all find the command unreferenced; SKIP LOCKED
        lets the first collect it while the others move on instead of waiting
        on its row.  Running this twice is harmless.
        """
        key = (enrollment_id, command_uuid)
        self._execute(txn, "DELETE FROM enrollment_queue WHERE id = ? AND command_uuid = ?", key)
        if txn.rowcount == 0:
            self._log.info(
                "report for command {command_uuid} not queued to {enrollment_id}: ignored",
                command_uuid=command_uuid,
                enrollment_id=enrollment_id,
            )
            return
        self._execute(txn, "DELETE FROM command_results WHERE id = ? AND command_uuid = ?", key)
        self._execute(txn, "COMMIT")
        referenced = self._one(
            txn,
            "SELECT EXISTS (SELECT 1 FROM enrollment_queue WHERE command_uuid = ?) "
            "OR EXISTS (SELECT 1 FROM command_results WHERE command_uuid = ?)",
            (command_uuid, command_uuid),
        )[0]
        if referenced:
            return
        claimed = self._one(
            txn,
            "SELECT command_uuid FROM commands WHERE command_uuid = ? FOR UPDATE SKIP LOCKED",
            (command_uuid,),
        )
        if claimed is not None:
            # Locking reads: a queue row committed since our check keeps the command.
            self._collect_commands(txn, [command_uuid])


# -- the schema -----------------------------------------------------------------

_CREATE = re.compile(r"^CREATE (?:OR REPLACE )?(TABLE|VIEW) (\w+)", re.M)
_ALTER = re.compile(r"^ALTER TABLE (\w+)", re.M)
_COLUMN = re.compile(r"^\s+(?:ADD COLUMN )?(\w+) [A-Z]+", re.M)
_INDEX = re.compile(r"^\s+(?:ADD )?INDEX (\w+) \(", re.M)
_NOT_COLUMNS = {"PRIMARY", "FOREIGN", "CHECK", "INDEX", "UNIQUE", "CONSTRAINT", "ADD",
                "REFERENCES", "ON", "SELECT", "FROM", "ORDER", "INNER", "LEFT"}


def expected_schema() -> list[str]:
    """Every table, view, column and named index our schema files create, as report words."""
    expected = []
    for _, statements in schema_files("mysql"):
        for statement in statements:
            created = _CREATE.match(statement)
            altered = _ALTER.match(statement)
            if created and created.group(1) == "VIEW":
                expected.append(f"view {created.group(2)}")
                continue
            if created:
                table = created.group(2)
                expected.append(f"table {table}")
            elif altered:
                table = altered.group(1)
            else:
                continue
            expected += [
                f"column {table}.{name}"
                for name in _COLUMN.findall(statement)
                if name not in _NOT_COLUMNS
            ]
            expected += [f"index {table}.{name}" for name in _INDEX.findall(statement)]
    return expected


def _columns(txn) -> set[str]:
    txn.execute(
        "SELECT CONCAT(table_name, '.', column_name) FROM information_schema.columns "
        "WHERE table_schema = DATABASE()"
    )
    return {row[0] for row in txn.fetchall()}


def missing_schema(txn) -> list[str]:
    """What the connected database lacks of our schema, in report words."""
    present = {f"column {c}" for c in _columns(txn)}
    txn.execute(
        "SELECT table_type, table_name FROM information_schema.tables "
        "WHERE table_schema = DATABASE()"
    )
    for table_type, name in txn.fetchall():
        present.add(("view " if table_type == "VIEW" else "table ") + name)
    txn.execute(
        "SELECT DISTINCT CONCAT(table_name, '.', index_name) FROM information_schema.statistics "
        "WHERE table_schema = DATABASE()"
    )
    present.update(f"index {row[0]}" for row in txn.fetchall())
    missing = [item for item in expected_schema() if item not in present]
    absent_tables = {m.split()[1] for m in missing if m.startswith("table ")}
    # A missing table is reported once, not with each of its columns.
    return [
        m for m in missing
        if m.startswith(("table ", "view ")) or m.split()[1].split(".")[0] not in absent_tables
    ]


def schema_sql() -> str:
    """The schema files, concatenated, for people who apply DDL themselves."""
    folder = files(__package__) / "schema" / "mysql"
    return "\n".join(
        (folder / name).read_text()
        for name in sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))
    )
