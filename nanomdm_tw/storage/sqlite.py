"""
The SQLite backend, the default: NanoMDM's schema in one local file.

One pooled connection (SQLite has one writer anyway), in WAL mode with
foreign keys on; every transaction takes the write lock up front, so two
processes sharing the file wait for each other instead of failing half-way.
"""

import functools
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.enterprise.adbapi import ConnectionPool, Transaction
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ..errors import StorageBusy
from .admission import RETRY_AFTER_SECONDS, Ticket
from .dialect import Dialect
from .sql import SQLStorage

SQLITE = Dialect(name="sqlite", paramstyle="qmark", upsert_style="on_conflict")

DB_FILE_NAME = "nanomdm.sqlite3"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def database_path(dsn: str) -> Path:
    """The database file a DSN names: the path itself, or a file inside a folder."""
    path = Path(dsn)
    if path.suffix in _DB_SUFFIXES:
        return path
    return path / DB_FILE_NAME


# How long a transaction waits for another process's write lock, unless
# --storage-timeout says otherwise.
DEFAULT_BUSY_TIMEOUT = 10.0


# SQLite's (primary) result codes for a file it cannot write now, and what
# the operator should do about it.
_DISK_TROUBLE = {
    sqlite3.SQLITE_FULL: "the disk holding {path} is full: free space on it",
    sqlite3.SQLITE_READONLY: "{path} is read-only: make it and its folder writable",
    sqlite3.SQLITE_IOERR: "I/O error on {path}: check the disk and its free space",
    sqlite3.SQLITE_CANTOPEN: "cannot open {path}: check that its folder exists and is writable",
}


def _prepare_connection(connection: Any, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
    # Transactions are begun explicitly (see _begin), not by the sqlite3 module.
    connection.isolation_level = None
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute(f"PRAGMA busy_timeout = {max(1, round(busy_timeout * 1000))}")


class SQLiteStorage(SQLStorage):
    dialect = SQLITE

    def __init__(
        self, path: str, options: dict[str, Any] | None = None, reactor: Any = None
    ):
        super().__init__(options)
        self.path = database_path(path)
        self._reactor = reactor
        self._disk_trouble: str | None = None

    def _run(self, ticket: Ticket | None, fn: Callable[..., Any], *args: Any) -> Deferred:
        """
        As SQLBase's (opening included); a file it cannot write is a 503
        with Retry-After, said once in the log.
        """
        return super()._run(ticket, fn, *args).addCallbacks(self._disk_fine, self._disk_failed)

    def _disk_fine(self, result: Any) -> Any:
        if self._disk_trouble is not None:
            self._disk_trouble = None
            self._log.info("SQLite database {path} is writable again", path=str(self.path))
        return result

    def _disk_failed(self, failure: Failure) -> Failure:
        code = getattr(failure.value, "sqlite_errorcode", None)
        advice = _DISK_TROUBLE.get(code & 0xFF) if isinstance(code, int) else None
        if advice is None:
            return failure
        advice = advice.format(path=self.path)
        if self._disk_trouble != advice:
            self._disk_trouble = advice
            self._log.error(
                "SQLite cannot write: {advice}; until then, requests that store"
                " something get 503 ({error})",
                advice=advice,
                error=failure.getErrorMessage(),
            )
        raise StorageBusy(
            "storage unavailable (SQLite cannot write), retry later", RETRY_AFTER_SECONDS
        )

    def _make_pool(self) -> ConnectionPool:
        os.makedirs(self.path.parent, exist_ok=True)
        return ConnectionPool(
            "sqlite3",
            str(self.path),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=functools.partial(
                _prepare_connection, busy_timeout=self._timeout or DEFAULT_BUSY_TIMEOUT
            ),
            cp_reactor=self._reactor,
        )

    def _timed_out(self, error: BaseException) -> bool:
        """Another process held the write lock past the busy timeout."""
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    def _begin(self, txn: Transaction, fn: Callable[..., Any]) -> None:
        txn.execute("BEGIN IMMEDIATE")

    def _schema_version(self, txn: Transaction) -> int:
        txn.execute("PRAGMA user_version")
        return txn.fetchone()[0]

    def _set_schema_version(self, txn: Transaction, version: int) -> None:
        txn.execute(f"PRAGMA user_version = {int(version)}")
