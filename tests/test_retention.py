"""
The retention= storage option: history older than the retention period is
pruned in batches, on every backend, and never a pending command.

Backends are driven as the core service drives them (test_storage_conformance's
channels); entries are aged by setting their updated_at back (storage_backends.backdate).
"""

import datetime
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred, succeed
from twisted.logger import formatEvent
from twisted.python import usage

from nanomdm_tw.duration import parse_duration
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.storage import parse_storage_options
from nanomdm_tw.storage.memory import MemoryStorage
from nanomdm_tw.storage.multi import MultiStorage
from nanomdm_tw.storage.retention import BATCH, INTERVAL, PAUSE, HistoryPruner
from nanomdm_tw.storage.sqlite import SQLiteStorage
from nanomdm_tw.tap import Options

from .serving import serve
from .storage_backends import BACKENDS, backdate
from .test_storage_conformance import DEVICE, OTHER_DEVICE, UE_DEVICE, make_command

DAY = 86400.0
RETENTION = 30 * DAY
OLD = 40 * DAY  # how long ago the old history was answered or cleared


def _ago(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(time.time() - seconds, datetime.timezone.utc)


# -- the option ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("30d", 30 * DAY), ("720h", 30 * DAY), ("1d12h", 1.5 * DAY), ("90m", 5400.0),
     ("0.5d", DAY / 2)],
)
def test_retention_takes_go_durations_and_days(text, seconds):
    assert parse_storage_options(f"retention={text},delete=0") == {
        "retention": seconds,
        "delete": False,
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("0", "'0' (use a period longer than zero, e.g. 30d or 720h)"),
        ("0d", "'0d' (use a period longer than zero, e.g. 30d or 720h)"),
        ("-1d", "invalid duration '-1d' (use e.g. 30d, 720h)"),
        ("30", "invalid duration '30' (use e.g. 30d, 720h)"),
        ("a month", "invalid duration 'a month' (use e.g. 30d, 720h)"),
        ("", "invalid duration '' (use e.g. 30d, 720h)"),
    ],
)
def test_retention_refuses_zero_negative_and_garbage(text, message):
    with pytest.raises(ValueError) as raised:
        parse_storage_options(f"retention={text}")
    assert str(raised.value) == f"invalid value for retention option: {message}"


def test_days_are_not_a_go_duration_elsewhere():
    with pytest.raises(ValueError, match="invalid duration '1d'"):
        parse_duration("1d")
    assert parse_storage_options("conn_max_lifetime=1h") == {"conn_max_lifetime": 3600.0}


def test_the_command_line_refuses_a_bad_retention():
    options = Options()
    with pytest.raises(usage.UsageError, match="retention option"):
        options.parseOptions(["--dev", "--storage-options", "retention=0s"])


# -- pruning, on every backend ------------------------------------------------------


async def _history(store) -> None:
    """
    Old and new history, pending commands old and new.

    DEVICE: ACK-OLD, ERR-OLD answered long ago; NOTNOW-OLD answered NotNow long
    ago; PENDING-OLD queued long ago; SHARED pending (also queued to
    OTHER_DEVICE, where it was cleared); ACK-NEW answered just now.
    OTHER_DEVICE: CLEARED-OLD and SHARED cleared long ago.
    UE_DEVICE: NOTNOW-CLEARED-OLD answered NotNow then cleared long ago;
    CLEARED-NEW cleared just now.
    """
    for channel in (DEVICE, OTHER_DEVICE, UE_DEVICE):
        await channel.enroll(store)
    await DEVICE.enqueue(store, "ACK-OLD", "ERR-OLD", "NOTNOW-OLD", "PENDING-OLD", "ACK-NEW")
    await store.enqueue_command([DEVICE.id, OTHER_DEVICE.id], make_command("SHARED"))
    await OTHER_DEVICE.enqueue(store, "CLEARED-OLD")
    await UE_DEVICE.enqueue(store, "NOTNOW-CLEARED-OLD")
    await DEVICE.report(store, "Acknowledged", "ACK-OLD")
    await DEVICE.report(store, "Error", "ERR-OLD")
    await DEVICE.report(store, "NotNow", "NOTNOW-OLD")
    await DEVICE.report(store, "Acknowledged", "ACK-NEW")
    await UE_DEVICE.report(store, "NotNow", "NOTNOW-CLEARED-OLD")
    await store.clear_queue(OTHER_DEVICE.request())
    await store.clear_queue(UE_DEVICE.request())
    await UE_DEVICE.enqueue(store, "CLEARED-NEW")
    await store.clear_queue(UE_DEVICE.request())
    old = [(DEVICE.id, uuid) for uuid in ("ACK-OLD", "ERR-OLD", "NOTNOW-OLD", "PENDING-OLD")]
    old += [(OTHER_DEVICE.id, "CLEARED-OLD"), (OTHER_DEVICE.id, "SHARED")]
    old += [(UE_DEVICE.id, "NOTNOW-CLEARED-OLD")]
    await backdate(store, old, OLD)


async def _left(store) -> tuple[list[tuple], list[str]]:
    """(enrollment ID, command UUID, active, status) of every queue entry; command UUIDs."""
    if isinstance(store, MemoryStorage):
        entries = [
            (i, u, q.active, q.status)
            for i, queue in store._queues.items()
            for u, q in queue.items()
        ]
        return sorted(entries), sorted(store._commands)

    def read(txn):
        txn.execute(
            "SELECT q.id, q.command_uuid, q.active, r.status FROM enrollment_queue AS q "
            "LEFT JOIN command_results AS r ON r.id = q.id AND r.command_uuid = q.command_uuid"
        )
        entries = [(i, u, bool(a), s) for i, u, a, s in txn.fetchall()]
        txn.execute("SELECT command_uuid FROM commands")
        return sorted(entries), sorted(row[0] for row in txn.fetchall())

    return await store._pool.runInteraction(read)


async def _prune_all(store, before: datetime.datetime, batch: int) -> list[int]:
    """Rows pruned per batch until a batch finds nothing."""
    counts = []
    while not counts or counts[-1]:
        counts.append(await store.prune_history(before, batch))
    return counts


# Multi storage sums its backends' pruning: tested on its own below.
SINGLE_BACKENDS = [b for b in BACKENDS if b.name != "multi"]


@pytest_twisted.async_yield_fixture(params=SINGLE_BACKENDS, ids=lambda b: b.name)
async def store(request, tmp_path):
    store = await request.param.make(tmp_path, {"retention": RETENTION})
    yield store
    await store.close()


@pytest_twisted.ensureDeferred
async def test_prunes_what_is_older_and_answered_or_cleared(store):
    await _history(store)
    counts = await _prune_all(store, _ago(RETENTION), batch=2)
    # 5 entries, 2 per batch: 3 batches and the one finding nothing.  12 rows: the
    # results of ACK-OLD, ERR-OLD, NOTNOW-CLEARED-OLD; the queue rows of those and of
    # CLEARED-OLD and SHARED on OTHER_DEVICE; the commands of all but SHARED.
    assert len(counts) == 4 and counts[-1] == 0
    assert sum(counts) == 12
    entries, commands = await _left(store)
    assert entries == sorted(
        [
            (DEVICE.id, "ACK-NEW", True, "Acknowledged"),
            (DEVICE.id, "NOTNOW-OLD", True, "NotNow"),
            (DEVICE.id, "PENDING-OLD", True, None),
            (DEVICE.id, "SHARED", True, None),
            (UE_DEVICE.id, "CLEARED-NEW", False, None),
        ]
    )
    assert commands == ["ACK-NEW", "CLEARED-NEW", "NOTNOW-OLD", "PENDING-OLD", "SHARED"]


@pytest_twisted.ensureDeferred
async def test_never_prunes_a_pending_or_not_now_command(store):
    """Even with everything older than the cutoff, pending and NotNow entries stay, and work."""
    await _history(store)
    assert sum(await _prune_all(store, _ago(-3600), batch=BATCH)) == 17
    entries, commands = await _left(store)
    assert entries == sorted(
        [
            (DEVICE.id, "NOTNOW-OLD", True, "NotNow"),
            (DEVICE.id, "PENDING-OLD", True, None),
            (DEVICE.id, "SHARED", True, None),
        ]
    )
    assert commands == ["NOTNOW-OLD", "PENDING-OLD", "SHARED"]
    delivered = [await DEVICE.report(store, "Idle")]
    while delivered[-1] is not None:
        delivered.append(await DEVICE.report(store, "Acknowledged", delivered[-1]))
    assert sorted(delivered[:-1]) == ["NOTNOW-OLD", "PENDING-OLD", "SHARED"]


@pytest_twisted.ensureDeferred
async def test_nothing_to_prune_is_zero_and_changes_nothing(store):
    await _history(store)
    before = await _left(store)
    assert await store.prune_history(_ago(OLD + DAY), BATCH) == 0
    assert await _left(store) == before


@pytest_twisted.ensureDeferred
async def test_pruning_twice_at_once_deletes_each_row_once(store):
    """Two servers on one database: their batches together prune what one would."""
    await _history(store)
    before = _ago(RETENTION)
    counts = await defer.gatherResults(
        [defer.ensureDeferred(_prune_all(store, before, batch=1)) for _ in range(2)]
    )
    assert sum(map(sum, counts)) == 12
    entries, _ = await _left(store)
    assert len(entries) == 5


@pytest_twisted.ensureDeferred
async def test_multi_storage_prunes_every_backend(tmp_path):
    stores = [MemoryStorage(), SQLiteStorage(str(tmp_path / "db"))]
    multi = MultiStorage(stores, reactor)
    await multi.open()
    try:
        for store in stores:
            await _history(store)
        assert sum(await _prune_all(multi, _ago(RETENTION), batch=BATCH)) == 24
        assert [len((await _left(store))[0]) for store in stores] == [5, 5]
    finally:
        await multi.close()


# -- the periodic pruner ----------------------------------------------------------


class ScriptedRetention:
    """An IRetention answering each prune_history from a script: a row count, or an error."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[tuple[datetime.datetime, int]] = []

    def prune_history(self, before: datetime.datetime, batch: int) -> Deferred:
        self.calls.append((before, batch))
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return succeed(answer)


NOW = 1_800_000_000.0


def _pruner(store, clock) -> HistoryPruner:
    clock.advance(NOW)
    return HistoryPruner(store, RETENTION, clock)


def _lines(log_events) -> list[str]:
    return [
        formatEvent(e)
        for e in log_events
        if e.get("log_namespace", "").endswith("HistoryPruner")
    ]


def test_a_run_prunes_in_batches_with_a_pause_between(log_events):
    clock = task.Clock()
    store = ScriptedRetention(1000, 400, 0)
    pruner = _pruner(store, clock)
    pruner.startService()
    cutoff = datetime.datetime.fromtimestamp(NOW - RETENTION, datetime.timezone.utc)
    assert store.calls == [(cutoff, BATCH)]  # at start
    clock.advance(PAUSE * 0.9)
    assert len(store.calls) == 1  # pausing
    clock.advance(PAUSE * 0.1)
    assert len(store.calls) == 2
    clock.advance(PAUSE)
    assert store.calls == [(cutoff, BATCH)] * 3  # the same cutoff all the run
    assert _lines(log_events) == [
        "pruned 1400 rows of history older than 2026-12-16T08:00:00+00:00"
    ]
    clock.advance(INTERVAL - 2 * PAUSE)
    later = datetime.datetime.fromtimestamp(NOW + INTERVAL - RETENTION, datetime.timezone.utc)
    assert store.calls[3:] == [(later, BATCH)]  # the next run, an interval after the first
    assert _lines(log_events)[1:] == [
        "pruned 0 rows of history older than 2026-12-16T09:00:00+00:00"
    ]
    pruner.stopService()


def test_a_failed_batch_is_logged_and_the_next_run_happens(log_events):
    clock = task.Clock()
    store = ScriptedRetention(10, RuntimeError("database went away"), 20, 0)
    pruner = _pruner(store, clock)
    pruner.startService()
    clock.advance(PAUSE)
    assert len(store.calls) == 2
    failures = [e for e in log_events if "log_failure" in e]
    assert [formatEvent(e) for e in failures] == [
        "pruning history older than 2026-12-16T08:00:00+00:00 failed after 10 rows"
    ]
    assert failures[0]["log_failure"].getErrorMessage() == "database went away"
    clock.advance(INTERVAL - PAUSE)
    assert len(store.calls) == 3
    clock.advance(PAUSE)
    assert len(store.calls) == 4
    assert _lines(log_events)[-1] == (
        "pruned 20 rows of history older than 2026-12-16T09:00:00+00:00"
    )
    assert pruner._loop.running
    pruner.stopService()


def test_stopping_ends_a_run_at_its_pause():
    clock = task.Clock()
    store = ScriptedRetention(1000, 1000, 1000)
    pruner = _pruner(store, clock)
    pruner.startService()
    stopped = pruner.stopService()
    assert stopped.called  # no wait for the pause, nor for the rest of the run
    clock.advance(INTERVAL)
    assert len(store.calls) == 1


# -- the server ------------------------------------------------------------------------


async def _until(condition, attempts: int = 200):
    """Wait for ``condition()`` (an async predicate), checking every 50 ms."""
    for _ in range(attempts):
        if await condition():
            return
        await task.deferLater(reactor, 0.05)
    raise AssertionError("condition never held")


@pytest_twisted.ensureDeferred
async def test_a_server_with_retention_prunes_its_database(tmp_path: Path, log_events):
    folder = str(tmp_path / "db")
    store = SQLiteStorage(folder)
    await store.open()
    try:
        await _history(store)
    finally:
        await store.close()
    spec = StorageSpec("sqlite", folder, "retention=30d")
    async with serve(tmp_path, storage=spec) as server:
        assert len(server.service.pruners) == 1

        async def pruned() -> bool:
            return (await server.storage.row_counts())["enrollment_queue"] == 5

        await _until(pruned)
        assert await server.storage.row_counts() == {
            "commands": 5,
            "command_results": 2,
            "enrollment_queue": 5,
        }
        await _until(lambda: succeed(any("pruned 12 rows" in line for line in _lines(log_events))))


@pytest_twisted.ensureDeferred
async def test_a_server_without_retention_prunes_nothing(tmp_path: Path):
    async with serve(tmp_path) as server:
        assert server.service.pruners == []
