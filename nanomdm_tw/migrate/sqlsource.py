"""
A NanoMDM MySQL or PostgreSQL database (or one of ours, SQLite included), read.

NanoMDM's tables are ours (ours add ``enrollment_queue.seq``), so reading is
one SELECT per kind, streamed through a server-side cursor so that a large
table never sits in memory whole.  What the dialects store differently is
decoded here: the unlock token (a BLOB or BYTEA, or base64 text in our
PostgreSQL schema before its version 4), the bootstrap token (base64 text), times (read as Unix
seconds).
"""

import base64
import binascii
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from ..storage.sqlbase import as_bytes
from .records import CertAuth, Command, Device, Enrollment, PushCert, QueueEntry, Result, User

# A TIMESTAMP column as Unix seconds, per dialect (PostgreSQL's are local times).
_EPOCH = {
    "mysql": "UNIX_TIMESTAMP({})",
    "pgsql": "EXTRACT(EPOCH FROM {}::timestamptz)",
    "sqlite": "CAST(strftime('%s', {}) AS INTEGER)",
}
_BATCH = 1000


def _optional_bytes(value: Any) -> bytes | None:
    return None if value is None or value == "" else as_bytes(value)


def _unlock_token(value: Any) -> bytes | None:
    """BLOB/BYTEA as is; text is our PostgreSQL schema's base64."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True) or None
        except binascii.Error:
            return value.encode() or None
    return _optional_bytes(value)


def _bootstrap_token(value: Any) -> bytes | None:
    return base64.b64decode(value) if value else None


def _text(value: Any) -> str | None:
    return None if value is None else as_bytes(value).decode()


# kind -> (table, columns, ORDER BY, row -> record)
_KINDS: dict[str, tuple[str, str, str, Callable[[tuple], Any]]] = {
    "devices": (
        "devices",
        "id, authenticate, identity_cert, serial_number, token_update, unlock_token, "
        "bootstrap_token_b64",
        "id",
        lambda r: Device(
            r[0], as_bytes(r[1]), _text(r[2]), r[3], _optional_bytes(r[4]),
            _unlock_token(r[5]), _bootstrap_token(r[6]),
        ),  # fmt: skip
    ),
    "users": (
        "users",
        "id, device_id, user_short_name, user_long_name, token_update, user_authenticate, "
        "user_authenticate_digest",
        "device_id, id",
        lambda r: User(*r[:4], *map(_optional_bytes, r[4:])),
    ),
    "enrollments": (
        "enrollments",
        "id, device_id, user_id, type, topic, push_magic, token_hex, enabled, "
        "token_update_tally, {last_seen_at}",
        # Device channels first: a user channel's row names its device's.
        "user_id IS NOT NULL, id",
        lambda r: Enrollment(
            r[0], r[1], r[2], r[3], r[4], r[5], bytes.fromhex(r[6]), bool(r[7]), int(r[8]),
            None if r[9] is None else float(r[9]),
        ),  # fmt: skip
    ),
    "commands": (
        "commands",
        "command_uuid, request_type, command",
        "command_uuid",
        lambda r: Command(r[0], r[1], as_bytes(r[2])),
    ),
    "queue": (
        "enrollment_queue",
        "id, command_uuid, active, priority",
        "id, priority DESC, created_at, {tie_break}",
        lambda r: QueueEntry(r[0], r[1], bool(r[2]), int(r[3])),
    ),
    "results": (
        "command_results",
        "id, command_uuid, status, result, not_now_tally",
        "id, command_uuid",
        lambda r: Result(r[0], r[1], r[2], as_bytes(r[3]), int(r[4])),
    ),
    "push_certs": (
        "push_certs",
        "topic, cert_pem, key_pem, stale_token",
        "topic",
        lambda r: PushCert(r[0], _text(r[1]), _text(r[2]), int(r[3])),
    ),
    "cert_auth": (
        "cert_auth_associations",
        "id, sha256",
        "id, sha256",
        lambda r: CertAuth(r[0], r[1].lower()),
    ),
}


def _connect(dialect: str, dsn: str) -> tuple[Any, Callable[[], Any]]:
    """A connection to the database and a factory of streaming cursors on it."""
    if dialect == "mysql":
        import pymysql

        from ..storage.dsn import parse_dsn

        connection = pymysql.connect(**parse_dsn(dsn).connect_kwargs())
        return connection, lambda: connection.cursor(pymysql.cursors.SSCursor)
    if dialect == "pgsql":
        import psycopg

        from ..storage.pgsql import parse_pgsql_dsn

        connection = psycopg.connect(parse_pgsql_dsn(dsn).conninfo)
        return connection, lambda: connection.cursor(name="nanomdm_tw_migrate")
    from ..storage.sqlite import database_path

    path = database_path(dsn or "db")
    if not path.exists():
        raise ValueError(f"no SQLite database at {path}")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return connection, connection.cursor


class SQLSource:
    """A NanoMDM (or nanomdm-tw) database; ``dialect`` is mysql, pgsql or sqlite."""

    def __init__(self, dialect: str, dsn: str):
        self.dialect = dialect
        self.warnings: list[str] = []
        self._connection, self._cursor = _connect(dialect, dsn)
        columns = self._columns("enrollment_queue")
        # Our seq orders commands queued within one second; NanoMDM's rows tie on the key.
        self._tie_break = "seq" if "seq" in columns else "command_uuid"

    def _columns(self, table: str) -> set[str]:
        cursor = self._connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM {table} WHERE 1 = 0")
            cursor.fetchall()
            return {column[0] for column in cursor.description}
        finally:
            cursor.close()

    def close(self) -> None:
        self._connection.close()

    def count(self, kind: str) -> int:
        cursor = self._connection.cursor()
        try:
            cursor.execute(f"SELECT COUNT(*) FROM {_KINDS[kind][0]}")
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def read(self, kind: str) -> Iterator:
        table, columns, order, record = _KINDS[kind]
        query = "SELECT {} FROM {} ORDER BY {}".format(
            columns.format(last_seen_at=_EPOCH[self.dialect].format("last_seen_at")),
            table,
            order.format(tie_break=self._tie_break),
        )
        cursor = self._cursor()
        try:
            cursor.execute(query)
            while rows := cursor.fetchmany(_BATCH):
                for row in rows:
                    yield record(row)
        finally:
            cursor.close()
            # End the read transaction (PostgreSQL's server-side cursor lives in one).
            self._connection.rollback()
