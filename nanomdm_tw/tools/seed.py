"""
Fill a store with a history of enrollments, queued commands and results, fast.

What a server looks like after months in service: devices (one in ten with
a user channel), and per enrollment a few commands answered, one failed,
one NotNow, one pending and one cleared by a re-enrollment.  Written with
multi-row INSERTs over a plain DB-API connection, so a million rows take a
minute rather than an hour; the bench and the query-plan tests use it to
show that the cost of a request does not grow with the tables.
"""

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ..storage.dialect import Dialect
from ..storage.sqlite import SQLITE, database_path
from . import schema

TOPIC = "com.apple.mgmt.External.seeded"
# Per enrollment: the queue rows' outcomes; None is a pending command, "inactive" one
# cleared by a re-enrollment.  Every other entry has a command_results row.
OUTCOMES = ("Acknowledged", "Acknowledged", "Error", "NotNow", None, "inactive")
# Queue + result rows per enrollment.
ROWS_PER_ENROLLMENT = len(OUTCOMES) + sum(o not in (None, "inactive") for o in OUTCOMES)
# Enrollments a seeded command is queued to (a bulk enqueue's reach).
FAN_OUT = 100
# One enrollment in this many is a user channel (of the device seeded before it).
USER_CHANNEL_EVERY = 10

_ROWS_PER_INSERT = 1000
_XML = '<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict/></plist>'

Progress = Callable[[str], None]


def device_id(n: int) -> str:
    return f"SEED-{n:08d}"


def user_channel_id(n: int) -> str:
    """Enrollment ``n``, a user channel of device ``n - 1``."""
    return f"{device_id(n - 1)}:USER-{n:08d}"


def is_user_channel(n: int) -> bool:
    return n % USER_CHANNEL_EVERY == USER_CHANNEL_EVERY - 1


def enrollment_id(n: int) -> str:
    return user_channel_id(n) if is_user_channel(n) else device_id(n)


def command_uuid(n: int, slot: int) -> str:
    """The seeded command in queue slot ``slot`` of enrollment ``n``."""
    return f"seed-{n // FAN_OUT:06d}-{slot}"


def cert_hash(n: int) -> str:
    return f"{n:064x}"


@dataclass(frozen=True)
class Seeded:
    enrollments: int
    queue_rows: int
    result_rows: int

    @property
    def rows(self) -> int:
        """Queue + result rows."""
        return self.queue_rows + self.result_rows


def enrollments_for(rows: int) -> int:
    """How many enrollments carry ``rows`` queue + result rows."""
    return max(1, rows // ROWS_PER_ENROLLMENT)


def _devices(count: int) -> Iterator[tuple]:
    for n in range(count):
        if not is_user_channel(n):
            yield (device_id(n), f"SERIAL{n:08d}", _XML, _XML)


def _users(count: int) -> Iterator[tuple]:
    for n in range(count):
        if is_user_channel(n):
            yield (user_channel_id(n), device_id(n - 1), f"user{n}")


def _enrollments(count: int) -> Iterator[tuple]:
    for n in range(count):
        token = f"{n:064x}"
        if is_user_channel(n):
            yield (user_channel_id(n), device_id(n - 1), user_channel_id(n), "User",
                   TOPIC, f"magic-{n}", token)
        else:
            yield (device_id(n), device_id(n), None, "Device", TOPIC, f"magic-{n}", token)


def _cert_auth(count: int) -> Iterator[tuple]:
    for n in range(count):
        if not is_user_channel(n):
            yield (device_id(n), cert_hash(n))


def _commands(count: int) -> Iterator[tuple]:
    for group in range(0, count, FAN_OUT):
        for slot in range(len(OUTCOMES)):
            yield (command_uuid(group, slot), "ProfileList", _XML)


def _queue(count: int) -> Iterator[tuple]:
    for n in range(count):
        for slot, outcome in enumerate(OUTCOMES):
            yield (enrollment_id(n), command_uuid(n, slot), outcome != "inactive", slot % 2)


def _results(count: int) -> Iterator[tuple]:
    for n in range(count):
        for slot, outcome in enumerate(OUTCOMES):
            if outcome not in (None, "inactive"):
                not_now = outcome == "NotNow"
                yield (enrollment_id(n), command_uuid(n, slot), outcome, _XML, int(not_now))


# (table, columns, extra column = SQL expression, rows of enrollment count)
_TABLES: Sequence[tuple[str, tuple[str, ...], dict[str, str], Callable[[int], Iterator]]] = (
    ("devices", ("id", "serial_number", "authenticate", "token_update"),
     {"authenticate_at": "CURRENT_TIMESTAMP", "token_update_at": "CURRENT_TIMESTAMP"},
     _devices),
    ("users", ("id", "device_id", "user_short_name"), {}, _users),
    ("enrollments",
     ("id", "device_id", "user_id", "type", "topic", "push_magic", "token_hex"),
     {"last_seen_at": "CURRENT_TIMESTAMP"}, _enrollments),
    ("cert_auth_associations", ("id", "sha256"), {}, _cert_auth),
    ("commands", ("command_uuid", "request_type", "command"), {}, _commands),
    ("enrollment_queue", ("id", "command_uuid", "active", "priority"), {}, _queue),
    ("command_results", ("id", "command_uuid", "status", "result", "not_now_tally"), {},
     _results),
)


def _insert(connection: Any, dialect: Dialect, table: str, columns: Sequence[str],
            extra: dict[str, str], rows: list[tuple]) -> None:
    one = "({})".format(", ".join(["?"] * len(columns) + list(extra.values())))
    query = "INSERT INTO {} ({}) VALUES {}".format(
        table, ", ".join([*columns, *extra]), ", ".join([one] * len(rows))
    )
    cursor = connection.cursor()
    try:
        cursor.execute(dialect.sql(query), [value for row in rows for value in row])
    finally:
        cursor.close()
    connection.commit()


def seed(connection: Any, dialect: Dialect, rows: int,
         progress: Progress | None = None) -> Seeded:
    """
    Add ``rows`` queue + result rows over ``rows // 10`` enrollments to an empty store.

    ``connection`` is a DB-API connection to a database with our schema;
    each INSERT of up to a thousand rows is committed on its own.
    """
    count = enrollments_for(rows)
    total = count * (ROWS_PER_ENROLLMENT + 3)  # roughly: + devices, enrollments, certs
    written, reported = 0, 0
    tallies: dict[str, int] = {}
    for table, columns, extra, make in _TABLES:
        source = make(count)
        tallies[table] = 0
        while batch := list(islice(source, _ROWS_PER_INSERT)):
            _insert(connection, dialect, table, columns, extra, batch)
            tallies[table] += len(batch)
            written += len(batch)
            if progress is not None and written - reported >= total // 10:
                reported = written
                progress(f"seeded {written:,} of ~{total:,} rows ({table})")
    return Seeded(count, tallies["enrollment_queue"], tallies["command_results"])


def analyze(connection: Any, dialect: Dialect) -> None:
    """Refresh the planner's statistics after seeding, as a server's own would in time."""
    tables = [table for table, *_ in _TABLES]
    statements = {
        "mysql": ["ANALYZE TABLE " + ", ".join(tables)],
        "pgsql": [f"ANALYZE {table}" for table in tables],
    }.get(dialect.name, ["ANALYZE"])
    cursor = connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
            if cursor.description:
                cursor.fetchall()
    finally:
        cursor.close()
    connection.commit()


def seed_store(storage: str, dsn: str, rows: int, progress: Progress | None = None) -> Seeded:
    """Seed and ANALYZE the database a ``--storage``/``--storage-dsn`` pair names (schema made)."""
    if storage == "sqlite":
        dialect, connection = SQLITE, sqlite3.connect(database_path(dsn))
    else:
        backend, connection = schema.connect(dsn, storage)
        dialect = backend.dialect
    try:
        seeded = seed(connection, dialect, rows, progress)
        analyze(connection, dialect)
    finally:
        connection.close()
    return seeded
