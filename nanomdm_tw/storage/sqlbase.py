"""
How every SQL backend runs its work: interactions on an adbapi pool.

Every storage method is one ``runInteraction``, so one transaction (or, for
a read alone, one statement); an interaction runs once more when the
backend deems its failure retryable and it may run twice.  The base also
counts round trips per kind of interaction (the benchmark prints them),
applies the versioned schema files, and batches last-seen times off the
request path.  sql.py says what the interactions send.
"""

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from twisted.enterprise.adbapi import ConnectionPool, Transaction
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import MessageError, StorageBusy
from ..metrics import server_metrics
from .admission import Admission, Ticket, retry_after
from .dialect import Dialect, schema_files
from .lastseen import LastSeenBatcher

# Bound parameters per statement stay well under every driver's limit.
_CHUNK = 500


def as_bytes(value: bytes | memoryview | str) -> bytes:
    """Drivers hand TEXT/BLOB columns back as str, bytes or memoryview."""
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(count: int) -> str:
    return ", ".join("?" * count)


def not_idempotent(interaction: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an interaction that must not run twice should its commit be lost."""
    interaction.idempotent = False
    return interaction


def one_snapshot(interaction: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an interaction whose reads must see one snapshot, as one transaction from its first."""
    interaction.one_snapshot = True
    return interaction


class SQLBase:
    """Interactions over an adbapi pool; subclasses open the pool and manage the schema."""

    _log = Logger()
    dialect: Dialect

    _reactor: Any = None  # None: the global reactor

    def __init__(self, options: dict[str, Any] | None = None):
        options = options or {}
        self._delete = bool(options.get("delete", False))
        # Set by the server's --storage-timeout and --storage-max-waiting; the
        # tools (schema, migration) leave them unset and wait as long as it takes.
        self._timeout: float | None = options.get("timeout")
        self._max_waiting: int = options.get("max_waiting", 0)
        self._admission: Admission | None = None
        self._pool: ConnectionPool | None = None
        self._last_seen: LastSeenBatcher | None = None
        # Statements and commits sent per kind of interaction (see round_trips).
        self._round_trips: Counter[str] = Counter()
        self._interactions: Counter[str] = Counter()
        self._counting = threading.Lock()
        self._current = threading.local()

    # -- plumbing -------------------------------------------------------------

    def _begin(self, txn: Transaction, fn: Callable[..., Any]) -> None:
        """Start the interaction ``fn``'s transaction, for drivers that need it said explicitly."""

    def _interact(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """
        Run ``fn`` as one transaction, within the admission bounds when set:
        StorageBusy when too much waits for the database or it is too slow.
        """
        if self._admission is None:
            return self._run(None, fn, *args)
        return self._admission.admit(fn.__name__, lambda ticket: self._run(ticket, fn, *args))

    def _run(self, ticket: Ticket | None, fn: Callable[..., Any], *args: Any) -> Deferred:
        """Run ``fn`` as one transaction; once more if the backend deems the failure retryable."""
        idempotent = getattr(fn, "idempotent", True)

        def retry(failure: Failure) -> Deferred | Failure:
            if not self._should_retry(failure, idempotent):
                return failure
            self._log.info(
                "retrying {interaction} after {error}",
                interaction=fn.__name__,
                error=failure.getErrorMessage(),
            )
            return self._pool.runInteraction(self._admitted, ticket, fn, *args)

        def failed(failure: Failure) -> Failure:
            if self._refuses_value(failure.value):
                # The transaction rolled back: nothing of the request is stored.
                raise MessageError("a value is too long or not valid for its database column")
            if not failure.check(MessageError):  # a client's mistake is no storage error
                server_metrics().storage_errors.labels(fn.__name__).inc()
            if self._timeout and self._timed_out(failure.value):
                raise StorageBusy(
                    f"database busy: {fn.__name__} ran past {self._timeout:g}s; try again later",
                    retry_after(self._timeout),
                ) from failure.value
            return failure

        d = self._pool.runInteraction(self._admitted, ticket, fn, *args)
        d.addErrback(retry)
        d.addErrback(failed)
        return d

    def _admit(self, pool: ConnectionPool) -> None:
        """Bound the work waiting for ``pool``'s connections, when the server set limits."""
        if self._timeout and self._max_waiting:
            self._admission = Admission(pool.max, self._max_waiting, self._timeout, self._clock())

    def _clock(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    def _should_retry(self, failure: Failure, idempotent: bool) -> bool:
        """Whether a failed interaction may run again; backends know their transient errors."""
        return False

    def _timed_out(self, error: BaseException) -> bool:
        """Whether the database ended the work for running past --storage-timeout."""
        return False

    def _admitted(
        self, txn: Transaction, ticket: Ticket | None, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """The transaction, unless its request was answered already (admission.py)."""
        if ticket is not None:
            self._admission.begin(ticket)
        return self._transaction(txn, fn, *args)

    def _refuses_value(self, error: BaseException) -> bool:
        """
        Whether the database refused a value a client sent (too long for its
        column, say): the client's mistake, a 400, not a storage fault.
        """
        return False

    def _transaction(self, txn: Transaction, fn: Callable[..., Any], *args: Any) -> Any:
        self._current.name = fn.__name__
        with self._counting:
            self._interactions[fn.__name__] += 1
        self._begin(txn, fn)
        result = fn(txn, *args)
        if self._will_commit(txn):
            self._count_round_trip()  # the pool's COMMIT, right after
        return result

    def _will_commit(self, txn: Transaction) -> bool:
        """Whether the pool has a transaction to commit after the interaction."""
        return True

    def _count_round_trip(self) -> None:
        with self._counting:
            self._round_trips[self._current.name] += 1

    def round_trips(self) -> dict[str, tuple[int, int]]:
        """Per interaction: (transactions run, statements + commits sent)."""
        with self._counting:
            return {
                name: (count, self._round_trips[name])
                for name, count in self._interactions.items()
            }

    def _execute(self, txn: Transaction, query: str, args: Iterable[Any] = ()) -> None:
        self._count_round_trip()
        args = tuple(args)
        if args:
            txn.execute(self.dialect.sql(query), args)
        else:
            # Without parameters, format-style drivers must not parse the text.
            txn.execute(query)

    def _execute_many(self, txn: Transaction, query: str, rows: list[tuple]) -> None:
        """One statement over many rows (PyMySQL sends one multi-row INSERT)."""
        self._count_round_trip()
        txn.executemany(self.dialect.sql(query), rows)

    def _one(self, txn: Transaction, query: str, args: Iterable[Any] = ()) -> Any:
        """The first row of a query, or None."""
        self._execute(txn, query, args)
        return txn.fetchone()

    def _all(self, txn: Transaction, query: str, args: Iterable[Any] = ()) -> list:
        self._execute(txn, query, args)
        return txn.fetchall()

    def _ids_in(self, txn: Transaction, query: str, ids: Sequence[str], *args: Any) -> set:
        """Run ``query`` (ending in ``IN ({})``) over ``ids`` in chunks; first columns."""
        found = set()
        for chunk in chunks(ids):
            rows = self._all(txn, query.format(marks(len(chunk))), (*args, *chunk))
            found.update(row[0] for row in rows)
        return found

    def ping(self) -> Deferred:
        """``SELECT 1`` through the pool: a connection works and the server answers."""
        return self._interact(self._select_one)

    def _select_one(self, txn: Transaction) -> None:
        self._one(txn, "SELECT 1")

    def _make_pool(self) -> ConnectionPool:
        raise NotImplementedError

    def _schema_version(self, txn: Transaction) -> int:
        raise NotImplementedError

    def _set_schema_version(self, txn: Transaction, version: int) -> None:
        raise NotImplementedError

    def _schema_present(self, txn: Transaction, version: int) -> bool:
        """Whether the database already has all that version's file creates."""
        return False

    async def open(self) -> None:
        self._pool = self._make_pool()
        await self._run(None, self._upgrade_schema)  # as long as it takes, before serving
        self._start_serving()

    def _start_serving(self) -> None:
        """Once open: requests within the admission bounds, last-seen times batched."""
        self._admit(self._pool)
        self._last_seen = LastSeenBatcher(self._store_last_seen, self._clock(), max_ids=_CHUNK)
        self._last_seen.start()

    def touch(self, enrollment_id: str) -> None:
        """Note that the enrollment was seen now; written later in a batch, off the request path."""
        if self._last_seen is not None:
            self._last_seen.touch(enrollment_id)

    def _store_last_seen(self, enrollment_ids: list[str]) -> Deferred:
        return self._interact(self._update_last_seen, enrollment_ids)

    def _update_last_seen(self, txn, enrollment_ids: list[str]) -> None:
        self._execute(
            txn,
            "UPDATE enrollments SET last_seen_at = CURRENT_TIMESTAMP "
            f"WHERE id IN ({marks(len(enrollment_ids))})",
            enrollment_ids,
        )

    def _upgrade_schema(self, txn: Transaction) -> None:
        """Apply the schema files newer than the database, in one transaction."""
        current = self._schema_version(txn)
        versions = schema_files(self.dialect.name)
        latest = versions[-1][0]
        if current > latest:
            raise RuntimeError(
                f"database schema version {current} is newer than this "
                f"nanomdm-tw supports ({latest})"
            )
        for version, statements in versions:
            if version > current and not self._schema_present(txn, version):
                self._log.info("applying schema version {version}", version=version)
                for statement in statements:
                    self._execute(txn, statement)
                self._set_schema_version(txn, version)

    async def close(self) -> None:
        if self._last_seen is not None:
            await self._last_seen.stop()
            self._last_seen = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
