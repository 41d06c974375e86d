"""
The storage roles, mirroring NanoMDM's storage interfaces.

Every method returns an awaitable (a Deferred from an adbapi pool, or a
coroutine for the in-memory backend); callers ``await`` it.  Queue and
check-in methods take the MDMRequest so a backend sees the enrollment ID,
its type and parent, and the device certificate; the API-side roles take
plain enrollment IDs.
"""

from dataclasses import dataclass

from zope.interface import Interface

from ..errors import MessageError

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
from .inspection import IInspectionStore, IQueueEditor, IRetention


class UnknownEnrollment(MessageError):
    """
    A message for an enrollment storage has never seen (a TokenUpdate
    before any Authenticate, say): the client's mistake, a 400.
    """

    def __init__(self, enrollment_id: str):
        super().__init__(f"unknown enrollment {enrollment_id}: Authenticate first")


class StorageUnreachable(Exception):
    """The database server could not be reached: worth trying again later."""


@dataclass(frozen=True, slots=True)
class PushInfo:
    """What APNs needs to wake one enrollment."""

    enrollment_id: str
    topic: str
    token: bytes
    push_magic: str


@dataclass(frozen=True, slots=True)
class PushCert:
    """A stored APNs push certificate; ``stale_token`` changes on every upload."""

    topic: str
    cert_pem: bytes
    key_pem: bytes
    stale_token: str


class ICheckinStore(Interface):
    async def store_authenticate(request: MDMRequest, message: Authenticate) -> None:
        """Store an Authenticate: the device record (and its identity certificate)."""

    async def store_token_update(request: MDMRequest, message: TokenUpdate) -> None:
        """Store topic, token, push magic, unlock token; enable; bump the tally."""

    async def store_user_authenticate(
        request: MDMRequest, message: UserAuthenticate
    ) -> None:
        """Keep the latest UserAuthenticate message of a user channel."""

    async def disable(request: MDMRequest) -> None:
        """Disable the enrollment and, for a device, all of its user channels."""

    def touch(enrollment_id: str) -> None:
        """
        Note that the enrollment was seen now (NanoMDM's last_seen_at).

        In memory only: backends write these later, in batches, so an Idle
        report costs no write of its own.
        """


class ICommandQueue(Interface):
    async def store_command_report(request: MDMRequest, report: CommandReport) -> None:
        """
        Store a non-Idle report for a command queued to this enrollment.

        A report naming a command that is not queued for this enrollment
        changes no queue (it may be ignored).
        """

    async def retrieve_next_command(
        request: MDMRequest, skip_not_now: bool
    ) -> Command | None:
        """
        The next unanswered command for this enrollment.

        Order: priority (higher first), then enqueue order.  With
        ``skip_not_now`` commands last answered NotNow are passed over.
        """

    async def report_and_next(
        request: MDMRequest, report: CommandReport, skip_not_now: bool
    ) -> Command | None:
        """
        ``store_command_report`` then ``retrieve_next_command``, in one transaction.

        What the core service does for every report: one commit, not two.
        """

    async def clear_queue(request: MDMRequest) -> None:
        """Drop the queue of the enrollment and of its sub-enrollments."""


class IBootstrapTokenStore(Interface):
    async def store_bootstrap_token(
        request: MDMRequest, message: SetBootstrapToken
    ) -> None:
        """Store the device's bootstrap token (an empty one clears it)."""

    async def retrieve_bootstrap_token(
        request: MDMRequest, message: GetBootstrapToken
    ) -> bytes | None:
        """The stored bootstrap token, or None."""


class ITokenUpdateTallyStore(Interface):
    async def retrieve_token_update_tally(enrollment_id: str) -> int:
        """TokenUpdates since the last Authenticate (0 for an unknown ID)."""


class IPushInfoStore(Interface):
    async def retrieve_push_info(enrollment_ids: list[str]) -> dict[str, PushInfo]:
        """Push info of each enabled enrollment that has one; others are absent."""


class IPushCertStore(Interface):
    async def store_push_cert(topic: str, cert_pem: bytes, key_pem: bytes) -> str:
        """Store (or replace) the topic's push cert; returns the new stale token."""

    async def retrieve_push_cert(topic: str) -> PushCert | None:
        """The topic's push cert, or None."""

    async def retrieve_push_certs() -> list[PushCert]:
        """Every stored push cert, sorted by topic (a console's expiry list)."""

    async def is_push_cert_stale(topic: str, stale_token: str) -> bool:
        """True when the stored cert is no longer the one with ``stale_token``."""


class ICommandEnqueuer(Interface):
    async def enqueue_command(
        enrollment_ids: list[str], command: Command
    ) -> dict[str, str]:
        """
        Store the command once and queue it to each enrollment, in one transaction.

        Returns an error message per enrollment ID that could not be queued
        (unknown ID, or the command UUID already queued to it); the others
        are queued.  Raises on a failure that queued nothing.
        """


class ICertAuthStore(Interface):
    """Associations of device-channel enrollment IDs with sha256 hashes of certs."""

    async def has_cert_hash(cert_hash: str) -> bool:
        """Is this hash associated with any enrollment?"""

    async def enrollment_has_cert_hash(enrollment_id: str) -> bool:
        """Has this enrollment any associated hash?"""

    async def is_cert_hash_associated(enrollment_id: str, cert_hash: str) -> bool:
        """Is this exact pair associated?"""

    async def associate_cert_hash(enrollment_id: str, cert_hash: str) -> None:
        """Associate the pair (idempotent)."""

    async def enrollment_id_for_cert_hash(cert_hash: str) -> str | None:
        """The enrollment associated with this hash, for the auth proxy."""


class IMigrationSource(Interface):
    async def retrieve_migration_checkins() -> list[bytes]:
        """Authenticate then TokenUpdate plists rebuilt for every enrollment."""


class IStorage(
    ICheckinStore,
    ICommandQueue,
    IBootstrapTokenStore,
    ITokenUpdateTallyStore,
    IPushInfoStore,
    IPushCertStore,
    ICommandEnqueuer,
    ICertAuthStore,
    IMigrationSource,
    IInspectionStore,
    IQueueEditor,
    IRetention,
):
    """Everything a backend provides."""

    async def open() -> None:
        """
        Connect and create or upgrade (or check) the schema; called once at start-up.

        Raises StorageUnreachable when the database server cannot be reached.
        """

    async def close() -> None:
        """Release connections; called once at shut-down."""

    async def ping() -> None:
        """
        Return once storage answers a trivial query, raise if it cannot.

        Cheap enough for a readiness probe every few seconds.
        """
