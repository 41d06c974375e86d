"""
What every relational backend stores and asks, in NanoMDM's tables.

The statements are written once, against NanoMDM's MySQL table and column
names with ``?`` placeholders (dialect.py adapts them); sqlbase.py runs each
method's work as one interaction.  A backend subclass supplies the pool,
the dialect and the schema version bookkeeping.
"""

import base64
from collections.abc import Sequence
from typing import Any

from twisted.enterprise.adbapi import Transaction
from twisted.internet.defer import Deferred
from zope.interface import implementer

from ..mdm.enrollment import EnrollID
from ..mdm.messages import (
    Authenticate,
    Command,
    CommandReport,
    GetBootstrapToken,
    SetBootstrapToken,
    TokenUpdate,
    UserAuthenticate,
)
from ..mdm.request import MDMRequest
from . import (
    NOT_NOW,
    QUEUE_ERROR_ALREADY_QUEUED,
    QUEUE_ERROR_UNKNOWN,
    QUEUE_ERROR_UUID_CONFLICT,
    identity_cert_pem,
)
from .interfaces import IStorage, UnknownEnrollment
from .certauth_sql import SQLCertAuth
from .inspect_sql import SQLInspection
from .push_sql import SQLPushStore
from .retention_sql import SQLRetention
from .sqlbase import SQLBase, as_bytes, chunks, marks, not_idempotent, one_snapshot

# Tables whose rows come and go with commands; row_counts reports them.
QUEUE_TABLES = ("commands", "command_results", "enrollment_queue")

# Device columns an Authenticate clears (the tally is reset by the disable that follows).
RESET_ON_AUTHENTICATE = (
    "bootstrap_token_b64 = NULL",
    "bootstrap_token_at = NULL",
    "unlock_token = NULL",
    "unlock_token_at = NULL",
)


def _empty_to_null(value: str) -> str | None:
    return value or None


@implementer(IStorage)
class SQLStorage(SQLPushStore, SQLCertAuth, SQLRetention, SQLInspection, SQLBase):
    """
    IStorage in NanoMDM's tables, over SQLBase's interactions: check-ins and
    the queue here; push (push_sql.py), certificate authentication
    (certauth_sql.py), pruning (retention_sql.py), inspection (inspect_sql.py).
    """

    # -- check-ins --------------------------------------------------------------

    def store_authenticate(self, request: MDMRequest, message: Authenticate) -> Deferred:
        return self._interact(
            self._store_authenticate,
            request.enroll_id.id,
            identity_cert_pem(request),
            _empty_to_null(message.serial_number),
            message.raw,
        )

    def _store_authenticate(self, txn, enrollment_id, cert_pem, serial_number, raw):
        query = self.dialect.upsert(
            "devices",
            {
                "id": "?",
                "identity_cert": "?",
                "serial_number": "?",
                "authenticate": "?",
                "authenticate_at": "CURRENT_TIMESTAMP",
            },
            key=("id",),
            copy=("identity_cert", "serial_number", "authenticate"),
            assign=(
                "authenticate_at = CURRENT_TIMESTAMP",
                "updated_at = CURRENT_TIMESTAMP",
                # A (re-)enrollment forgets the previous one's one-time values, as
                # NanoMDM's stores do: an erased Mac must not get the old token back.
                *RESET_ON_AUTHENTICATE,
            ),
        )
        self._execute(txn, query, (enrollment_id, cert_pem, serial_number, raw))

    def _binary(self, value: bytes) -> Any:
        """Bytes bound for a binary column (the unlock token's BLOB or BYTEA)."""
        return value

    def _require_device(self, txn: Transaction, device_id: str) -> None:
        if self._one(txn, "SELECT 1 FROM devices WHERE id = ?", (device_id,)) is None:
            raise UnknownEnrollment(device_id)

    def store_token_update(self, request: MDMRequest, message: TokenUpdate) -> Deferred:
        return self._interact(self._store_token_update, request, message)

    @not_idempotent  # the tally
    def _store_token_update(self, txn, request: MDMRequest, message: TokenUpdate):
        enroll_id = request.enroll_id
        device_id = enroll_id.device_channel_id
        if enroll_id.is_user_channel:
            self._require_device(txn, device_id)
            if message.unlock_token:
                self._log.info(
                    "unlock token on user channel {enrollment_id} not stored",
                    enrollment_id=enroll_id.id,
                )
            self._upsert_user(txn, request, message, "token_update")
            user_id = enroll_id.id
        else:
            assignments = ["token_update = ?", "token_update_at = CURRENT_TIMESTAMP"]
            args: list[Any] = [message.raw]
            if message.unlock_token:
                # Kept on its own: a later TokenUpdate may not repeat it.
                assignments += ["unlock_token = ?", "unlock_token_at = CURRENT_TIMESTAMP"]
                args.append(self._binary(message.unlock_token))
            self._execute(
                txn,
                f"UPDATE devices SET {', '.join(assignments)} WHERE id = ?",
                (*args, device_id),
            )
            # Matched rows (MySQL connects with FOUND_ROWS): none means no Authenticate yet.
            if txn.rowcount == 0:
                raise UnknownEnrollment(device_id)
            user_id = None
        query = self.dialect.upsert(
            "enrollments",
            {
                "id": "?",
                "device_id": "?",
                "user_id": "?",
                "type": "?",
                "topic": "?",
                "push_magic": "?",
                "token_hex": "?",
                "last_seen_at": "CURRENT_TIMESTAMP",
                "token_update_tally": "1",
            },
            key=("id",),
            copy=("device_id", "user_id", "type", "topic", "push_magic", "token_hex"),
            assign=(
                "enabled = TRUE",
                "last_seen_at = CURRENT_TIMESTAMP",
                "updated_at = CURRENT_TIMESTAMP",
                "token_update_tally = enrollments.token_update_tally + 1",
            ),
        )
        self._execute(
            txn,
            query,
            (
                enroll_id.id,
                device_id,
                user_id,
                str(enroll_id.type),
                message.topic,
                message.push_magic,
                message.token.hex(),
            ),
        )

    def _upsert_user(self, txn, request: MDMRequest, message, column: str) -> None:
        """Create or update the user channel's row, storing ``message.raw`` in ``column``."""
        query = self.dialect.upsert(
            "users",
            {
                "id": "?",
                "device_id": "?",
                "user_short_name": "?",
                "user_long_name": "?",
                column: "?",
                column + "_at": "CURRENT_TIMESTAMP",
            },
            key=("id", "device_id"),
            copy=("user_short_name", "user_long_name", column),
            assign=(f"{column}_at = CURRENT_TIMESTAMP", "updated_at = CURRENT_TIMESTAMP"),
        )
        self._execute(
            txn,
            query,
            (
                request.enroll_id.id,
                request.enroll_id.device_channel_id,
                _empty_to_null(message.enrollment.user_short_name),
                _empty_to_null(message.enrollment.user_long_name),
                message.raw,
            ),
        )

    def store_user_authenticate(
        self, request: MDMRequest, message: UserAuthenticate
    ) -> Deferred:
        # The first message has no DigestResponse; the second answers our challenge.
        column = (
            "user_authenticate_digest" if message.digest_response else "user_authenticate"
        )
        return self._interact(self._store_user_authenticate, request, message, column)

    def _store_user_authenticate(self, txn, request, message, column):
        self._require_device(txn, request.enroll_id.device_channel_id)
        self._upsert_user(txn, request, message, column)

    def disable(self, request: MDMRequest) -> Deferred:
        return self._interact(self._disable, request.enroll_id)

    def _disable(self, txn, enroll_id: EnrollID):
        # A device's rows are its own and its user channels' (device_id is the
        # device's ID in both); one indexed column each way, never an OR of two.
        column = "id" if enroll_id.is_user_channel else "device_id"
        self._execute(
            txn,
            "UPDATE enrollments SET enabled = FALSE, token_update_tally = 0, "
            "last_seen_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP "
            f"WHERE {column} = ? AND enabled = TRUE",
            (enroll_id.id,),
        )

    # -- the command queue ----------------------------------------------------

    async def enqueue_command(
        self, enrollment_ids: list[str], command: Command, priority: int = 0
    ) -> dict[str, str]:
        """As ICommandEnqueuer; ``priority`` (higher first) is NanoMDM's queue column."""
        if not enrollment_ids:
            raise ValueError("no enrollment IDs to queue the command to")
        ids = list(dict.fromkeys(enrollment_ids))
        return await self._interact(self._enqueue_command, ids, command, priority)

    @not_idempotent  # a second run would find the command queued
    def _enqueue_command(self, txn, ids: list[str], command: Command, priority: int):
        known = self._ids_in(txn, "SELECT id FROM enrollments WHERE id IN ({})", ids)
        queued = self._ids_in(
            txn,
            "SELECT id FROM enrollment_queue WHERE command_uuid = ? AND id IN ({})",
            ids,
            command.command_uuid,
        )
        errors = {i: QUEUE_ERROR_UNKNOWN for i in ids if i not in known}
        errors.update((i, QUEUE_ERROR_ALREADY_QUEUED) for i in ids if i in queued)
        to_queue = [i for i in ids if i not in errors]
        if not to_queue:
            return errors
        # Insert if absent, then read what is stored (ours or a concurrent
        # enqueue's), with a locking read so that it is the latest committed row.
        self._execute(
            txn,
            self.dialect.upsert(
                "commands",
                {"command_uuid": "?", "request_type": "?", "command": "?"},
                key=("command_uuid",),
            ),
            (command.command_uuid, command.request_type, command.raw),
        )
        stored = self._one(
            txn,
            "SELECT command FROM commands WHERE command_uuid = ?" + self.dialect.share_lock,
            (command.command_uuid,),
        )
        if as_bytes(stored[0]) != command.raw:
            errors.update((i, QUEUE_ERROR_UUID_CONFLICT) for i in to_queue)
            return errors
        self._execute_many(
            txn,
            "INSERT INTO enrollment_queue (id, command_uuid, priority) VALUES (?, ?, ?)",
            [(i, command.command_uuid, priority) for i in to_queue],
        )
        return errors

    def store_command_report(self, request: MDMRequest, report: CommandReport) -> Deferred:
        return self._interact(self._record_report, request.enroll_id.id, report)

    def report_and_next(
        self, request: MDMRequest, report: CommandReport, skip_not_now: bool
    ) -> Deferred:
        return self._interact(
            self._report_and_next, request.enroll_id.id, report, skip_not_now
        )

    @not_idempotent  # the NotNow tally
    def _report_and_next(self, txn, enrollment_id: str, report: CommandReport, skip_not_now):
        self._record_report(txn, enrollment_id, report)
        return self._retrieve_next_command(txn, enrollment_id, skip_not_now)

    def _record_report(self, txn, enrollment_id: str, report: CommandReport) -> None:
        """Where a report is written; backends with their own delete=1 path override it."""
        self._store_command_report(txn, enrollment_id, report)

    @not_idempotent  # the NotNow tally
    def _store_command_report(self, txn, enrollment_id: str, report: CommandReport):
        if report.is_idle:
            return
        key = (enrollment_id, report.command_uuid)
        queued = "EXISTS (SELECT 1 FROM enrollment_queue WHERE id = ? AND command_uuid = ?)"
        if report.status == NOT_NOW:
            values = {"not_now_at": "CURRENT_TIMESTAMP", "not_now_tally": "1"}
            tally = ("not_now_tally = command_results.not_now_tally + 1",)
        elif self._delete:
            self._execute(
                txn, "DELETE FROM enrollment_queue WHERE id = ? AND command_uuid = ?", key
            )
            if txn.rowcount == 0:
                return self._not_queued(enrollment_id, report)
            self._execute(
                txn, "DELETE FROM command_results WHERE id = ? AND command_uuid = ?", key
            )
            self._collect_commands(txn, [report.command_uuid])
            return
        else:
            values, tally = {}, ()
        query = self.dialect.upsert(
            "command_results",
            {"id": "?", "command_uuid": "?", "status": "?", "result": "?", **values},
            key=("id", "command_uuid"),
            copy=("status", "result"),
            assign=("updated_at = CURRENT_TIMESTAMP", *tally),
            only_if=queued,
        )
        self._execute(txn, query, (*key, report.status, report.raw, *key))
        if txn.rowcount == 0:
            self._not_queued(enrollment_id, report)

    def _not_queued(self, enrollment_id: str, report: CommandReport) -> None:
        """A report for a command not queued to this enrollment changes nothing."""
        self._log.info(
            "report {status} for command {command_uuid} not queued to "
            "{enrollment_id}: ignored",
            status=report.status,
            command_uuid=report.command_uuid,
            enrollment_id=enrollment_id,
        )

    def _collect_commands(self, txn, command_uuids: Sequence[str]) -> int:
        """Delete those of the commands no queue row or result refers to any more; how many."""
        collected = 0
        for chunk in chunks(command_uuids):
            self._execute(
                txn,
                "DELETE FROM commands WHERE command_uuid IN ({}) "
                "AND NOT EXISTS (SELECT 1 FROM enrollment_queue AS q "
                "WHERE q.command_uuid = commands.command_uuid) "
                "AND NOT EXISTS (SELECT 1 FROM command_results AS r "
                "WHERE r.command_uuid = commands.command_uuid)".format(
                    marks(len(chunk))
                ),
                chunk,
            )
            collected += txn.rowcount
        return collected

    def retrieve_next_command(self, request: MDMRequest, skip_not_now: bool) -> Deferred:
        return self._interact(self._retrieve_next_command, request.enroll_id.id, skip_not_now)

    def _retrieve_next_command(self, txn, enrollment_id: str, skip_not_now: bool):
        unanswered = "r.status IS NULL"
        if not skip_not_now:
            unanswered = f"({unanswered} OR r.status = '{NOT_NOW}')"
        row = self._one(
            txn,
            "SELECT c.command_uuid, c.request_type, c.command "
            "FROM enrollment_queue AS q "
            "INNER JOIN commands AS c ON c.command_uuid = q.command_uuid "
            "LEFT JOIN command_results AS r "
            "ON r.id = q.id AND r.command_uuid = q.command_uuid "
            f"WHERE q.id = ? AND q.active = TRUE AND {unanswered} "
            f"ORDER BY {self.dialect.queue_order} LIMIT 1",
            (enrollment_id,),
        )
        if row is None:
            return None
        return Command(command_uuid=row[0], request_type=row[1], raw=as_bytes(row[2]))

    def clear_queue(self, request: MDMRequest) -> Deferred:
        return self._interact(self._clear_queue, request.enroll_id)

    def _channel_ids(self, txn, enroll_id: EnrollID) -> list[str]:
        """
        The enrollment and, for a device, its user channels, sorted.

        Read first so that the queue statements name their rows exactly: an
        ``id = ? OR id IN (subquery)`` in an UPDATE is a full index scan on
        MariaDB, which locks every row it reads, other enrollments' too.
        """
        if enroll_id.is_user_channel:
            return [enroll_id.id]
        rows = self._all(txn, "SELECT id FROM enrollments WHERE device_id = ?", (enroll_id.id,))
        return sorted({enroll_id.id, *(row[0] for row in rows)})

    def _clear_queue(self, txn, enroll_id: EnrollID):
        self._clear_queues(txn, self._channel_ids(txn, enroll_id))

    def _clear_queues(self, txn, ids: list[str]) -> None:
        """Unanswered (or NotNow) entries of these enrollments made inactive, or deleted."""
        of_ids = f"id IN ({marks(len(ids))})"
        if not self._delete:
            # As NanoMDM: unanswered (or NotNow) commands become inactive, kept as history.
            self._execute(
                txn,
                "UPDATE enrollment_queue SET active = FALSE, "
                f"updated_at = CURRENT_TIMESTAMP WHERE {of_ids} AND active = TRUE "
                "AND NOT EXISTS (SELECT 1 FROM command_results AS r "
                "WHERE r.id = enrollment_queue.id "
                "AND r.command_uuid = enrollment_queue.command_uuid "
                f"AND r.status != '{NOT_NOW}')",
                ids,
            )
            return
        command_uuids = [
            row[0]
            for row in self._all(
                txn, f"SELECT DISTINCT command_uuid FROM enrollment_queue WHERE {of_ids}", ids
            )
        ]
        for table in ("command_results", "enrollment_queue"):
            self._execute(txn, f"DELETE FROM {table} WHERE {of_ids}", ids)
        self._collect_commands(txn, command_uuids)

    # -- bootstrap token, tally ------------------------------------------------

    def store_bootstrap_token(
        self, request: MDMRequest, message: SetBootstrapToken
    ) -> Deferred:
        token = base64.b64encode(message.bootstrap_token).decode("ascii") or None
        return self._interact(
            self._execute,
            "UPDATE devices SET bootstrap_token_b64 = ?, "
            "bootstrap_token_at = CURRENT_TIMESTAMP WHERE id = ?",
            (token, request.enroll_id.id),
        )

    async def retrieve_bootstrap_token(
        self, request: MDMRequest, message: GetBootstrapToken
    ) -> bytes | None:
        row = await self._interact(
            self._one,
            "SELECT bootstrap_token_b64 FROM devices WHERE id = ?",
            (request.enroll_id.id,),
        )
        if row is None or row[0] is None:
            return None
        return base64.b64decode(row[0])

    async def retrieve_token_update_tally(self, enrollment_id: str) -> int:
        row = await self._interact(
            self._one,
            "SELECT token_update_tally FROM enrollments WHERE id = ?",
            (enrollment_id,),
        )
        return 0 if row is None else int(row[0])

    # -- migration and diagnostics -------------------------------------------

    def retrieve_migration_checkins(self) -> Deferred:
        return self._interact(self._migration_checkins)

    @one_snapshot  # users and devices as of one moment
    def _migration_checkins(self, txn) -> list[bytes]:
        """Each device's Authenticate and TokenUpdate, then its user channels' TokenUpdates."""
        users: dict[str, list[bytes]] = {}
        for device_id, token_update in self._all(
            txn,
            "SELECT device_id, token_update FROM users "
            "WHERE token_update IS NOT NULL ORDER BY device_id, id",
        ):
            users.setdefault(device_id, []).append(as_bytes(token_update))
        checkins = []
        for device_id, authenticate, token_update in self._all(
            txn, "SELECT id, authenticate, token_update FROM devices ORDER BY id"
        ):
            checkins.append(as_bytes(authenticate))
            if token_update is not None:
                checkins.append(as_bytes(token_update))
            checkins += users.get(device_id, [])
        return checkins

    def row_counts(self) -> Deferred:
        """Rows in the queue tables, to see what ``delete=1`` leaves behind."""
        return self._interact(self._row_counts)

    def _row_counts(self, txn) -> dict[str, int]:
        return {t: self._one(txn, f"SELECT COUNT(*) FROM {t}")[0] for t in QUEUE_TABLES}
