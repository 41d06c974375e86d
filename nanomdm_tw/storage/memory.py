"""
The in-memory backend: the SQL backends' semantics in dictionaries.

For tests and throw-away servers; nothing survives a restart.  Every method
runs on the reactor thread without yielding, so each is atomic.
"""

import datetime
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from ..mdm.enrollment import EnrollType
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
    new_stale_token,
)
from .interfaces import IStorage, PushCert, PushInfo, UnknownEnrollment
from .memory_inspect import MemoryInspection


@dataclass(slots=True)
class _Device:
    authenticate: bytes
    identity_cert: str | None
    serial_number: str
    token_update: bytes | None = None
    unlock_token: bytes | None = None
    bootstrap_token: bytes | None = None


@dataclass(slots=True)
class _User:
    device_id: str
    user_short_name: str | None = None
    user_long_name: str | None = None
    token_update: bytes | None = None
    user_authenticate: bytes | None = None
    user_authenticate_digest: bytes | None = None


@dataclass(slots=True)
class _Enrollment:
    device_id: str
    user_id: str | None
    type: EnrollType
    topic: str
    push_magic: str
    token: bytes
    created: datetime.datetime
    updated: datetime.datetime
    last_seen: datetime.datetime
    enabled: bool = True
    token_update_tally: int = 1


@dataclass(slots=True)
class _Queued:
    """One command queued to one enrollment, with the enrollment's last report on it."""

    seq: int
    priority: int
    enqueued_at: datetime.datetime
    active: bool = True
    status: str | None = None
    result: bytes | None = field(default=None, repr=False)
    not_now_count: int = 0
    reported_at: datetime.datetime | None = None
    # When last answered or cleared (else queued), in clock seconds: what retention ages.
    updated_at: float = 0.0


@implementer(IStorage)
class MemoryStorage(MemoryInspection):
    _log = Logger()

    def __init__(
        self,
        options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """``clock``: seconds since the epoch, for the times the inspection API reports."""
        self._delete = bool((options or {}).get("delete", False))
        self._clock = clock
        self._devices: dict[str, _Device] = {}
        self._users: dict[str, _User] = {}
        self._enrollments: dict[str, _Enrollment] = {}
        self._commands: dict[str, Command] = {}
        self._command_created: dict[str, datetime.datetime] = {}
        # enrollment ID -> command UUID -> queue entry
        self._queues: dict[str, dict[str, _Queued]] = {}
        # command UUID -> how many queue entries refer to it
        self._references: Counter[str] = Counter()
        self._sequence = itertools.count()
        self._push_certs: dict[str, PushCert] = {}
        self._cert_hashes: set[tuple[str, str]] = set()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        """Memory always answers."""

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)

    def touch(self, enrollment_id: str) -> None:
        enrollment = self._enrollments.get(enrollment_id)
        if enrollment is not None:
            enrollment.last_seen = self._now()

    # -- check-ins --------------------------------------------------------------

    async def store_authenticate(self, request: MDMRequest, message: Authenticate) -> None:
        enrollment_id = request.enroll_id.id
        previous = self._devices.get(enrollment_id)
        device = _Device(
            authenticate=message.raw,
            identity_cert=identity_cert_pem(request),
            serial_number=message.serial_number,
        )
        if previous is not None:
            # A re-Authenticate keeps the last TokenUpdate but, as NanoMDM, forgets
            # the one-time values: bootstrap and unlock tokens come anew.
            device.token_update = previous.token_update
        self._devices[enrollment_id] = device

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            raise UnknownEnrollment(device_id)
        return device

    def _user(self, request: MDMRequest, message: TokenUpdate | UserAuthenticate) -> _User:
        """The user channel's record, created under its device, named as the message names it."""
        enroll_id = request.enroll_id
        self._device(enroll_id.device_channel_id)
        user = self._users.setdefault(enroll_id.id, _User(enroll_id.device_channel_id))
        user.user_short_name = message.enrollment.user_short_name or None
        user.user_long_name = message.enrollment.user_long_name or None
        return user

    async def store_token_update(self, request: MDMRequest, message: TokenUpdate) -> None:
        enroll_id = request.enroll_id
        if enroll_id.is_user_channel:
            self._user(request, message).token_update = message.raw
        else:
            device = self._device(enroll_id.id)
            device.token_update = message.raw
            if message.unlock_token:
                device.unlock_token = message.unlock_token
        enrollment = self._enrollments.get(enroll_id.id)
        now = self._now()
        self._enrollments[enroll_id.id] = _Enrollment(
            device_id=enroll_id.device_channel_id,
            user_id=enroll_id.id if enroll_id.is_user_channel else None,
            type=enroll_id.type,
            topic=message.topic,
            push_magic=message.push_magic,
            token=message.token,
            created=now if enrollment is None else enrollment.created,
            updated=now,
            last_seen=now,
            token_update_tally=1 if enrollment is None else enrollment.token_update_tally + 1,
        )

    async def store_user_authenticate(
        self, request: MDMRequest, message: UserAuthenticate
    ) -> None:
        user = self._user(request, message)
        if message.digest_response:
            user.user_authenticate_digest = message.raw
        else:
            user.user_authenticate = message.raw

    def _with_sub_enrollments(self, enrollment_id: str) -> list[str]:
        """The enrollment and the user channels whose device it is."""
        return [enrollment_id] + [
            i
            for i, e in self._enrollments.items()
            if e.device_id == enrollment_id and i != enrollment_id
        ]

    async def disable(self, request: MDMRequest) -> None:
        now = self._now()
        for enrollment_id in self._with_sub_enrollments(request.enroll_id.id):
            enrollment = self._enrollments.get(enrollment_id)
            if enrollment is not None and enrollment.enabled:
                enrollment.enabled = False
                enrollment.token_update_tally = 0
                enrollment.last_seen = enrollment.updated = now

    # -- the command queue ----------------------------------------------------

    async def enqueue_command(
        self, enrollment_ids: list[str], command: Command, priority: int = 0
    ) -> dict[str, str]:
        """As ICommandEnqueuer; ``priority`` (higher first) is NanoMDM's queue column."""
        if not enrollment_ids:
            raise ValueError("no enrollment IDs to queue the command to")
        ids = list(dict.fromkeys(enrollment_ids))
        errors = {}
        for enrollment_id in ids:
            if enrollment_id not in self._enrollments:
                errors[enrollment_id] = QUEUE_ERROR_UNKNOWN
            elif command.command_uuid in self._queues.get(enrollment_id, {}):
                errors[enrollment_id] = QUEUE_ERROR_ALREADY_QUEUED
        to_queue = [i for i in ids if i not in errors]
        if not to_queue:
            return errors
        now = self._now()
        stored = self._commands.setdefault(command.command_uuid, command)
        self._command_created.setdefault(command.command_uuid, now)
        if stored.raw != command.raw:
            errors.update((i, QUEUE_ERROR_UUID_CONFLICT) for i in to_queue)
            return errors
        for enrollment_id in to_queue:
            self._queues.setdefault(enrollment_id, {})[command.command_uuid] = _Queued(
                seq=next(self._sequence),
                priority=priority,
                enqueued_at=now,
                updated_at=now.timestamp(),
            )
            self._references[command.command_uuid] += 1
        return errors

    async def store_command_report(self, request: MDMRequest, report: CommandReport) -> None:
        if report.is_idle:
            return
        enrollment_id = request.enroll_id.id
        queued = self._queues.get(enrollment_id, {}).get(report.command_uuid)
        if queued is None:
            self._log.info(
                "report {status} for command {command_uuid} not queued to "
                "{enrollment_id}: ignored",
                status=report.status,
                command_uuid=report.command_uuid,
                enrollment_id=enrollment_id,
            )
            return
        if self._delete and report.status != NOT_NOW:
            self._unqueue(enrollment_id, [report.command_uuid])
            return
        queued.status = report.status
        queued.result = report.raw
        queued.reported_at = self._now()
        if report.status == NOT_NOW:
            queued.not_now_count += 1
        queued.updated_at = self._clock()

    def _unqueue(self, enrollment_id: str, command_uuids: list[str]) -> None:
        """Drop queue entries, and each command no queue refers to any more."""
        queue = self._queues.get(enrollment_id, {})
        for command_uuid in command_uuids:
            del queue[command_uuid]
            self._references[command_uuid] -= 1
            if not self._references[command_uuid]:
                del self._references[command_uuid]
                del self._commands[command_uuid]
                del self._command_created[command_uuid]
        if not queue:
            self._queues.pop(enrollment_id, None)

    async def report_and_next(
        self, request: MDMRequest, report: CommandReport, skip_not_now: bool
    ) -> Command | None:
        await self.store_command_report(request, report)
        return await self.retrieve_next_command(request, skip_not_now)

    async def retrieve_next_command(
        self, request: MDMRequest, skip_not_now: bool
    ) -> Command | None:
        # One pass, no call per entry: answered entries stay in the queue
        # (without delete) and every report and Idle scans it.
        best = None
        for command_uuid, queued in self._queues.get(request.enroll_id.id, {}).items():
            if queued.active and (
                queued.status is None or (queued.status == NOT_NOW and not skip_not_now)
            ):
                rank = (-queued.priority, queued.seq)
                if best is None or rank < best[0]:
                    best = (rank, command_uuid)
        return None if best is None else self._commands[best[1]]

    async def clear_queue(self, request: MDMRequest) -> None:
        for enrollment_id in self._with_sub_enrollments(request.enroll_id.id):
            self._clear(enrollment_id)

    def _clear(self, enrollment_id: str) -> None:
        """One enrollment's unanswered (or NotNow) entries made inactive (dropped with delete)."""
        queue = self._queues.get(enrollment_id, {})
        if self._delete:
            self._unqueue(enrollment_id, list(queue))
            return
        for queued in queue.values():
            if queued.active and queued.status in (None, NOT_NOW):
                queued.active = False
                queued.updated_at = self._clock()

    async def prune_history(self, before: datetime.datetime, batch: int) -> int:
        return self._pruned_history(before.timestamp(), batch)

    def _pruned_history(self, cutoff: float, batch: int) -> int:
        """Drop up to ``batch`` entries answered or cleared before ``cutoff``; rows, as SQL counts."""
        entries = itertools.islice(
            (
                (enrollment_id, command_uuid, queued.status is not None)
                for enrollment_id, queue in self._queues.items()
                for command_uuid, queued in queue.items()
                if queued.updated_at < cutoff
                and (not queued.active or queued.status not in (None, NOT_NOW))
            ),
            batch,
        )
        rows, commands = 0, len(self._commands)
        for enrollment_id, command_uuid, has_result in list(entries):
            self._unqueue(enrollment_id, [command_uuid])
            rows += 1 + has_result
        return rows + commands - len(self._commands)

    # -- bootstrap token, tally, push ----------------------------------------

    async def store_bootstrap_token(
        self, request: MDMRequest, message: SetBootstrapToken
    ) -> None:
        device = self._devices.get(request.enroll_id.id)
        if device is not None:
            device.bootstrap_token = message.bootstrap_token or None

    async def retrieve_bootstrap_token(
        self, request: MDMRequest, message: GetBootstrapToken
    ) -> bytes | None:
        device = self._devices.get(request.enroll_id.id)
        return None if device is None else device.bootstrap_token

    async def retrieve_token_update_tally(self, enrollment_id: str) -> int:
        enrollment = self._enrollments.get(enrollment_id)
        return 0 if enrollment is None else enrollment.token_update_tally

    async def retrieve_push_info(self, enrollment_ids: list[str]) -> dict[str, PushInfo]:
        infos = {}
        for enrollment_id in enrollment_ids:
            enrollment = self._enrollments.get(enrollment_id)
            if enrollment is not None and enrollment.enabled:
                infos[enrollment_id] = PushInfo(
                    enrollment_id=enrollment_id,
                    topic=enrollment.topic,
                    token=enrollment.token,
                    push_magic=enrollment.push_magic,
                )
        return infos

    async def store_push_cert(self, topic: str, cert_pem: bytes, key_pem: bytes) -> str:
        previous = self._push_certs.get(topic)
        stale_token = str(
            new_stale_token(None if previous is None else int(previous.stale_token))
        )
        self._push_certs[topic] = PushCert(topic, cert_pem, key_pem, stale_token)
        return stale_token

    async def retrieve_push_cert(self, topic: str) -> PushCert | None:
        return self._push_certs.get(topic)

    async def retrieve_push_certs(self) -> list[PushCert]:
        return [self._push_certs[topic] for topic in sorted(self._push_certs)]

    async def is_push_cert_stale(self, topic: str, stale_token: str) -> bool:
        cert = self._push_certs.get(topic)
        return cert is None or cert.stale_token != stale_token

    # -- certificate authentication -------------------------------------------

    async def has_cert_hash(self, cert_hash: str) -> bool:
        return await self.enrollment_id_for_cert_hash(cert_hash) is not None

    async def enrollment_has_cert_hash(self, enrollment_id: str) -> bool:
        return any(i == enrollment_id for i, _ in self._cert_hashes)

    async def is_cert_hash_associated(self, enrollment_id: str, cert_hash: str) -> bool:
        return (enrollment_id, cert_hash.lower()) in self._cert_hashes

    async def associate_cert_hash(self, enrollment_id: str, cert_hash: str) -> None:
        self._cert_hashes.add((enrollment_id, cert_hash.lower()))

    async def enrollment_id_for_cert_hash(self, cert_hash: str) -> str | None:
        cert_hash = cert_hash.lower()
        matches = sorted(i for i, h in self._cert_hashes if h == cert_hash)
        return matches[0] if matches else None

    # -- migration and diagnostics -------------------------------------------

    async def retrieve_migration_checkins(self) -> list[bytes]:
        """Each device's Authenticate and TokenUpdate, then its user channels' TokenUpdates."""
        checkins = []
        for device_id in sorted(self._devices):
            device = self._devices[device_id]
            checkins.append(device.authenticate)
            if device.token_update is not None:
                checkins.append(device.token_update)
            checkins += [
                self._users[user_id].token_update
                for user_id in sorted(self._users)
                if self._users[user_id].device_id == device_id
                and self._users[user_id].token_update is not None
            ]
        return checkins

    async def row_counts(self) -> dict[str, int]:
        """What the SQL backends' queue tables would hold, to see what ``delete=1`` leaves."""
        entries = [q for queue in self._queues.values() for q in queue.values()]
        return {
            "commands": len(self._commands),
            "command_results": sum(q.status is not None for q in entries),
            "enrollment_queue": len(entries),
        }
