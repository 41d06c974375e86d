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
