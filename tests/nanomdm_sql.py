"""
NanoMDM MySQL and PostgreSQL databases made from NanoMDM's own schema files, with rows in them.

The schema is NanoMDM's, verbatim (tests/fixtures/nanomdm-schema/, without
our ``enrollment_queue.seq``); the rows are written with plain INSERTs of
the columns NanoMDM's storage writes, each queue entry a second after the
one before, as NanoMDM's queue is ordered by ``created_at``.
"""

import base64
import datetime
from pathlib import Path

from nanomdm_tw.migrate.records import Source
from nanomdm_tw.storage.dialect import split_statements

from . import mysqlserver, pgsqlserver

SCHEMA = Path(__file__).parent / "fixtures" / "nanomdm-schema"
_START = datetime.datetime(2024, 5, 1, 12, 0, 0)


def nanomdm_database(dialect: str):
    """A throwaway database holding NanoMDM's schema and nothing else."""
    script = (SCHEMA / f"{dialect}.sql").read_text()
    if dialect == "mysql":
        database = mysqlserver.ThrowawayDatabase(with_schema=False)
        for statement in split_statements(script):
            database.query(statement)
    else:
        database = pgsqlserver.ThrowawayDatabase(with_schema=False)
        database.query(script)  # one simple query: its function body holds semicolons
    return database


def fill(database, source: Source) -> None:
    """Insert every record of ``source`` as NanoMDM stores it."""
    rows = {
        "devices": (
            "INSERT INTO devices (id, identity_cert, serial_number, unlock_token, authenticate,"
            " authenticate_at, token_update, bootstrap_token_b64) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s)",
            lambda d, i: (
                d.id, d.identity_cert_pem, d.serial_number, d.unlock_token,
                d.authenticate.decode(), _START, _text(d.token_update),
                d.bootstrap_token and base64.b64encode(d.bootstrap_token).decode(),
            ),  # fmt: skip
        ),
        "users": (
            "INSERT INTO users (id, device_id, user_short_name, user_long_name, token_update,"
            " user_authenticate, user_authenticate_digest) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            lambda u, i: (
                u.id, u.device_id, u.user_short_name, u.user_long_name, _text(u.token_update),
                _text(u.user_authenticate), _text(u.user_authenticate_digest),
            ),  # fmt: skip
        ),
        "enrollments": (
            "INSERT INTO enrollments (id, device_id, user_id, type, topic, push_magic, token_hex,"
            " enabled, token_update_tally, last_seen_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            lambda e, i: (
                e.id, e.device_id, e.user_id, e.type, e.topic, e.push_magic, e.token.hex(),
                e.enabled, e.token_update_tally, _START,
            ),  # fmt: skip
        ),
        "commands": (
            "INSERT INTO commands (command_uuid, request_type, command) VALUES (%s, %s, %s)",
            lambda c, i: (c.command_uuid, c.request_type, c.raw.decode()),
        ),
        "queue": (
            "INSERT INTO enrollment_queue (id, command_uuid, active, priority, created_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            lambda q, i: (
                q.enrollment_id, q.command_uuid, q.active, q.priority,
                _START + datetime.timedelta(seconds=i),
            ),  # fmt: skip
        ),
        "results": (
            "INSERT INTO command_results (id, command_uuid, status, result, not_now_tally) "
            "VALUES (%s, %s, %s, %s, %s)",
            lambda r, i: (
                r.enrollment_id, r.command_uuid, r.status, r.raw.decode(), r.not_now_tally
            ),
        ),
        "push_certs": (
            "INSERT INTO push_certs (topic, cert_pem, key_pem, stale_token) "
            "VALUES (%s, %s, %s, %s)",
            lambda p, i: (p.topic, p.cert_pem, p.key_pem, p.stale_token),
        ),
        "cert_auth": (
            "INSERT INTO cert_auth_associations (id, sha256) VALUES (%s, %s)",
            lambda a, i: (a.enrollment_id, a.sha256),
        ),
    }
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            for kind, (query, row) in rows.items():
                for index, record in enumerate(source.read(kind)):
                    cursor.execute(query, row(record, index))
        connection.commit()
    finally:
        connection.close()


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()
