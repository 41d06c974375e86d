"""
Multi storage: the first backend answers; the others are written in the
background, in order per device, within a bound, with a grace period at
shut-down.  Every backend here is a real SQLite database; a held secondary
is one whose writes wait until the test lets each through.
"""

import sqlite3
from pathlib import Path

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from nanomdm_tw.storage.multi import SHUTDOWN_GRACE, MultiStorage
from nanomdm_tw.storage.sqlite import SQLiteStorage

from .storage_backends import make_sqlite
from .storage_messages import command, enroll, report

WRITES = {
    "store_authenticate", "store_token_update", "store_user_authenticate", "disable",
    "store_command_report", "clear_queue", "store_bootstrap_token", "enqueue_command",
    "store_push_cert", "associate_cert_hash", "clear_queue_by_id", "remove_queued_command",
}  # fmt: skip


class Held:
    """
    A real backend whose writes wait, each until ``release`` lets it through
    (or at once, after ``release_all``).
    """

    def __init__(self, store: SQLiteStorage):
        self.store = store
        self._waiting: list[tuple[str, str, Deferred]] = []
        self._arrivals: list[Deferred] = []
        self._open = False

    def __getattr__(self, name: str):
        method = getattr(self.store, name)
        if name not in WRITES:
            return method

        async def held(*args):
            gate: Deferred = Deferred()
            if self._open:
                gate.callback(None)
            else:
                self._waiting.append((name, _subject(args[0]), gate))
            arrivals, self._arrivals = self._arrivals, []
            for arrival in arrivals:
                arrival.callback(None)
            await gate
            await method(*args)

        return held

    def waiting(self) -> list[tuple[str, str]]:
        """The writes that reached this backend and wait, in the order they came."""
        return [(name, subject) for name, subject, _ in self._waiting]

    def arrival(self) -> Deferred:
        """Fires when the next write reaches this backend."""
        self._arrivals.append(Deferred())
        return self._arrivals[-1]

    def release(self, name: str, subject: str) -> None:
        entry = next(e for e in self._waiting if e[:2] == (name, subject))
        self._waiting.remove(entry)
        entry[2].callback(None)

    async def release_all(self, multi: MultiStorage) -> None:
        """Let every write through, now and from now on; wait until all are done."""
        self._open = True
        for name, subject in self.waiting():
            self.release(name, subject)
        await multi.writers[0].drain(grace=3600)  # the clock is a Clock: no time passes


def _subject(first) -> str:
    """The enrollment a held write is for: '*' for an enqueue to several."""
    if isinstance(first, list):
        return "*"
    return first if isinstance(first, str) else first.enroll_id.id


def table_rows(store: SQLiteStorage) -> dict[str, list[tuple]]:
    """What a backend holds, without timestamps, in insertion order."""
    queries = {
        "devices": "SELECT id FROM devices ORDER BY id",
        "enrollments": "SELECT id, device_id, type, topic, push_magic, token_hex, enabled,"
        " token_update_tally FROM enrollments ORDER BY id",
        "enrollment_queue": "SELECT seq, id, command_uuid, active FROM enrollment_queue"
        " ORDER BY seq",
        "command_results": "SELECT id, command_uuid, status FROM command_results"
        " ORDER BY id, command_uuid",
    }
    with sqlite3.connect(store.path) as connection:
        return {table: connection.execute(sql).fetchall() for table, sql in queries.items()}


async def held_secondary(tmp_path: Path, clock: Clock, **options):
    """Multi storage on two SQLite databases, the second one held."""
    primary = await make_sqlite(tmp_path / "first", {})
    held = Held(await make_sqlite(tmp_path / "second", {}))
    return primary, held, MultiStorage([primary, held], clock, **options)


async def close(multi: MultiStorage, clock: Clock) -> None:
    """Close, past the grace period if a failed test left writes held."""
    closing = Deferred.fromCoroutine(multi.close())
    clock.advance(SHUTDOWN_GRACE)
    await closing


def logged(events: list[dict], text: str) -> list[dict]:
    return [e for e in events if e.get("log_format", "").startswith(text)]


@pytest_twisted.ensureDeferred
async def test_answers_do_not_wait_for_a_held_secondary_which_keeps_each_devices_order(
    tmp_path: Path,
):
    clock = Clock()
    primary, held, multi = await held_secondary(tmp_path, clock)
    try:
        # Every call is answered while the secondary holds every write it got.
        a = await enroll(multi, "DEVICE-A")
        b = await enroll(multi, "DEVICE-B")
        assert await multi.enqueue_command(["DEVICE-A", "DEVICE-B"], command("CMD-1")) == {}
        assert await multi.report_and_next(a, report("Acknowledged", "CMD-1"), False) is None
        await multi.store_command_report(b, report("Error", "CMD-1", "DEVICE-B"))
        assert await primary.retrieve_token_update_tally("DEVICE-B") == 1
        assert table_rows(held.store)["devices"] == []
        # Only each device's first write reached the secondary: the rest wait behind it.
        assert held.waiting() == [
            ("store_authenticate", "DEVICE-A"),
            ("store_authenticate", "DEVICE-B"),
        ]
        # One device's writes go on while another's are held, one after another.
        held.release("store_authenticate", "DEVICE-B")
        for name in ("clear_queue", "disable", "store_token_update"):
            await held.arrival()
            assert held.waiting() == [("store_authenticate", "DEVICE-A"), (name, "DEVICE-B")]
            held.release(name, "DEVICE-B")
        # The enqueue waits for every earlier write (A's too); B's report waits for it.
        assert held.waiting() == [("store_authenticate", "DEVICE-A")]
        await held.release_all(multi)
        assert table_rows(held.store) == table_rows(primary)
        assert table_rows(primary)["command_results"] == [
            ("DEVICE-A", "CMD-1", "Acknowledged"),
            ("DEVICE-B", "CMD-1", "Error"),
        ]
    finally:
        await close(multi, clock)


@pytest_twisted.ensureDeferred
async def test_the_apis_queue_edits_are_answered_first_and_mirrored_in_order(tmp_path: Path):
    clock = Clock()
    primary, held, multi = await held_secondary(tmp_path, clock)
    try:
        await enroll(multi, "DEVICE-A")
        await enroll(multi, "DEVICE-B")
        for name in ("CMD-1", "CMD-2"):
            assert await multi.enqueue_command(["DEVICE-A", "DEVICE-B"], command(name)) == {}
        # Answered by the first backend while the secondary holds every write.
        assert await multi.remove_queued_command("DEVICE-A", "CMD-1") is True
        assert await multi.remove_queued_command("DEVICE-A", "CMD-1") is False
        await multi.clear_queue_by_id("DEVICE-B")
        assert [e.command_uuid for e in await multi.queued_commands("DEVICE-A", 10)] == [
            "CMD-2"
        ]
        assert await multi.queued_commands("DEVICE-B", 10) == []
        assert table_rows(held.store)["enrollment_queue"] == []
        # Each edit follows the enqueues before it on the secondary, as on the first.
        await held.release_all(multi)
        assert table_rows(held.store) == table_rows(primary)
        assert [row[1:] for row in table_rows(primary)["enrollment_queue"]] == [
            ("DEVICE-A", "CMD-1", 0),
            ("DEVICE-B", "CMD-1", 0),
            ("DEVICE-A", "CMD-2", 1),
            ("DEVICE-B", "CMD-2", 0),
        ]
    finally:
        await close(multi, clock)


@pytest_twisted.ensureDeferred
async def test_a_failing_secondary_never_fails_a_request(tmp_path: Path, log_events):
    clock = Clock()
    primary = await make_sqlite(tmp_path / "first", {})
    broken = await make_sqlite(tmp_path / "second", {})
    with sqlite3.connect(broken.path) as connection:  # a database without its tables
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in list(tables):
            if table != "sqlite_sequence":
                connection.execute(f"DROP TABLE {table}")
    multi = MultiStorage([primary, broken], clock)
    try:
        request = await enroll(multi)
        assert await multi.enqueue_command(["DEVICE-1"], command("CMD-1")) == {}
        assert (await multi.retrieve_next_command(request, False)).command_uuid == "CMD-1"
        await multi.writers[0].drain(60)
    finally:
        await close(multi, clock)
    failures = logged(log_events, "storage {number} failed {method} {subject}")
    assert [(e["number"], e["method"], e["subject"]) for e in failures] == [
        (1, "store_authenticate", "enrollment_id=DEVICE-1"),
        (1, "clear_queue", "enrollment_id=DEVICE-1"),
        (1, "disable", "enrollment_id=DEVICE-1"),
        (1, "store_token_update", "enrollment_id=DEVICE-1"),
        (1, "enqueue_command", "command_uuid=CMD-1"),
    ]
    assert "no such table" in str(failures[0]["log_failure"].value)


@pytest_twisted.ensureDeferred
async def test_a_secondary_that_stopped_answering_holds_a_bounded_number_of_writes(
    tmp_path: Path, log_events
):
    clock = Clock()
    primary, held, multi = await held_secondary(tmp_path, clock, max_pending=3)
    try:
        await enroll(multi, "DEVICE-A")  # four writes: the fourth is dropped
        await enroll(multi, "DEVICE-B")  # four more, all dropped
        assert multi.writers[0].pending == 3
        assert await primary.retrieve_token_update_tally("DEVICE-B") == 1
        dropped = logged(log_events, "storage {number} dropped {method} {subject}")
        assert [(e["method"], e["subject"], e["pending"]) for e in dropped] == [
            ("store_token_update", "enrollment_id=DEVICE-A", 3),
            ("store_authenticate", "enrollment_id=DEVICE-B", 3),
            ("clear_queue", "enrollment_id=DEVICE-B", 3),
            ("disable", "enrollment_id=DEVICE-B", 3),
            ("store_token_update", "enrollment_id=DEVICE-B", 3),
        ]
        await held.release_all(multi)
        assert table_rows(held.store)["devices"] == [("DEVICE-A",)]
        assert table_rows(held.store)["enrollments"] == []  # its TokenUpdate was dropped
    finally:
        await close(multi, clock)


@pytest_twisted.ensureDeferred
async def test_shut_down_waits_for_pending_secondary_writes(tmp_path: Path, log_events):
    primary, held, multi = await held_secondary(tmp_path, Clock())
    await enroll(multi, "DEVICE-A")
    closed = Deferred.fromCoroutine(multi.close())
    assert not closed.called
    await held.release_all(multi)
    await closed
    assert table_rows(held.store) == table_rows(primary)
    assert logged(log_events, "storage {number}: {pending} writes still pending") == []


@pytest_twisted.ensureDeferred
async def test_shut_down_abandons_secondary_writes_after_the_grace_period(
    tmp_path: Path, log_events
):
    clock = Clock()
    primary, held, multi = await held_secondary(tmp_path, clock, shutdown_grace=5.0)
    await enroll(multi, "DEVICE-A")
    await enroll(multi, "DEVICE-B")
    closed = Deferred.fromCoroutine(multi.close())
    clock.advance(4.9)
    assert not closed.called  # still within the grace period
    clock.advance(0.1)
    await closed
    abandoned = logged(log_events, "storage {number}: {pending} writes still pending")
    assert [(e["number"], e["pending"], e["grace"]) for e in abandoned] == [(1, 8, 5.0)]
