"""
``--storage filekv`` and ``--storage file``: NanoMDM's folder stores, served once imported.

NanoMDM keeps its filekv store (``dbkv/``) and its deprecated file store
(``db/``) as folders of files.  ``nanomdm-tw-migrate`` copies such a store
into our SQLite database in the same folder (``nanomdm.sqlite3``), and these
names then serve that database, so a deployment keeps its flags.  Before an
import there is nothing of the devices' to serve: rather than start empty
(every device refused, every command lost), the server refuses to start and
says how to import.
"""

from typing import Any

from twisted.internet.threads import deferToThreadPool

from .sqlite import SQLiteStorage

# The store each name means in NanoMDM, and where NanoMDM keeps it by default.
DEFAULT_FOLDERS = {"filekv": "dbkv", "file": "db"}


class NotImported(RuntimeError):
    """The folder's NanoMDM store has not been imported: nothing to serve yet."""


class ImportedStoreStorage(SQLiteStorage):
    """The SQLite backend on ``<folder>/nanomdm.sqlite3``, refusing to open it empty."""

    def __init__(
        self, name: str, folder: str, options: dict[str, Any] | None = None, reactor: Any = None
    ):
        super().__init__(folder, options, reactor)
        self.name = name
        self.folder = folder

    async def open(self) -> None:
        if self._reactor is None:
            from twisted.internet import reactor
        else:
            reactor = self._reactor
        # Off the reactor thread, as all of this backend's disk access.
        if await deferToThreadPool(reactor, reactor.getThreadPool(), self.path.exists):
            await super().open()
            if await self._interact(self._one, "SELECT 1 FROM devices LIMIT 1") is not None:
                return
            await self.close()
        raise NotImported(
            f"storage {self.name}: no imported enrollments in {self.path}; import NanoMDM's "
            f"{self.name} store with: nanomdm-tw-migrate --from-storage {self.name} "
            f"--from-dsn {self.folder} --storage {self.name} --storage-dsn {self.folder} "
            "(a new deployment: use --storage sqlite)"
        )
