"""
The MySQL backend: NanoMDM's MySQL database, shared by any number of servers.

PyMySQL under an adbapi pool.  The SQL is the shared layer's (sql.py), the
pool and ``delete=1`` the database servers' (networked.py); what is MySQL's
own lives here: the driver, which errors are worth a second try, and the
schema as NanoMDM's tables plus our ``enrollment_queue.seq``.

Works on MySQL 8.0.19+ and MariaDB 10.6+ (SKIP LOCKED) with the same SQL.
"""

import re
from typing import Any

from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool

from .dsn import MySQLDSN, parse_dsn
from .networked import LifetimePool, NetworkedStorage, report_missing
from .sql import Dialect, schema_files

MYSQL = Dialect(
    name="mysql",
    paramstyle="format",
    upsert_style="on_duplicate_key",
    # NanoMDM's order (created_at), with seq breaking same-second ties;
    # served in index order by idx_queue_next.
    queue_order="q.priority DESC, q.created_at, q.seq",
    share_lock=" LOCK IN SHARE MODE",  # MySQL 8 and MariaDB both still accept it
    no_table=" FROM DUAL",
)

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


class MySQLStorage(NetworkedStorage):
    dialect = MYSQL
    product = "MySQL"

    def __init__(self, dsn: str, options: dict[str, Any] | None = None, reactor: Any = None):
        super().__init__(options, reactor)
        self.dsn: MySQLDSN = parse_dsn(dsn)

    def _make_pool(self) -> ConnectionPool:
        return LifetimePool(
            "pymysql", autocommit=False, **self._pool_options(), **self.dsn.connect_kwargs()
        )

    @staticmethod
    def always_retryable(error: BaseException) -> bool:
        return _error_code(error) in _ROLLED_BACK | _NOT_CONNECTED

    columns_query = (
        "SELECT CONCAT(table_name, '.', column_name) FROM information_schema.columns "
        "WHERE table_schema = DATABASE()"
    )

    @staticmethod
    def missing_schema(txn) -> list[str]:
        return missing_schema(txn)

    is_connection_error = staticmethod(is_connection_error)


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


def missing_schema(txn) -> list[str]:
    """What the connected database lacks of our schema, in report words."""
    present = {f"column {c}" for c in MySQLStorage.present_columns(txn)}
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
    return report_missing(expected_schema(), present)
