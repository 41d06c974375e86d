"""
Pruning history in NanoMDM's tables, for the ``retention=`` storage option.

A year of NanoMDM leaves millions of rows in ``command_results`` and
``enrollment_queue``.  Each call here removes one small batch, found
through an index on ``updated_at`` (the answer's time for a result, the
clear's for a cleared queue row; schema files 004/006/003), so a batch
costs the same on a table of ten million rows as on one of ten thousand:

1. a transaction claims up to ``batch`` history entries, oldest first,
   and deletes them by key: answered results (any status but NotNow) with
   their queue rows, then cleared queue rows with whatever result they
   have, provided that result is old too;
2. a second transaction deletes those entries' commands that nothing
   refers to any more, as ``delete=1`` does.

An active entry without an answer, or answered NotNow, is never touched,
nor is its command.  Servers sharing a database may prune at once: on
MySQL and PostgreSQL the claims skip rows another server holds, and
every delete is by key, so running a batch twice deletes nothing twice.
"""

import datetime
import math

from twisted.internet.defer import Deferred

from . import NOT_NOW
from .sqlbase import chunks

# Keys per DELETE: two parameters each, within the bound of the other statements.
_KEYS_PER_DELETE = 250


def _of_keys(count: int) -> str:
    """A WHERE clause naming ``count`` (id, command_uuid) keys: one primary key range each."""
    return " OR ".join(["(id = ? AND command_uuid = ?)"] * count)


class SQLRetention:
    """IRetention for SQLStorage (a mixin: it needs the dialect and the interactions)."""

    def prune_history(self, before: datetime.datetime, batch: int) -> Deferred:
        return Deferred.fromCoroutine(self._prune_history(before, batch))

    async def _prune_history(self, before: datetime.datetime, batch: int) -> int:
        cutoff = math.floor(before.timestamp())
        pruned, command_uuids = await self._interact(self._prune_entries, cutoff, batch)
        if command_uuids:
            pruned += await self._interact(self._collect_pruned_commands, command_uuids)
        return pruned

    def _prune_entries(self, txn, cutoff: int, batch: int) -> tuple[int, list[str]]:
        """Delete up to ``batch`` old entries; the rows deleted, and the entries' commands."""
        older = "updated_at < " + self.dialect.from_epoch
        keys = self._all(
            txn,
            f"SELECT id, command_uuid FROM command_results WHERE {older} "
            f"AND status != '{NOT_NOW}' ORDER BY updated_at LIMIT ?"
            + self.dialect.skip_locked,
            (cutoff, batch),
        )
        if len(keys) < batch:
            keys += self._all(
                txn,
                f"SELECT q.id, q.command_uuid FROM enrollment_queue AS q "
                f"WHERE q.active = FALSE AND q.{older} "
                "AND NOT EXISTS (SELECT 1 FROM command_results AS r "
                "WHERE r.id = q.id AND r.command_uuid = q.command_uuid "
                f"AND r.updated_at >= {self.dialect.from_epoch}) "
                "ORDER BY q.updated_at LIMIT ?" + self.dialect.skip_locked,
                (cutoff, cutoff, batch - len(keys)),
            )
        # Sorted: servers pruning at once lock rows in the same order.
        entries = sorted({(row[0], row[1]) for row in keys})
        deleted = 0
        for table in ("command_results", "enrollment_queue"):
            for chunk in chunks(entries, _KEYS_PER_DELETE):
                self._execute(
                    txn,
                    f"DELETE FROM {table} WHERE {_of_keys(len(chunk))}",
                    [value for key in chunk for value in key],
                )
                deleted += txn.rowcount
        return deleted, sorted({command_uuid for _, command_uuid in entries})

    def _collect_pruned_commands(self, txn, command_uuids: list[str]) -> int:
        """
        Delete the commands no queue row or result refers to any more.

        Its own transaction, after the entries' deletes are committed (the
        reference check must see other servers' deletes too).  On the
        database servers the commands are claimed first: an enqueue of the
        same command UUID waits for us, or we skip a command it holds.
        """
        if self.dialect.skip_locked:
            command_uuids = sorted(
                self._ids_in(
                    txn,
                    "SELECT command_uuid FROM commands WHERE command_uuid IN ({})"
                    + self.dialect.skip_locked,
                    command_uuids,
                )
            )
        return self._collect_commands(txn, command_uuids)
