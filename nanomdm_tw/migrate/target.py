"""
One of our SQL backends, opened for a batch job: a plain connection, no reactor.

The import is a command-line run with nothing else to serve, so it talks to
the database directly, as ``nanomdm-tw-schema`` does, through the backend's
own SQL layer (dialect, paramstyle, value encodings).  The schema is
created or upgraded first: SQLite's as the server does at start-up,
MySQL's and PostgreSQL's as ``nanomdm-tw-schema`` does.
"""

import sqlite3
from typing import Any

from ..storage import make_storage
from ..storage.sql import SQLStorage


class Target:
    """``storage`` (not opened: no pool) and ``connection``, a DB-API connection to its database."""

    def __init__(self, name: str, dsn: str, options: str):
        if name == "inmem":
            raise ValueError(
                "--storage inmem keeps nothing once this command exits: "
                "choose sqlite, filekv, file, mysql or pgsql"
            )
        storage = make_storage(name, dsn, options)
        if not isinstance(storage, SQLStorage):
            raise ValueError(f"--storage {name}: not a backend this command can write")
        self.storage = storage
        self.connection = self._connect()
        try:
            self._prepare_schema(name, dsn)
        except BaseException:
            self.connection.close()
            raise

    @property
    def dialect(self) -> str:
        return self.storage.dialect.name

    def describe(self) -> str:
        """Where the records go, for the user (no password)."""
        if self.dialect == "sqlite":
            return f"SQLite database {self.storage.path}"
        return f"{self.storage.product} database {self.storage.dsn.database!r}"

    def _connect(self) -> Any:
        storage = self.storage
        if self.dialect == "sqlite":
            from ..storage.sqlite import _prepare_connection

            storage.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(storage.path))
            _prepare_connection(connection)
            return connection
        if self.dialect == "mysql":
            import pymysql

            return pymysql.connect(autocommit=False, **storage.dsn.connect_kwargs())
        import psycopg

        from ..storage.pgsql import _prepare_connection

        connection = psycopg.connect(storage.dsn.conninfo, autocommit=False)
        _prepare_connection(connection)
        return connection

    def _prepare_schema(self, name: str, dsn: str) -> None:
        if self.dialect == "sqlite":
            self.run(self.storage._upgrade_schema)
            return
        from ..tools.schema import upgrade

        _, _, missing = upgrade(dsn, dialect=self.dialect)
        if missing:
            raise ValueError(f"the {name} database lacks {', '.join(missing)}")

    def run(self, interaction: Any, *args: Any) -> Any:
        """Run ``interaction(txn, *args)`` as one transaction, as the server's pool would."""
        cursor = self.connection.cursor()
        try:
            result = self.storage._transaction(cursor, interaction, *args)
            self.connection.commit()
            return result
        except BaseException:
            self.connection.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self.connection.close()
