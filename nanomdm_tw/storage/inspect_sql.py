"""
The inspection roles in NanoMDM's tables, for every SQL backend.

Written once, as sql.py is, with ``?`` placeholders and the dialect's
spelling of the few things that differ (times read as epoch seconds).
Enrollments are NanoMDM's ``enrollments INNER JOIN devices LEFT JOIN
users`` in ID order; queues NanoMDM's "active, unanswered or NotNow" in
delivery order, priority then ``seq``.  Every page is a keyset (or
NanoMDM's offset) over an index, so its cost does not grow with the tables.
"""

import datetime
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from . import NOT_NOW
from .inspection import (
    CommandRecord,
    EnrollmentFilter,
    EnrollmentRecord,
    IInspectionStore,
    IQueueEditor,
    QueueCursor,
    QueueEntry,
)
from .sqlbase import as_bytes, marks

# A queue row as NanoMDM's queue API lists it (q: enrollment_queue, r: command_results).
UNANSWERED = f"q.active = TRUE AND (r.status IS NULL OR r.status = '{NOT_NOW}')"
# The result row of a queue row, if any.
RESULT_JOIN = (
    "LEFT JOIN command_results AS r ON r.id = q.id AND r.command_uuid = q.command_uuid"
)
# Not answered for good: no result, or a NotNow (the queue's own table, unaliased).
NOT_FINISHED = (
    "NOT EXISTS (SELECT 1 FROM command_results AS r WHERE r.id = enrollment_queue.id "
    f"AND r.command_uuid = enrollment_queue.command_uuid AND r.status != '{NOT_NOW}')"
)


def _utc(seconds: Any) -> datetime.datetime | None:
    """Epoch seconds (int, float, Decimal or text, by driver) as a timezone-aware UTC time."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc)


def _page(limit: int, offset: int) -> tuple[str, list[int]]:
    if offset:
        return " LIMIT ? OFFSET ?", [limit, offset]
    return " LIMIT ?", [limit]


def _enrollment_conditions(wanted: EnrollmentFilter, after: str | None):
    """WHERE conditions on enrollments (e) and their arguments; a device's serial number
    and a user's short name through their own tables' indexes."""
    conditions: list[str] = []
    args: list[Any] = []
    in_lists = (
        ("e.id IN ({})", wanted.ids),
        (
            "e.device_id IN (SELECT d.id FROM devices AS d WHERE d.serial_number IN ({}))",
            wanted.serials,
        ),
        (
            "e.user_id IN (SELECT u.id FROM users AS u WHERE u.user_short_name IN ({}))",
            wanted.user_short_names,
        ),
        ("e.type IN ({})", wanted.types),
    )
    for template, values in in_lists:
        if values:
            conditions.append(template.format(marks(len(values))))
            args += values
    equal = (
        ("e.enabled", wanted.enabled),
        ("e.topic", wanted.topic),
        ("e.user_id", wanted.user_id),
        ("e.device_id", wanted.device_id),
    )
    for column, value in equal:
        if value is not None:
            conditions.append(f"{column} = ?")
            args.append(value)
    if after is not None:
        conditions.append("e.id > ?")
        args.append(after)
    return conditions, args


@implementer(IInspectionStore, IQueueEditor)
class SQLInspection:
    """IInspectionStore and IQueueEditor for SQLStorage (which brings the plumbing)."""

    # -- enrollments ----------------------------------------------------------

    def query_enrollments(
        self,
        filter: EnrollmentFilter,
        limit: int,
        after: str | None = None,
        offset: int = 0,
        include_device_cert: bool = False,
        include_unlock_token: bool = False,
    ) -> Deferred:
        device_columns = ["id", "serial_number"]
        if include_device_cert:
            device_columns.append("identity_cert")
        if include_unlock_token:
            device_columns.append("unlock_token")
        return self._interact(
            self._query_enrollments, filter, limit, after, offset, device_columns
        )

    def _query_enrollments(self, txn, wanted, limit, after, offset, device_columns):
        """
        The page from enrollments (user names looked up per row), then its devices by key.

        Each statement is a lookup or an ordered walk of one index: joined in
        one statement, planners may hash-join whole tables for a page of IDs.
        """
        seconds = self.dialect.seconds
        conditions, args = _enrollment_conditions(wanted, after)
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        page, page_args = _page(limit, offset)
        user = "(SELECT u.{} FROM users AS u WHERE u.id = e.user_id AND u.device_id = e.device_id)"
        rows = self._all(
            txn,
            "SELECT e.id, e.type, e.device_id, e.user_id, e.topic, e.enabled, "
            f"e.token_update_tally, {seconds('e.last_seen_at')}, {seconds('e.created_at')}, "
            f"{seconds('e.updated_at')}, {user.format('user_short_name')}, "
            f"{user.format('user_long_name')} FROM enrollments AS e{where} ORDER BY e.id{page}",
            (*args, *page_args),
        )
        devices = self._devices_by_id(txn, device_columns, {row[2] for row in rows})
        records = []
        for row in rows:
            # Listed only with its device row, as NanoMDM's inner join lists them.
            device = devices.get(row[2])
            if device is None:
                continue
            extra = dict(zip(device_columns[2:], device[2:]))
            token = extra.get("unlock_token")
            records.append(
                EnrollmentRecord(
                    id=row[0],
                    type=row[1],
                    device_id=row[2],
                    user_id=row[3],
                    serial_number=device[1],
                    user_short_name=row[10],
                    user_long_name=row[11],
                    topic=row[4],
                    enabled=bool(row[5]),
                    token_update_tally=int(row[6]),
                    last_seen=_utc(row[7]),
                    created=_utc(row[8]),
                    updated=_utc(row[9]),
                    device_cert=extra.get("identity_cert"),
                    unlock_token=None if token is None else as_bytes(token),
                )
            )
        return records

    def _devices_by_id(self, txn, columns: list[str], ids: set[str]) -> dict[str, tuple]:
        """Device rows by ID (``columns`` start with id), at most a page's."""
        if not ids:
            return {}
        rows = self._all(
            txn,
            f"SELECT {', '.join(columns)} FROM devices WHERE id IN ({marks(len(ids))})",
            sorted(ids),
        )
        return {row[0]: row for row in rows}

    async def enrollment_counts(self) -> dict[tuple[str, bool], int]:
        """A count over the (type, enabled) index: for overviews and sampling, not per request."""
        rows = await self._interact(
            self._all,
            "SELECT type, enabled, COUNT(*) FROM enrollments GROUP BY type, enabled",
        )
        return {(kind, bool(enabled)): int(count) for kind, enabled, count in rows}

    # -- queues ---------------------------------------------------------------

    def _entry_columns(self) -> str:
        seconds = self.dialect.seconds
        return (
            "q.priority, q.seq, q.active, r.status, r.not_now_tally, r.result, "
            f"{seconds('q.created_at')}, {seconds('r.updated_at')}"
        )

    @staticmethod
    def _entry(enrollment_id, command_uuid, request_type, command, row) -> QueueEntry:
        """A QueueEntry from the command's fields and a row of ``_entry_columns``."""
        priority, seq, active, status, not_now_tally, result, enqueued, reported = row
        return QueueEntry(
            enrollment_id=enrollment_id,
            command_uuid=command_uuid,
            request_type=request_type,
            command=command,
            priority=int(priority),
            seq=int(seq),
            active=bool(active),
            status=status,
            not_now_count=int(not_now_tally or 0),
            result=None if result is None else as_bytes(result),
            enqueued_at=_utc(enqueued),
            reported_at=_utc(reported),
        )

    def queued_commands(
        self,
        enrollment_id: str,
        limit: int,
        after: QueueCursor | None = None,
        offset: int = 0,
        include_answered: bool = False,
    ) -> Deferred:
        conditions = ["q.id = ?"]
        args: list[Any] = [enrollment_id]
        if not include_answered:
            conditions.append(UNANSWERED)
        if after is not None:
            # After the cursor in "priority DESC, seq" order.
            conditions.append("(q.priority < ? OR (q.priority = ? AND q.seq > ?))")
            args += [after.priority, after.priority, after.seq]
        page, page_args = _page(limit, offset)
        query = (
            f"SELECT q.command_uuid, {self._entry_columns()} FROM enrollment_queue AS q "
            f"{RESULT_JOIN} WHERE {' AND '.join(conditions)} "
            f"ORDER BY q.priority DESC, q.seq{page}"
        )
        return self._interact(self._queued_commands, enrollment_id, query, (*args, *page_args))

    def _queued_commands(self, txn, enrollment_id: str, query: str, args) -> list[QueueEntry]:
        """The page of queue rows, then their commands by key."""
        rows = self._all(txn, query, args)
        commands = self._commands_by_uuid(txn, {row[0] for row in rows})
        return [
            self._entry(enrollment_id, row[0], commands[row[0]][0], commands[row[0]][1], row[1:])
            for row in rows
        ]

    def _commands_by_uuid(self, txn, command_uuids: set[str]) -> dict[str, tuple[str, bytes]]:
        """(request type, raw plist) of each command, at most a page's."""
        if not command_uuids:
            return {}
        rows = self._all(
            txn,
            "SELECT command_uuid, request_type, command FROM commands "
            f"WHERE command_uuid IN ({marks(len(command_uuids))})",
            sorted(command_uuids),
        )
        return {row[0]: (row[1], as_bytes(row[2])) for row in rows}

    async def pending_count(self) -> int:
        """A count over the queue's active index: for overviews and sampling, not per request."""
        row = await self._interact(
            self._one,
            f"SELECT COUNT(*) FROM enrollment_queue AS q {RESULT_JOIN} WHERE {UNANSWERED}",
        )
        return int(row[0])

    # -- commands -------------------------------------------------------------

    async def retrieve_command(self, command_uuid: str) -> CommandRecord | None:
        row = await self._interact(
            self._one,
            "SELECT request_type, command, "
            f"{self.dialect.seconds('created_at')} FROM commands WHERE command_uuid = ?",
            (command_uuid,),
        )
        if row is None:
            return None
        return CommandRecord(command_uuid, row[0], as_bytes(row[1]), _utc(row[2]))

    def command_deliveries(
        self, command_uuid: str, limit: int, after: str | None = None
    ) -> Deferred:
        return self._interact(self._command_deliveries, command_uuid, limit, after)

    def _command_deliveries(self, txn, command_uuid: str, limit: int, after: str | None):
        command = self._one(
            txn, "SELECT request_type FROM commands WHERE command_uuid = ?", (command_uuid,)
        )
        if command is None:
            return []
        keyset, args = ("", []) if after is None else (" AND q.id > ?", [after])
        rows = self._all(
            txn,
            f"SELECT q.id, {self._entry_columns()} FROM enrollment_queue AS q {RESULT_JOIN} "
            f"WHERE q.command_uuid = ?{keyset} ORDER BY q.id LIMIT ?",
            (command_uuid, *args, limit),
        )
        return [self._entry(row[0], command_uuid, command[0], b"", row[1:]) for row in rows]

    # -- the API's queue edits --------------------------------------------------

    def clear_queue_by_id(self, enrollment_id: str) -> Deferred:
        return self._interact(self._clear_queues, [enrollment_id])

    def remove_queued_command(self, enrollment_id: str, command_uuid: str) -> Deferred:
        return self._interact(self._remove_queued_command, enrollment_id, command_uuid)

    def _remove_queued_command(self, txn, enrollment_id: str, command_uuid: str) -> bool:
        key = (enrollment_id, command_uuid)
        if not self._delete:
            self._execute(
                txn,
                "UPDATE enrollment_queue SET active = FALSE, updated_at = CURRENT_TIMESTAMP "
                f"WHERE id = ? AND command_uuid = ? AND active = TRUE AND {NOT_FINISHED}",
                key,
            )
            return txn.rowcount > 0
        self._execute(
            txn,
            f"DELETE FROM enrollment_queue WHERE id = ? AND command_uuid = ? AND {NOT_FINISHED}",
            key,
        )
        if txn.rowcount == 0:
            return False
        # A NotNow's result goes with its entry, then the command if nothing else needs it.
        self._execute(txn, "DELETE FROM command_results WHERE id = ? AND command_uuid = ?", key)
        self._collect_commands(txn, [command_uuid])
        return True
