"""
Several storage backends at once: NanoMDM's "multi" storage.

The first backend answers every call: its result, or its error, is what the
caller gets.  Every write also goes to the others (mirrors), started at the
same moment, whatever the first backend's outcome.  NanoMDM's allmulti runs
the backends concurrently and waits for all of them; we wait for the first
only, so that a slow mirror never delays a device, and a mirror's failures
are logged, never returned, as in NanoMDM (mirror.py keeps each mirror's
writes in order and bounded).  Reads go to the first backend only.
"""

from twisted.logger import Logger
from zope.interface import implementer

from ..mdm.request import MDMRequest
from .interfaces import IStorage
from .mirror import MirrorWriter

# Writes waiting or running per mirror before new ones are dropped.
MAX_PENDING = 10_000
# Seconds that pending mirror writes get at shut-down.
SHUTDOWN_GRACE = 5.0


def _device_write(name: str):
    """A write from a device's request: in order per device on each mirror."""

    def write(self, request: MDMRequest, *args):
        answer = getattr(self.primary, name)(request, *args)
        device = request.enroll_id.device_channel_id
        self._mirror(device, "enrollment_id=" + request.enroll_id.id, name, request, *args)
        return answer

    write.__name__ = name
    return write


def _answered(name: str):
    def read(self, *args, **kwargs):
        return getattr(self.primary, name)(*args, **kwargs)

    read.__name__ = name
    return read


@implementer(IStorage)
class MultiStorage:
    _log = Logger()

    def __init__(
        self,
        stores: list[IStorage],
        clock=None,
        *,
        max_pending: int = MAX_PENDING,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ):
        if not stores:
            raise ValueError("multi storage needs at least one backend")
        if clock is None:
            from twisted.internet import reactor as clock
        self.primary, self.mirrors = stores[0], stores[1:]
        self.writers = [
            MirrorWriter(store, number, clock, max_pending)
            for number, store in enumerate(self.mirrors, start=1)
        ]
        self._shutdown_grace = shutdown_grace

    def _mirror(self, device: str | None, subject: str, method: str, *args) -> None:
        for writer in self.writers:
            writer.write(device, subject, method, *args)

    def report_and_next(self, request: MDMRequest, report, skip_not_now: bool):
        """The first backend answers in one transaction; the others just store the report."""
        answer = self.primary.report_and_next(request, report, skip_not_now)
        device = request.enroll_id.device_channel_id
        subject = "enrollment_id=" + request.enroll_id.id
        self._mirror(device, subject, "store_command_report", request, report)
        return answer

    def associate_cert_hash(self, enrollment_id: str, cert_hash: str):
        """Cert auth associates device channel IDs: ordered with that device's writes."""
        answer = self.primary.associate_cert_hash(enrollment_id, cert_hash)
        subject = "enrollment_id=" + enrollment_id
        self._mirror(enrollment_id, subject, "associate_cert_hash", enrollment_id, cert_hash)
        return answer

    def enqueue_command(self, enrollment_ids: list[str], command, priority: int = 0):
        answer = self.primary.enqueue_command(enrollment_ids, command, priority)
        subject = "command_uuid=" + command.command_uuid
        self._mirror(None, subject, "enqueue_command", enrollment_ids, command, priority)
        return answer

    def clear_queue_by_id(self, enrollment_id: str):
        """The API's clear: after every earlier write on the mirrors, as an enqueue."""
        answer = self.primary.clear_queue_by_id(enrollment_id)
        subject = "enrollment_id=" + enrollment_id
        self._mirror(None, subject, "clear_queue_by_id", enrollment_id)
        return answer

    def remove_queued_command(self, enrollment_id: str, command_uuid: str):
        """The first backend says whether the entry was there; the mirrors follow."""
        answer = self.primary.remove_queued_command(enrollment_id, command_uuid)
        subject = f"enrollment_id={enrollment_id} command_uuid={command_uuid}"
        self._mirror(None, subject, "remove_queued_command", enrollment_id, command_uuid)
        return answer

    def store_push_cert(self, topic: str, cert_pem: bytes, key_pem: bytes):
        answer = self.primary.store_push_cert(topic, cert_pem, key_pem)
        self._mirror(None, "topic=" + topic, "store_push_cert", topic, cert_pem, key_pem)
        return answer

    async def open(self) -> None:
        opened = []
        try:
            for store in (self.primary, *self.mirrors):
                await store.open()
                opened.append(store)
        except BaseException:
            for store in opened:  # all or none, so that open() can be tried again
                await store.close()
            raise

    async def close(self) -> None:
        """Pending mirror writes get a grace period, then every backend closes."""
        for writer in self.writers:
            await writer.drain(self._shutdown_grace)
        for store in (self.primary, *self.mirrors):
            await store.close()

    async def prune_history(self, before, batch: int) -> int:
        """Each backend prunes its own history (mirrors hold their own copies); rows in all."""
        pruned = 0
        for store in (self.primary, *self.mirrors):
            pruned += await store.prune_history(before, batch)
        return pruned

    def touch(self, enrollment_id: str) -> None:
        for store in (self.primary, *self.mirrors):
            store.touch(enrollment_id)

    store_authenticate = _device_write("store_authenticate")
    store_token_update = _device_write("store_token_update")
    store_user_authenticate = _device_write("store_user_authenticate")
    disable = _device_write("disable")
    store_command_report = _device_write("store_command_report")
    clear_queue = _device_write("clear_queue")
    store_bootstrap_token = _device_write("store_bootstrap_token")

    retrieve_next_command = _answered("retrieve_next_command")
    retrieve_bootstrap_token = _answered("retrieve_bootstrap_token")
    retrieve_token_update_tally = _answered("retrieve_token_update_tally")
    retrieve_push_info = _answered("retrieve_push_info")
    retrieve_push_cert = _answered("retrieve_push_cert")
    retrieve_push_certs = _answered("retrieve_push_certs")
    is_push_cert_stale = _answered("is_push_cert_stale")
    has_cert_hash = _answered("has_cert_hash")
    enrollment_has_cert_hash = _answered("enrollment_has_cert_hash")
    is_cert_hash_associated = _answered("is_cert_hash_associated")
    enrollment_id_for_cert_hash = _answered("enrollment_id_for_cert_hash")
    retrieve_migration_checkins = _answered("retrieve_migration_checkins")
    row_counts = _answered("row_counts")
    query_enrollments = _answered("query_enrollments")
    enrollment_counts = _answered("enrollment_counts")
    queued_commands = _answered("queued_commands")
    pending_count = _answered("pending_count")
    retrieve_command = _answered("retrieve_command")
    command_deliveries = _answered("command_deliveries")
    ping = _answered("ping")
