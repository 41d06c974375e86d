"""
The PostgreSQL backend: NanoMDM's PostgreSQL database, shared by any number of servers.

psycopg 3 under an adbapi pool.  The SQL is the shared layer's (sql.py); what
is PostgreSQL's own lives here: NanoMDM's (lib/pq) DSN forms and defaults,
raw plists bound as text (NanoMDM's columns are TEXT), which errors are
worth a second try, the schema as NanoMDM's tables plus our
``enrollment_queue.seq``, and ``delete=1`` in two transactions as for MySQL.

Works on PostgreSQL 11+ (INCLUDE indexes, SKIP LOCKED, IDENTITY columns).
"""

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool

from .networked import SOCKET_GRACE_SECONDS, LifetimePool, NetworkedStorage, report_missing
from .dialect import Dialect, schema_files

PGSQL = Dialect(
    name="pgsql",
    paramstyle="format",
    upsert_style="on_conflict",
    # NanoMDM's order (created_at), with seq breaking ties between commands
    # queued in one transaction; served in index order by idx_queue_next.
    queue_order="q.priority DESC, q.created_at, q.seq",
    share_lock=" FOR SHARE",
    # NanoMDM's columns are TIMESTAMP without time zone, written as CURRENT_TIMESTAMP
    # in the session's zone: read back in that zone.
    epoch="EXTRACT(EPOCH FROM CAST({} AS TIMESTAMPTZ))",
    from_epoch="to_timestamp(?)",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)

# The whole transaction was rolled back: running it again is always safe.
_ROLLED_BACK = {"40001", "40P01"}  # serialization failure, deadlock detected
# The server ended a statement running past --storage-timeout: statement_timeout
# (query_canceled) or lock_timeout (lock_not_available).
_TIMED_OUT = {"57014", "55P03"}
# The server ended the session (pg_terminate_backend, shutdown, crash recovery).
_SESSION_ENDED = {"57P01", "57P02", "57P03"}

# lib/pq's defaults where libpq's differ: TLS required, TCP to localhost.
_LIB_PQ_DEFAULTS = {"sslmode": "require"}


class CannotConnect(Exception):
    """No connection could be opened: nothing reached the server, so any work may be retried."""


@dataclass(frozen=True)
class PgSQLDSN:
    """A DSN in either lib/pq form (``postgres://`` URL or ``key=value`` pairs), parsed."""

    params: dict[str, str]

    @property
    def conninfo(self) -> str:
        return make_conninfo(**self.params)

    @property
    def database(self) -> str:
        return self.params.get("dbname", self.params.get("user", ""))

    def redacted(self) -> str:
        """The DSN for logs: the password replaced."""
        shown = {k: ("***" if k == "password" else v) for k, v in self.params.items()}
        return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))


def parse_pgsql_dsn(dsn: str) -> PgSQLDSN:
    """Parse a NanoMDM PostgreSQL DSN with lib/pq's defaults; ValueError names what is wrong."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.ProgrammingError as e:
        raise ValueError(f"invalid PostgreSQL DSN: {e}") from None
    for name, value in _LIB_PQ_DEFAULTS.items():
        if name not in params and f"PG{name.upper()}" not in os.environ:
            params[name] = value
    if "host" not in params and "hostaddr" not in params and "PGHOST" not in os.environ:
        params["host"] = "localhost"
    return PgSQLDSN(params)


def with_timeouts(dsn: PgSQLDSN, timeout: float) -> str:
    """
    The DSN's conninfo with --storage-timeout as the server's statement and
    lock timeouts, and, unless the DSN sets its own, as the connect timeout
    and (5 s longer) the time a silent server is given before its connection
    is closed.  libpq has no read timeout: without these a connection to a
    vanished host (or through a firewall that dropped it) holds its pool
    thread for the kernel's 15 minutes of retransmissions, or hours of
    keepalive: a pool whose connections all went there serves nothing until then.
    """
    params = dict(dsn.params)
    milliseconds = max(1, round(timeout * 1000))
    limits = f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
    params["options"] = " ".join(filter(None, (params.get("options"), limits)))
    silent = timeout + SOCKET_GRACE_SECONDS
    defaults = {
        # libpq takes whole seconds, and treats less than 2 as 2.
        "connect_timeout": max(2, math.ceil(timeout)),
        # Sent and unacknowledged this long (milliseconds): the host is gone.
        "tcp_user_timeout": round(silent * 1000),
        # Nothing heard this long while a statement runs: probe the host, every second.
        "keepalives_idle": math.ceil(silent),
        "keepalives_interval": 1,
        "keepalives_count": math.ceil(SOCKET_GRACE_SECONDS),
    }
    for name, value in defaults.items():
        params.setdefault(name, str(value))
    return make_conninfo(**params)


class _BytesAsText(Dumper):
    """Raw plists go to NanoMDM's TEXT columns as text, as lib/pq sends them."""

    oid = psycopg.adapters.types["text"].oid

    def dump(self, obj: bytes) -> bytes:
        return bytes(obj)


def _prepare_connection(connection: psycopg.Connection) -> None:
    connection.adapters.register_dumper(bytes, _BytesAsText)


class PgSQLPool(LifetimePool):
    """The lifetime pool for psycopg; a server that cannot be reached is CannotConnect."""

    def connect(self) -> Any:
        try:
            return super().connect()
        except psycopg.OperationalError as e:
            raise CannotConnect(str(e)) from e

    def socket_of(self, conn: Any) -> Any:
        # A backend ended by the server (restart, pg_terminate_backend) sends a
        # FATAL message before closing: its idle connection turns readable.
        return None if conn.closed else conn


def is_connection_error(error: BaseException) -> bool:
    """The database is unreachable or the session died (as opposed to a bad query)."""
    if isinstance(error, (ConnectionLost, CannotConnect, psycopg.InterfaceError)):
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    sqlstate = error.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _SESSION_ENDED


class PgSQLStorage(NetworkedStorage):
    dialect = PGSQL
    product = "PostgreSQL"
    merges_begin = False  # parameters are bound server-side: one statement per message

    def __init__(self, dsn: str, options: dict[str, Any] | None = None, reactor: Any = None):
        super().__init__(options, reactor)
        self.dsn = parse_pgsql_dsn(dsn)

    def _make_pool(self) -> ConnectionPool:
        return PgSQLPool(
            "psycopg",
            with_timeouts(self.dsn, self._timeout) if self._timeout else self.dsn.conninfo,
            autocommit=True,
            cp_openfun=_prepare_connection,
            **self._pool_options(),
        )

    def _binary(self, value: bytes) -> psycopg.Binary:
        """BYTEA, as NanoMDM's schema has it (plain bytes are bound as text here)."""
        return psycopg.Binary(value)

    def _refuses_value(self, error: BaseException) -> bool:
        """SQLSTATE class 22, data exception: too long for a VARCHAR column, say."""
        return isinstance(error, psycopg.DataError)

    @staticmethod
    def always_retryable(error: BaseException) -> bool:
        return isinstance(error, CannotConnect) or (
            getattr(error, "sqlstate", None) in _ROLLED_BACK
        )

    columns_query = (
        "SELECT table_name || '.' || column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    )

    @staticmethod
    def missing_schema(txn) -> list[str]:
        return missing_schema(txn)

    @staticmethod
    def expected_schema(version: int) -> list[str]:
        return expected_schema(version)

    is_connection_error = staticmethod(is_connection_error)

    def _timed_out(self, error: BaseException) -> bool:
        return getattr(error, "sqlstate", None) in _TIMED_OUT


# -- the schema -----------------------------------------------------------------

_CREATE_TABLE = re.compile(r"^CREATE TABLE (\w+)", re.M)
_CREATE_VIEW = re.compile(r"^CREATE (?:OR REPLACE )?VIEW (\w+)", re.M)
_CREATE_INDEX = re.compile(r"^CREATE INDEX (?:IF NOT EXISTS )?(\w+)\s+ON (\w+)", re.M)
_CREATE_TRIGGER = re.compile(r"^CREATE TRIGGER (\w+) .* ON (\w+)", re.M)
_ALTER_TYPE = re.compile(r"ALTER TABLE (\w+) ALTER COLUMN (\w+) TYPE (\w+)")
_ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+)\s+ADD COLUMN (?:IF NOT EXISTS )?(\w+)", re.M)
_COLUMN = re.compile(r"^[ ]+(\w+)[ ]+[A-Z]+", re.M)
_NOT_COLUMNS = {"PRIMARY", "FOREIGN", "CHECK", "UNIQUE", "CONSTRAINT", "REFERENCES", "ON",
                "SUBSTRING"}


def expected_schema(version: int | None = None) -> list[str]:
    """
    Every table, view, column, index and trigger our schema files create, as report
    words; ``version``: that file's only.
    """
    expected = []
    for number, statements in schema_files(PGSQL.name):
        if version is not None and number != version:
            continue
        for statement in statements:
            if match := _CREATE_TABLE.match(statement):
                table = match.group(1)
                expected.append(f"table {table}")
                expected += [
                    f"column {table}.{name}"
                    for name in _COLUMN.findall(statement)
                    if name not in _NOT_COLUMNS
                ]
            elif match := _CREATE_VIEW.match(statement):
                expected.append(f"view {match.group(1)}")
            elif match := _CREATE_INDEX.match(statement):
                expected.append(f"index {match.group(2)}.{match.group(1)}")
            elif match := _CREATE_TRIGGER.match(statement):
                expected.append(f"trigger {match.group(2)}.{match.group(1)}")
            elif match := _ADD_COLUMN.match(statement):
                expected.append(f"column {match.group(1)}.{match.group(2)}")
            elif match := _ALTER_TYPE.search(statement):
                table, column, kind = match.groups()
                expected.append(f"type {table}.{column} {kind.lower()}")
    return list(dict.fromkeys(expected))


def missing_schema(txn) -> list[str]:
    """What the connected database lacks of our schema, in report words."""
    present = {f"column {c}" for c in PgSQLStorage.present_columns(txn)}
    txn.execute(
        "SELECT CASE WHEN table_type = 'VIEW' THEN 'view ' ELSE 'table ' END || table_name "
        "FROM information_schema.tables WHERE table_schema = current_schema() "
        "UNION ALL SELECT 'index ' || tablename || '.' || indexname FROM pg_indexes "
        "WHERE schemaname = current_schema() "
        "UNION ALL SELECT DISTINCT 'trigger ' || event_object_table || '.' || trigger_name "
        "FROM information_schema.triggers WHERE trigger_schema = current_schema() "
        "UNION ALL SELECT 'type ' || table_name || '.' || column_name || ' ' || data_type "
        "FROM information_schema.columns WHERE table_schema = current_schema()"
    )
    present.update(row[0] for row in txn.fetchall())
    return report_missing(expected_schema(), present)
