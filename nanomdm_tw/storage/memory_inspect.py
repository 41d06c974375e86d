"""
The inspection roles of the in-memory backend: its dictionaries read as the SQL backends' joins.

Enrollments are listed as the SQL backends' ``enrollments INNER JOIN
devices LEFT JOIN users`` lists them, queues in delivery order (priority
high first, then enqueue order).  Each call sorts what it reads: this
backend is for tests and throw-away servers, not for a year's history.
"""

from collections import Counter
from collections.abc import Iterator

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


def _matches(wanted: EnrollmentFilter, record: EnrollmentRecord) -> bool:
    """Every criterion the filter sets holds for the record."""
    in_lists = (
        (wanted.ids, record.id),
        (wanted.serials, record.serial_number),
        (wanted.user_short_names, record.user_short_name),
        (wanted.types, record.type),
    )
    if any(values and value not in values for values, value in in_lists):
        return False
    equal = (
        (wanted.enabled, record.enabled),
        (wanted.topic, record.topic),
        (wanted.user_id, record.user_id),
        (wanted.device_id, record.device_id),
    )
    return all(value is None or value == actual for value, actual in equal)


def _unanswered(queued) -> bool:
    """What NanoMDM's queue API lists: active, and no answer yet or a NotNow."""
    return queued.active and queued.status in (None, NOT_NOW)


@implementer(IInspectionStore, IQueueEditor)
class MemoryInspection:
    """IInspectionStore and IQueueEditor over MemoryStorage's dictionaries."""

    def _enrollment_record(
        self, enrollment_id: str, include_device_cert: bool, include_unlock_token: bool
    ) -> EnrollmentRecord | None:
        enrollment = self._enrollments[enrollment_id]
        device = self._devices.get(enrollment.device_id)
        if device is None:  # as the SQL backends' inner join
            return None
        user = None if enrollment.user_id is None else self._users.get(enrollment.user_id)
        return EnrollmentRecord(
            id=enrollment_id,
            type=str(enrollment.type),
            device_id=enrollment.device_id,
            user_id=enrollment.user_id,
            serial_number=device.serial_number or None,
            user_short_name=None if user is None else user.user_short_name,
            user_long_name=None if user is None else user.user_long_name,
            topic=enrollment.topic,
            enabled=enrollment.enabled,
            token_update_tally=enrollment.token_update_tally,
            last_seen=enrollment.last_seen,
            created=enrollment.created,
            updated=enrollment.updated,
            device_cert=device.identity_cert if include_device_cert else None,
            unlock_token=device.unlock_token if include_unlock_token else None,
        )

    async def query_enrollments(
        self,
        filter: EnrollmentFilter,
        limit: int,
        after: str | None = None,
        offset: int = 0,
        include_device_cert: bool = False,
        include_unlock_token: bool = False,
    ) -> list[EnrollmentRecord]:
        records = []
        for enrollment_id in sorted(self._enrollments):
            if len(records) == limit:
                break
            if after is not None and enrollment_id <= after:
                continue
            record = self._enrollment_record(
                enrollment_id, include_device_cert, include_unlock_token
            )
            if record is None or not _matches(filter, record):
                continue
            if offset:
                offset -= 1
                continue
            records.append(record)
        return records

    async def enrollment_counts(self) -> dict[tuple[str, bool], int]:
        return dict(Counter((str(e.type), e.enabled) for e in self._enrollments.values()))

    def _entry(self, enrollment_id: str, command_uuid: str, queued, with_command: bool):
        command = self._commands[command_uuid]
        return QueueEntry(
            enrollment_id=enrollment_id,
            command_uuid=command_uuid,
            request_type=command.request_type,
            command=command.raw if with_command else b"",
            priority=queued.priority,
            seq=queued.seq,
            active=queued.active,
            status=queued.status,
            not_now_count=queued.not_now_count,
            result=queued.result,
            enqueued_at=queued.enqueued_at,
            reported_at=queued.reported_at,
        )

    async def queued_commands(
        self,
        enrollment_id: str,
        limit: int,
        after: QueueCursor | None = None,
        offset: int = 0,
        include_answered: bool = False,
    ) -> list[QueueEntry]:
        queue = self._queues.get(enrollment_id, {})
        listed = sorted(
            (
                (-queued.priority, queued.seq, command_uuid)
                for command_uuid, queued in queue.items()
                if include_answered or _unanswered(queued)
            )
        )
        if after is not None:
            listed = [item for item in listed if item[:2] > (-after.priority, after.seq)]
        return [
            self._entry(enrollment_id, command_uuid, queue[command_uuid], with_command=True)
            for *_, command_uuid in listed[offset : offset + limit]
        ]

    def _all_entries(self) -> Iterator:
        for queue in self._queues.values():
            yield from queue.values()

    async def pending_count(self) -> int:
        return sum(_unanswered(queued) for queued in self._all_entries())

    async def retrieve_command(self, command_uuid: str) -> CommandRecord | None:
        command = self._commands.get(command_uuid)
        if command is None:
            return None
        return CommandRecord(
            command_uuid=command_uuid,
            request_type=command.request_type,
            command=command.raw,
            created=self._command_created[command_uuid],
        )

    async def command_deliveries(
        self, command_uuid: str, limit: int, after: str | None = None
    ) -> list[QueueEntry]:
        # The command itself is left out as the SQL backends leave it: retrieve_command has it.
        enrollment_ids = sorted(
            enrollment_id
            for enrollment_id, queue in self._queues.items()
            if command_uuid in queue and (after is None or enrollment_id > after)
        )
        return [
            self._entry(i, command_uuid, self._queues[i][command_uuid], with_command=False)
            for i in enrollment_ids[:limit]
        ]

    async def clear_queue_by_id(self, enrollment_id: str) -> None:
        self._clear(enrollment_id)

    async def remove_queued_command(self, enrollment_id: str, command_uuid: str) -> bool:
        queued = self._queues.get(enrollment_id, {}).get(command_uuid)
        if queued is None or not _unanswered(queued):
            return False
        if self._delete:
            self._unqueue(enrollment_id, [command_uuid])
        else:
            queued.active = False
        return True
