"""
What the inspection API reads from storage, and the few writes it makes.

NanoMDM's newest versions answer ``POST /v1/enrollments`` and
``GET|DELETE /v1/queue/{id}`` from MySQL and PostgreSQL only; every backend
of ours provides these roles, with command results and history besides.
The records are plain values: the API turns them into JSON, the admin
console into pages.

Ordering and pagination are the backend's job, so a page costs the same on
a store of a year's history as on an empty one: enrollments are listed in
ID order from a keyset (``after``), queues in delivery order from a
``QueueCursor``; ``offset`` is kept for NanoMDM's clients.
"""

import datetime
from dataclasses import dataclass, field

from zope.interface import Interface

# Queue entry states, as the API reports them.
PENDING = "pending"
NOT_NOW_STATE = "NotNow"
ANSWERED = "answered"
CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class EnrollmentFilter:
    """
    Which enrollments to list; every given criterion must hold (logical AND).

    The first five are NanoMDM's filter; empty tuples and None mean "any".
    """

    ids: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()
    user_short_names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    enabled: bool | None = None
    topic: str | None = None
    user_id: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentRecord:
    """
    One enrollment as storage knows it.

    ``type`` is NanoMDM's name ("Device", "User", "User Enrollment (Device)",
    "User Enrollment", "Shared iPad").  ``device_id`` is the device channel's
    enrollment ID (the parent of a user channel, itself for a device).
    ``device_cert`` (PEM text) and ``unlock_token`` are filled only when the
    query asked for them.  Times are timezone-aware UTC, or None where the
    backend has none.
    """

    id: str
    type: str
    device_id: str
    user_id: str | None
    serial_number: str | None
    user_short_name: str | None
    user_long_name: str | None
    topic: str
    enabled: bool
    token_update_tally: int
    last_seen: datetime.datetime | None
    created: datetime.datetime | None
    updated: datetime.datetime | None
    device_cert: str | None = field(default=None, repr=False)
    unlock_token: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class QueueCursor:
    """Where a queue page ended: delivery order is priority (high first), then seq."""

    priority: int
    seq: int


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """
    One command queued to one enrollment, with that enrollment's last report on it.

    ``status`` is None until the enrollment reports on the command, then the
    last report's Status ("NotNow", "Acknowledged", "Error", ...).
    ``active`` is False once the queue was cleared or the entry removed.
    ``seq`` orders entries of equal priority (enqueue order); together with
    ``priority`` it is the entry's ``QueueCursor``.
    """

    enrollment_id: str
    command_uuid: str
    request_type: str
    command: bytes = field(repr=False)
    priority: int
    seq: int
    active: bool
    status: str | None
    not_now_count: int
    result: bytes | None = field(repr=False)
    enqueued_at: datetime.datetime | None
    reported_at: datetime.datetime | None

    @property
    def state(self) -> str:
        """pending, NotNow, answered, or cleared (removed before an answer)."""
        if self.status is not None and self.status != NOT_NOW_STATE:
            return ANSWERED
        if not self.active:
            return CLEARED
        return NOT_NOW_STATE if self.status == NOT_NOW_STATE else PENDING

    @property
    def cursor(self) -> QueueCursor:
        return QueueCursor(self.priority, self.seq)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A stored command: the raw plist the API enqueued."""

    command_uuid: str
    request_type: str
    command: bytes = field(repr=False)
    created: datetime.datetime | None


class IInspectionStore(Interface):
    """Reads for the inspection API (and the admin console); cheap at any table size."""

    async def query_enrollments(
        filter: EnrollmentFilter,
        limit: int,
        after: str | None = None,
        offset: int = 0,
        include_device_cert: bool = False,
        include_unlock_token: bool = False,
    ) -> list[EnrollmentRecord]:
        """
        Up to ``limit`` enrollments matching ``filter``, in ascending ID order.

        ``after``: only IDs greater than this one (keyset pagination);
        ``offset``: skip that many first (NanoMDM's offset pagination).
        Enrollments whose device row is missing are not listed (as NanoMDM's
        inner join).
        """

    async def enrollment_counts() -> dict[tuple[str, bool], int]:
        """How many enrollments there are per (type, enabled)."""

    async def queued_commands(
        enrollment_id: str,
        limit: int,
        after: QueueCursor | None = None,
        offset: int = 0,
        include_answered: bool = False,
    ) -> list[QueueEntry]:
        """
        Up to ``limit`` entries of one enrollment's queue, in delivery order.

        By default what NanoMDM's queue API lists: active entries not yet
        answered, or last answered NotNow.  ``include_answered`` adds the
        enrollment's history: answered and cleared entries too.
        An unknown enrollment has an empty queue.
        """

    async def pending_count() -> int:
        """Active, unanswered (or NotNow) queue entries over all enrollments."""

    async def retrieve_command(command_uuid: str) -> CommandRecord | None:
        """The stored command, or None."""

    async def command_deliveries(
        command_uuid: str, limit: int, after: str | None = None
    ) -> list[QueueEntry]:
        """
        Per enrollment the command was queued to: its queue entry and report,
        in ascending enrollment ID order from the keyset ``after``.  The
        entries' ``command`` may be empty: ``retrieve_command`` has it.
        """


class IQueueEditor(Interface):
    """The API's own queue writes: NanoMDM's clear-by-ID, and removing one command."""

    async def clear_queue_by_id(enrollment_id: str) -> None:
        """
        Deactivate the enrollment's own pending and NotNow entries (not those
        of its user channels), as NanoMDM's ``DELETE /v1/queue/{id}``.  An
        unknown enrollment is no error.
        """

    async def remove_queued_command(enrollment_id: str, command_uuid: str) -> bool:
        """
        Deactivate one pending or NotNow entry; False when there was none
        (unknown enrollment or command, or already answered or cleared).
        """


class IRetention(Interface):
    """Pruning of history, for the ``retention=`` storage option."""

    async def prune_history(before: datetime.datetime, batch: int) -> int:
        """
        Delete at most ``batch`` entries of history (a queue row with its
        result) last touched before ``before``, and the commands they leave
        unreferenced; return how many rows were deleted (0: nothing left to
        prune).

        History is: answered results (any status but NotNow) and their queue
        entries; cleared (inactive) queue entries; then commands that no queue
        entry and no result refers to any more.  Never an active entry still
        waiting for an answer, nor its command.
        """
