"""
The times the inspection API reports: timezone-aware UTC from every backend.

The in-memory backend takes them from its clock.  MySQL keeps TIMESTAMPs in
UTC and shows them in the session's time zone; NanoMDM's PostgreSQL columns
are TIMESTAMP without time zone, written and read in the session's zone.
Here the sessions are in other zones than UTC, and the times still come
back as the UTC instant they were written.
"""

import datetime

import pytest_twisted

from nanomdm_tw.storage.inspection import EnrollmentFilter
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.storage.mysql import MySQLStorage
from nanomdm_tw.storage.pgsql import PgSQLStorage
from . import mysqlserver, pgsqlserver
from .test_storage_inspection import D1, assert_recent, enqueue, enroll, report, utc_now


def at(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


class Ticking:
    """A clock for the in-memory backend that says what the test set."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest_twisted.ensureDeferred
async def test_in_memory_times_come_from_its_clock():
    clock = Ticking(1_800_000_000)
    store = MemoryStorage(clock=clock)
    await enroll(store, D1)
    clock.now += 10
    store.touch(D1.id)
    store.touch("UNKNOWN")
    clock.now += 10
    await enqueue(store, [D1], "CMD")
    clock.now += 10
    await report(store, D1, "NotNow", "CMD")
    [record] = await store.query_enrollments(EnrollmentFilter(), 10)
    assert (record.created, record.updated, record.last_seen) == (
        at(1_800_000_000), at(1_800_000_000), at(1_800_000_010)
    )
    [entry] = await store.queued_commands(D1.id, 10)
    assert (entry.enqueued_at, entry.reported_at) == (at(1_800_000_020), at(1_800_000_030))
    assert (await store.retrieve_command("CMD")).created == at(1_800_000_020)
    clock.now += 10
    await store.disable(D1.request())
    [record] = await store.query_enrollments(EnrollmentFilter(), 10)
    assert (record.created, record.updated, record.last_seen) == (
        at(1_800_000_000), at(1_800_000_040), at(1_800_000_040)
    )


async def assert_times_recent(store, start: datetime.datetime) -> None:
    """Enroll, queue, answer, touch: every time read back is UTC and recent."""
    await enroll(store, D1)
    await enqueue(store, [D1], "CMD")
    await report(store, D1, "NotNow", "CMD")
    store.touch(D1.id)
    await store._last_seen.flush()
    [record] = await store.query_enrollments(EnrollmentFilter(), 10)
    for moment in (record.last_seen, record.created, record.updated):
        assert_recent(moment, start)
    [entry] = await store.queued_commands(D1.id, 10)
    assert_recent(entry.enqueued_at, start)
    assert_recent(entry.reported_at, start)
    [delivery] = await store.command_deliveries("CMD", 10)
    assert (delivery.enqueued_at, delivery.reported_at) == (
        entry.enqueued_at, entry.reported_at
    )
    assert_recent((await store.retrieve_command("CMD")).created, start)


@pytest_twisted.ensureDeferred
async def test_mysql_times_are_utc_in_any_session_time_zone():
    database = mysqlserver.ThrowawayDatabase()
    stores = []
    try:
        for zone in ("+05:00", "-09:30"):
            store = MySQLStorage(database.dsn)
            store._connect_kwargs["init_command"] = f"SET time_zone = '{zone}'"
            await store.open()
            stores.append(store)
        start = utc_now()
        await assert_times_recent(stores[0], start)
        # The same instants through a session in another zone.
        first, second = [await s.query_enrollments(EnrollmentFilter(), 10) for s in stores]
        assert first == second
    finally:
        for store in stores:
            await store.close()
        database.drop()


@pytest_twisted.ensureDeferred
async def test_postgresql_times_are_utc_in_a_session_time_zone():
    database = pgsqlserver.ThrowawayDatabase()
    store = PgSQLStorage(database.dsn + "&options=-c%20TimeZone%3DAsia%2FKolkata")
    try:
        await store.open()
        zone = await store._interact(store._one, "SELECT current_setting('TimeZone')")
        assert zone == ("Asia/Kolkata",)
        await assert_times_recent(store, utc_now())
    finally:
        await store.close()
        database.drop()
