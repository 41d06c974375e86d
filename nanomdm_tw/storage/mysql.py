"""
The MySQL backend: NanoMDM's MySQL database, shared by any number of servers.

mysqlclient (the C driver) or PyMySQL under an adbapi pool.  The SQL is the
shared layer's (sql.py), the pool and ``delete=1`` the database servers'
(networked.py); what is MySQL's own lives here: the drivers, which errors
are worth a second try, and the schema as NanoMDM's tables plus our
``enrollment_queue.seq``.

Works on MySQL 8.0.19+ and MariaDB 10.6+ (SKIP LOCKED) with the same SQL.
"""

import importlib.util
import math
import re
from typing import Any

from pymysql.constants import CLIENT
from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool

from .dsn import MySQLDSN, parse_dsn
from .networked import SOCKET_GRACE_SECONDS, LifetimePool, NetworkedStorage, report_missing
from .dialect import Dialect, schema_files

MYSQL = Dialect(
    name="mysql",
    paramstyle="format",
    upsert_style="on_duplicate_key",
    # NanoMDM's order (created_at), with seq breaking same-second ties;
    # served in index order by idx_queue_next.
    queue_order="q.priority DESC, q.created_at, q.seq",
    share_lock=" LOCK IN SHARE MODE",  # MySQL 8 and MariaDB both still accept it
    no_table=" FROM DUAL",
    # TIMESTAMPs are kept in UTC and shown in the session's zone; this undoes the showing.
    epoch="UNIX_TIMESTAMP({})",
    from_epoch="FROM_UNIXTIME(?)",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)

# The whole transaction was rolled back: running it again is always safe.
_ROLLED_BACK = {1205, 1213}  # lock wait timeout, deadlock
# The server ended a statement running past --storage-timeout: MariaDB's
# max_statement_time, MySQL's max_execution_time, a lock wait (after its retry).
_TIMED_OUT = {1969, 3024, 1205}
# Nothing reached the server.
_NOT_CONNECTED = {2002, 2003}  # cannot connect (socket, TCP)
# The connection died mid-way: the COMMIT may or may not have happened.
_CONNECTION_LOST = {2006, 2013, 2055}  # gone away, lost during query, lost
# A client's value does not fit NanoMDM's columns (strict mode refuses, never truncates).
_VALUE_REFUSED = {1366, 1406}  # incorrect string value, data too long


def _error_code(error: BaseException) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _interface_errors() -> tuple[type[BaseException], ...]:
    """Each installed driver's error for a connection it cannot use."""
    import pymysql

    errors: tuple[type[BaseException], ...] = (ConnectionLost, pymysql.err.InterfaceError)
    if _has_mysqlclient():
        import MySQLdb

        errors += (MySQLdb.InterfaceError,)
    return errors


def is_connection_error(error: BaseException) -> bool:
    """The database is unreachable or the connection died (as opposed to a bad query)."""
    if isinstance(error, _interface_errors()):
        return True
    return _error_code(error) in _NOT_CONNECTED | _CONNECTION_LOST


# -- the drivers ----------------------------------------------------------------
#
# mysqlclient does a round trip's protocol work in C, with the GIL released
# once per statement, where PyMySQL runs Python for every packet: the C driver
# costs a third to a half less server CPU per request.  It needs a compiler and
# the MySQL client headers to install, so it is an extra; PyMySQL installs
# everywhere and stays the fallback.

def _has_mysqlclient() -> bool:
    return importlib.util.find_spec("MySQLdb") is not None


def default_driver() -> str:
    """mysqlclient when it is installed, else PyMySQL."""
    return "mysqlclient" if _has_mysqlclient() else "pymysql"


def _mysqlclient_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """PyMySQL connect arguments (DSN-derived) as mysqlclient takes them."""
    if "ssl" in kwargs:
        raise ValueError(
            "the mysqlclient driver does not take the DSN's tls parameter here: "
            "use driver=pymysql"
        )
    converted = {k: v for k, v in kwargs.items() if v is not None}
    for name in ("connect_timeout", "read_timeout", "write_timeout"):
        if name in converted:  # whole seconds only
            converted[name] = max(1, math.ceil(converted[name]))
    return converted


def _socket_timeouts(timeout: float, kwargs: dict[str, Any]) -> dict[str, float]:
    """Connect, read and write timeouts the DSN leaves unset, from --storage-timeout."""
    limits = {
        "connect_timeout": timeout,
        "read_timeout": timeout + SOCKET_GRACE_SECONDS,
        "write_timeout": timeout + SOCKET_GRACE_SECONDS,
    }
    return {name: value for name, value in limits.items() if kwargs.get(name) is None}


def statement_limits(server_version: str, timeout: float) -> list[str]:
    """
    Session settings ending statements that run longer than ``timeout`` seconds.

    MariaDB's ``max_statement_time`` (seconds) covers every statement;
    MySQL's ``max_execution_time`` (milliseconds) only SELECTs, so a write
    is bounded by the lock wait timeout (whole seconds) on both.
    """
    if "mariadb" in server_version.lower():
        limit = f"SET SESSION max_statement_time = {timeout:g}"
    else:
        limit = f"SET SESSION max_execution_time = {max(1, round(timeout * 1000))}"
    lock_wait = f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(timeout))}"
    return [limit, lock_wait]


class MySQLClientPool(LifetimePool):
    """The lifetime pool on mysqlclient connections."""

    def socket_of(self, conn: Any) -> Any:
        return conn.fileno() if conn.open else None


class MySQLStorage(NetworkedStorage):
    dialect = MYSQL
    product = "MySQL"
    merges_begin = True

    def __init__(self, dsn: str, options: dict[str, Any] | None = None, reactor: Any = None):
        super().__init__(options, reactor)
        self.dsn: MySQLDSN = parse_dsn(dsn)
        kwargs = self.dsn.connect_kwargs()
        if self._timeout:
            kwargs.update(_socket_timeouts(self._timeout, kwargs))
        chosen = (options or {}).get("driver")
        if chosen is None:
            # A TLS DSN maps onto PyMySQL's settings (go-sql-driver's tls modes).
            chosen = "pymysql" if "ssl" in kwargs else default_driver()
        if chosen == "mysqlclient":
            if not _has_mysqlclient():
                raise ValueError(
                    "driver=mysqlclient: mysqlclient is not installed "
                    "(pip install 'nanomdm-tw[mysqlclient]')"
                )
            kwargs = _mysqlclient_kwargs(kwargs)
        # BEGIN goes with the first statement that needs it (mysqlclient allows this anyway).
        kwargs["client_flag"] |= CLIENT.MULTI_STATEMENTS
        self.driver = chosen
        self._connect_kwargs = kwargs

    def _make_pool(self) -> ConnectionPool:
        if self.driver == "mysqlclient":
            pool_class, module = MySQLClientPool, "MySQLdb"
        else:
            pool_class, module = LifetimePool, "pymysql"
        return pool_class(
            module,
            autocommit=True,
            cp_openfun=self._limit_statements if self._timeout else None,
            **self._pool_options(),
            **self._connect_kwargs,
        )

    def _limit_statements(self, connection: Any) -> None:
        """The server ends a statement (or a lock wait) running past --storage-timeout."""
        cursor = connection.cursor()
        try:
            for statement in statement_limits(connection.get_server_info(), self._timeout):
                cursor.execute(statement)
        finally:
            cursor.close()

    @staticmethod
    def always_retryable(error: BaseException) -> bool:
        return _error_code(error) in _ROLLED_BACK | _NOT_CONNECTED

    def _refuses_value(self, error: BaseException) -> bool:
        return _error_code(error) in _VALUE_REFUSED

    columns_query = (
        "SELECT CONCAT(table_name, '.', column_name) FROM information_schema.columns "
        "WHERE table_schema = DATABASE()"
    )

    @staticmethod
    def missing_schema(txn) -> list[str]:
        return missing_schema(txn)

    @staticmethod
    def expected_schema(version: int) -> list[str]:
        return expected_schema(version)

    is_connection_error = staticmethod(is_connection_error)

    def _timed_out(self, error: BaseException) -> bool:
        return _error_code(error) in _TIMED_OUT


# -- the schema -----------------------------------------------------------------

_CREATE = re.compile(r"^CREATE (?:OR REPLACE )?(TABLE|VIEW) (\w+)", re.M)
_ALTER = re.compile(r"^ALTER TABLE (\w+)", re.M)
_COLUMN = re.compile(r"^\s+(?:ADD COLUMN )?(\w+) [A-Z]+", re.M)
_INDEX = re.compile(r"^\s+(?:ADD )?INDEX (\w+) \(", re.M)
_NOT_COLUMNS = {"PRIMARY", "FOREIGN", "CHECK", "INDEX", "UNIQUE", "CONSTRAINT", "ADD",
                "REFERENCES", "ON", "SELECT", "FROM", "ORDER", "INNER", "LEFT"}


def expected_schema(version: int | None = None) -> list[str]:
    """
    Every table, view, column and named index our schema files create, as report
    words; ``version``: that file's only.
    """
    expected = []
    for number, statements in schema_files("mysql"):
        if version is not None and number != version:
            continue
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
