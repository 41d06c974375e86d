"""
Several storage backends at once: NanoMDM's "multi" storage.

The first backend answers every call; every write also goes to the others,
in order, after the first, whose failures are logged and never returned
(NanoMDM's allmulti: a mirror never fails a device).  Reads go to the first
backend only.
"""

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IStorage


def _written(name: str):
    async def write(self, *args: Any, **kwargs: Any) -> Any:
        return await self._write(name, *args, **kwargs)

    write.__name__ = name
    return write


def _answered(name: str):
    def read(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.primary, name)(*args, **kwargs)

    read.__name__ = name
    return read


@implementer(IStorage)
class MultiStorage:
    _log = Logger()

    def __init__(self, stores: list[IStorage]):
        if not stores:
            raise ValueError("multi storage needs at least one backend")
        self.primary, self.mirrors = stores[0], stores[1:]

    async def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.primary, name)(*args, **kwargs)
        finally:
            for number, mirror in enumerate(self.mirrors, start=1):
                try:
                    await getattr(mirror, name)(*args, **kwargs)
                except Exception:
                    self._log.failure(
                        "storage {number} failed {method}", number=number, method=name
                    )

    async def report_and_next(self, request, report, skip_not_now: bool):
        """The first backend answers in one transaction; the others just store the report."""
        try:
            return await self.primary.report_and_next(request, report, skip_not_now)
        finally:
            for number, mirror in enumerate(self.mirrors, start=1):
                try:
                    await mirror.store_command_report(request, report)
                except Exception:
                    self._log.failure(
                        "storage {number} failed {method}",
                        number=number,
                        method="store_command_report",
                    )

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
        for store in (self.primary, *self.mirrors):
            await store.close()

    def touch(self, enrollment_id: str) -> None:
        for store in (self.primary, *self.mirrors):
            store.touch(enrollment_id)

    store_authenticate = _written("store_authenticate")
    store_token_update = _written("store_token_update")
    store_user_authenticate = _written("store_user_authenticate")
    disable = _written("disable")
    store_command_report = _written("store_command_report")
    clear_queue = _written("clear_queue")
    store_bootstrap_token = _written("store_bootstrap_token")
    enqueue_command = _written("enqueue_command")
    store_push_cert = _written("store_push_cert")
    associate_cert_hash = _written("associate_cert_hash")

    retrieve_next_command = _answered("retrieve_next_command")
    retrieve_bootstrap_token = _answered("retrieve_bootstrap_token")
    retrieve_token_update_tally = _answered("retrieve_token_update_tally")
    retrieve_push_info = _answered("retrieve_push_info")
    retrieve_push_cert = _answered("retrieve_push_cert")
    is_push_cert_stale = _answered("is_push_cert_stale")
    has_cert_hash = _answered("has_cert_hash")
    enrollment_has_cert_hash = _answered("enrollment_has_cert_hash")
    is_cert_hash_associated = _answered("is_cert_hash_associated")
    enrollment_id_for_cert_hash = _answered("enrollment_id_for_cert_hash")
    retrieve_migration_checkins = _answered("retrieve_migration_checkins")
    row_counts = _answered("row_counts")
