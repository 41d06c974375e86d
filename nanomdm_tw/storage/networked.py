"""
What the database-server backends (MySQL, PostgreSQL) share.

Unlike SQLite, these are shared by many servers and reached over a network:
a pool of several connections with Go-style lifetimes, a schema created by
the schema command rather than at start-up, the schema version read off the
tables (a database NanoMDM created counts as version 1), and ``delete=1``
in two transactions so that enrollments answering one command together do
not queue up on that command's row.

Connections are in autocommit mode and an interaction's transaction begins
at its first statement that writes or takes locks: work that only reads
(an Idle check-in on an empty queue) is its statements alone, with no
BEGIN or COMMIT round trip.  Reads before the first write run each on the
latest committed data, as every statement does under PostgreSQL's READ
COMMITTED; an interaction needing one snapshot for several reads says so
with ``one_snapshot``.
"""

import re
import select
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib.resources import files
from typing import Any

from twisted.enterprise.adbapi import Connection, ConnectionPool, Transaction
from twisted.python.failure import Failure

from ..mdm.messages import CommandReport
from . import NOT_NOW
from .interfaces import StorageUnreachable
from .dialect import schema_files
from .sql import SQLStorage
from .threadpool import SharedQueueThreadPool

DEFAULT_MAX_OPEN_CONNS = 10
DEFAULT_MIN_OPEN_CONNS = 3

# Past the server's own limit, how long the socket waits before giving a
# silent server up: the server's error, when it can send one, comes first.
SOCKET_GRACE_SECONDS = 5.0


# A statement that neither writes nor locks: a plain SELECT.
_PLAIN_READ = re.compile(
    r"\s*SELECT\b(?!.*\b(?:FOR\s+(?:UPDATE|SHARE)|LOCK\s+IN\s+SHARE\s+MODE)\b)",
    re.IGNORECASE | re.DOTALL,
)


@lru_cache(maxsize=1024)
def needs_transaction(query: str) -> bool:
    """Whether a statement writes or locks, so must run inside the transaction."""
    return _PLAIN_READ.match(query) is None


class LazyConnection(Connection):
    """adbapi's connection wrapper, with nothing to commit until a transaction was begun."""

    in_transaction = False

    def commit(self) -> None:
        if self.in_transaction:
            self.in_transaction = False
            self._connection.commit()

    def rollback(self) -> None:
        self.in_transaction = False
        super().rollback()


class LazyTransaction(Transaction):
    """
    adbapi's cursor wrapper on an autocommit connection: the first statement
    that writes or locks begins the transaction, in the same round trip when
    the driver takes several statements at once (the pool's ``merges_begin``).
    """

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def begin(self) -> None:
        self._connection.in_transaction = True
        self._cursor.execute("BEGIN")

    def execute(self, query: str, args: Any = None) -> None:
        if self._connection.in_transaction or not needs_transaction(query):
            self._cursor.execute(query, args)
        elif self._pool.merges_begin:
            self._connection.in_transaction = True
            self._cursor.execute("BEGIN; " + query, args)
            self._cursor.nextset()  # from BEGIN's result to the statement's
        else:
            self.begin()
            self._cursor.execute(query, args)

    def executemany(self, query: str, rows: list[tuple]) -> None:
        if not self._connection.in_transaction:
            self.begin()
        self._cursor.executemany(query, rows)

    def commit(self) -> None:
        self._connection.commit()


class LifetimePool(ConnectionPool):
    """
    adbapi's pool with Go's ``SetConnMaxLifetime`` / ``SetConnMaxIdleTime``.

    A pooled connection is replaced before use when it is too old, has been
    idle too long, or the server has closed it (a restart, or a session the
    server ended: the idle socket turns readable, which a healthy idle
    connection's never is).
    """

    connectionFactory = LazyConnection
    transactionFactory = LazyTransaction

    def __init__(self, *args: Any, max_lifetime: float = 0.0, max_idle_time: float = 0.0,
                 merges_begin: bool = False, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.merges_begin = merges_begin
        self._use_shared_queue()
        self.max_lifetime = max_lifetime
        self.max_idle_time = max_idle_time
        self._clock = clock
        self._opened_at: dict[int, float] = {}
        self._used_at: dict[int, float] = {}

    def _use_shared_queue(self) -> None:
        # adbapi makes a Twisted ThreadPool, and starts it from __init__ when
        # the reactor is running already: swapped for ours before its first use.
        if not isinstance(self.threadpool, SharedQueueThreadPool):
            self.threadpool = SharedQueueThreadPool(self.min, self.max)

    def start(self) -> None:
        self._use_shared_queue()
        super().start()

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

    def socket_of(self, conn: Any) -> Any:
        """Something select() can watch for the connection, or None when it is closed."""
        return getattr(conn, "_sock", None)

    def _worn_out(self, conn: Any, tid: int, now: float) -> bool:
        if self.max_lifetime and now - self._opened_at[tid] >= self.max_lifetime:
            return True
        if self.max_idle_time and now - self._used_at[tid] >= self.max_idle_time:
            return True
        sock = self.socket_of(conn)
        if sock is None:
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)


def report_missing(expected: list[str], present: set[str]) -> list[str]:
    """What of ``expected`` is not ``present``; a missing table once, not per column."""
    missing = [item for item in expected if item not in present]
    absent_tables = {m.split()[1] for m in missing if m.startswith("table ")}
    return [
        m for m in missing
        if m.startswith(("table ", "view ")) or m.split()[1].split(".")[0] not in absent_tables
    ]


def schema_sql(dialect: str) -> str:
    """A dialect's schema files, concatenated, for people who apply DDL themselves."""
    folder = files(__package__) / "schema" / dialect
    return "\n".join(
        (folder / name).read_text()
        for name in sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))
    )


class NetworkedStorage(SQLStorage):
    """A backend on a database server; subclasses bring the driver, DSN and schema report."""

    product: str  # for messages: "MySQL", "PostgreSQL"

    def __init__(self, options: dict[str, Any] | None, reactor: Any):
        super().__init__(options)
        options = options or {}
        self._reactor = reactor
        self._max_open = options.get("max_open_conns", DEFAULT_MAX_OPEN_CONNS)
        self._min_open = min(options.get("min_open_conns", DEFAULT_MIN_OPEN_CONNS), self._max_open)
        self._max_lifetime = options.get("conn_max_lifetime", 0.0)
        self._max_idle_time = options.get("conn_max_idle_time", 0.0)

    def _pool_options(self) -> dict[str, Any]:
        """The pool settings every driver gets."""
        return dict(
            cp_min=self._min_open,
            cp_max=self._max_open,
            cp_reconnect=True,
            cp_noisy=False,
            cp_reactor=self._reactor,
            max_lifetime=self._max_lifetime,
            max_idle_time=self._max_idle_time,
            merges_begin=self.merges_begin,
        )

    # Whether an error means the server could not be reached (or the connection died).
    is_connection_error: Callable[[BaseException], bool]
    # Whether a failed transaction may always run again: rolled back whole (deadlock,
    # lock wait) or never started (no connection).
    always_retryable: Callable[[BaseException], bool]

    # -- transactions begun by the first statement that needs one (LazyTransaction) --

    # Whether the driver sends "BEGIN; <statement>" as one round trip (multi-statements).
    merges_begin: bool

    @staticmethod
    def _in_transaction(txn: LazyTransaction | Any) -> bool:
        # A plain cursor (the schema command's) is in its connection's transaction.
        return getattr(txn, "in_transaction", True)

    def _begin(self, txn: LazyTransaction, fn: Callable[..., Any]) -> None:
        if getattr(fn, "one_snapshot", False):
            self._count_round_trip()
            txn.begin()

    def _will_commit(self, txn: LazyTransaction) -> bool:
        return self._in_transaction(txn)

    def _execute(self, txn: LazyTransaction, query: str, args: Iterable[Any] = ()) -> None:
        began = not self._in_transaction(txn)
        super()._execute(txn, query, args)
        if began and self._in_transaction(txn) and not self.merges_begin:
            self._count_round_trip()  # the BEGIN sent before it

    def _execute_many(self, txn: LazyTransaction, query: str, rows: list[tuple]) -> None:
        if not self._in_transaction(txn):
            self._count_round_trip()  # the BEGIN sent before it
        super()._execute_many(txn, query, rows)

    def _commit(self, txn: LazyTransaction) -> None:
        """Commit what the interaction wrote so far; what follows begins anew."""
        if self._in_transaction(txn):
            self._count_round_trip()
            txn.commit()

    def _should_retry(self, failure: Failure, idempotent: bool) -> bool:
        """Always when nothing took effect; after a lost connection only if idempotent."""
        error = failure.value
        if self.always_retryable(error):
            return True
        return idempotent and self.is_connection_error(error)

    # The schema: reported by these, created by the schema command.
    missing_schema: Callable[[Transaction], list[str]]
    # What one schema file creates, in the words missing_schema reports.
    expected_schema: Callable[[int], list[str]]
    # Names every column of the connected database as "table.column".
    columns_query: str

    @classmethod
    def present_columns(cls, txn: Transaction) -> set[str]:
        txn.execute(cls.columns_query)
        return {row[0] for row in txn.fetchall()}

    async def open(self) -> None:
        """Connect and check the schema; creating it is the schema command's job."""
        self._pool = self._make_pool()
        try:
            missing = await self._interact(type(self).missing_schema)
        except Exception as e:
            if not self.is_connection_error(e):
                raise
            await self.close()
            raise StorageUnreachable(f"{self.product} server unreachable: {e}") from e
        if missing:
            await self.close()
            raise RuntimeError(
                f"{self.product} database {self.dsn.database!r} lacks {', '.join(missing)}: "
                f"create or upgrade it with nanomdm-tw-schema {self.dialect.name} --dsn DSN"
            )
        self._start_serving()

    def _schema_version(self, txn: Transaction) -> int:
        """
        The newest version whose schema file, and every one before, is all there.

        A database NanoMDM created counts as version 1 (its tables are our first
        file's); an empty one as 0.
        """
        if not self.present_columns(txn):
            return 0
        missing = set(self.missing_schema(txn))
        version = 1
        for number, _ in schema_files(self.dialect.name):
            if missing.intersection(self.expected_schema(number)):
                break
            version = number
        return version

    def _set_schema_version(self, txn: Transaction, version: int) -> None:
        """Nothing to record: the version is read off the tables."""

    def _schema_present(self, txn: Transaction, version: int) -> bool:
        """
        A file whose schema is all there is not run again: a later file may
        be, when an earlier one's index was dropped (the version is read off
        the tables, and stops at the first file with something missing).
        """
        return not set(self.missing_schema(txn)).intersection(self.expected_schema(version))

    # -- delete=1 -------------------------------------------------------------

    def _record_report(self, txn, enrollment_id: str, report: CommandReport) -> None:
        if self._delete and not report.is_idle and report.status != NOT_NOW:
            self._finish_command(txn, enrollment_id, report)
        else:
            super()._record_report(txn, enrollment_id, report)

    def _finish_command(self, txn, enrollment_id: str, report: CommandReport) -> None:
        """
        Drop this enrollment's queue row and result, commit, then collect the command.

        The reference check must see the other enrollments' committed deletes
        (in one transaction each would still see the others' rows, and none
        would delete the command), so it runs after our COMMIT, in a second
        transaction.  Enrollments finishing together may all find the command
        unreferenced; SKIP LOCKED lets the first collect it while the others
        move on instead of waiting on its row.  Running this twice is harmless.
        """
        command_uuid = report.command_uuid
        key = (enrollment_id, command_uuid)
        self._execute(txn, "DELETE FROM enrollment_queue WHERE id = ? AND command_uuid = ?", key)
        if txn.rowcount == 0:
            return self._not_queued(enrollment_id, report)
        self._execute(txn, "DELETE FROM command_results WHERE id = ? AND command_uuid = ?", key)
        self._commit(txn)
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
