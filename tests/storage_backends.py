"""
Every storage backend the conformance suite runs against.

Each entry makes a fresh, opened backend in a temporary folder (MySQL: in
a throwaway database, dropped on close; PostgreSQL likewise); a new backend
joins the suite by adding one entry here.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanomdm_tw.storage.interfaces import IStorage
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.storage.multi import MultiStorage
from nanomdm_tw.storage.mysql import MySQLStorage
from nanomdm_tw.storage.pgsql import PgSQLStorage
from nanomdm_tw.storage.sqlite import SQLiteStorage
from . import pgsqlserver
from .mysqlserver import ThrowawayDatabase


@dataclass(frozen=True)
class Backend:
    name: str
    # (temporary folder, options) -> an opened storage; the caller closes it.
    make: Callable[[Path, dict[str, Any]], Awaitable[IStorage]]


async def _opened(storage: IStorage) -> IStorage:
    await storage.open()
    return storage


async def make_memory(tmp_path: Path, options: dict[str, Any]) -> IStorage:
    return await _opened(MemoryStorage(options))


async def make_sqlite(tmp_path: Path, options: dict[str, Any]) -> IStorage:
    return await _opened(SQLiteStorage(str(tmp_path / "sqlite"), options))


class ThrowawayMySQLStorage(MySQLStorage):
    """MySQL storage in its own database, which goes away with close()."""

    def __init__(self, database: ThrowawayDatabase, options: dict[str, Any]):
        super().__init__(database.dsn, options)
        self.database = database

    async def close(self) -> None:
        await super().close()
        self.database.drop()


async def make_mysql(tmp_path: Path, options: dict[str, Any]) -> IStorage:
    return await _opened(ThrowawayMySQLStorage(ThrowawayDatabase(), options))


class ThrowawayPgSQLStorage(PgSQLStorage):
    """PostgreSQL storage in its own database, which goes away with close()."""

    def __init__(self, database: pgsqlserver.ThrowawayDatabase, options: dict[str, Any]):
        super().__init__(database.dsn, options)
        self.database = database

    async def close(self) -> None:
        await super().close()
        self.database.drop()


async def make_pgsql(tmp_path: Path, options: dict[str, Any]) -> IStorage:
    return await _opened(ThrowawayPgSQLStorage(pgsqlserver.ThrowawayDatabase(), options))


async def make_multi(tmp_path: Path, options: dict[str, Any]) -> IStorage:
    """SQLite answering, an in-memory mirror written behind it."""
    primary = SQLiteStorage(str(tmp_path / "primary"), options)
    return await _opened(MultiStorage([primary, MemoryStorage(options)]))


BACKENDS = [
    Backend("inmem", make_memory),
    Backend("sqlite", make_sqlite),
    Backend("mysql", make_mysql),
    Backend("pgsql", make_pgsql),
    Backend("multi", make_multi),
]
