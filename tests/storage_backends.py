"""
Every storage backend the conformance suite runs against.

Each entry makes a fresh, opened backend in a temporary folder; a new
backend (MySQL, PostgreSQL) joins the suite by adding one entry here.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanomdm_tw.storage.interfaces import IStorage
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.storage.sqlite import SQLiteStorage


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


BACKENDS = [
    Backend("inmem", make_memory),
    Backend("sqlite", make_sqlite),
]
