"""
Records into our SQL schema, in batches, as upserts: a rerun adds no duplicates.

Not through IStorage's check-in methods: those derive state from a device's
message as it arrives (bump the tally, enable, stamp times, draw a new push
cert stale token, queue behind what is there), where an import must copy
the source's state as it is, and a rerun must replace it rather than add
to it.  So each kind is one upsert statement of the backend's own dialect,
run over a batch of records in one transaction.  Rows the source holds
replace ours with the same key; rows only we hold are left alone.
"""

import base64
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from .records import KINDS
from .target import Target

BATCH = 500

# A Unix time parameter as a TIMESTAMP value, per dialect (NULL stays NULL).
_FROM_EPOCH = {
    "sqlite": "datetime(?, 'unixepoch')",
    "mysql": "FROM_UNIXTIME(?)",
    "pgsql": "to_timestamp(?)",
}


def batches(records: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


class Writer:
    """Writes each kind of record with one statement built for the target's dialect."""

    def __init__(self, target: Target, now: float | None = None):
        self._target = target
        self._storage = target.storage
        self._dialect = target.storage.dialect
        self._epoch = _FROM_EPOCH[self._dialect.name]
        # When the copied messages count as stored (the source keeps no such times).
        self._now = time.time() if now is None else now
        self._statements = {kind: getattr(self, "_" + kind)() for kind in KINDS}

    def write(self, kind: str, records: list[Any]) -> None:
        """Upsert a batch of ``kind`` records in one transaction."""
        query, row = self._statements[kind]
        self._target.run(self._storage._execute_many, query, [row(r) for r in records])

    def _at(self, value: Any) -> float | None:
        """The time column beside an optional value: set when the value is."""
        return None if value is None else self._now

    def _upsert(
        self, table: str, columns: list[str], key: tuple[str, ...], times: tuple[str, ...] = ()
    ) -> str:
        values = {c: "?" for c in columns} | {c: self._epoch for c in times}
        return self._dialect.upsert(
            table,
            values,
            key=key,
            copy=[c for c in values if c not in key],
            assign=("updated_at = CURRENT_TIMESTAMP",),
        )

    def _devices(self) -> tuple[str, Callable]:
        query = self._upsert(
            "devices",
            ["id", "identity_cert", "serial_number", "unlock_token", "authenticate",
             "token_update", "bootstrap_token_b64"],
            key=("id",),
            times=("unlock_token_at", "authenticate_at", "token_update_at", "bootstrap_token_at"),
        )  # fmt: skip

        def row(d):
            unlock = None if d.unlock_token is None else self._storage._binary(d.unlock_token)
            bootstrap = d.bootstrap_token and base64.b64encode(d.bootstrap_token).decode("ascii")
            return (
                d.id, d.identity_cert_pem, d.serial_number, unlock, d.authenticate,
                d.token_update, bootstrap or None,
                self._at(unlock), self._now, self._at(d.token_update), self._at(bootstrap or None),
            )  # fmt: skip

        return query, row

    def _users(self) -> tuple[str, Callable]:
        query = self._upsert(
            "users",
            ["id", "device_id", "user_short_name", "user_long_name", "token_update",
             "user_authenticate", "user_authenticate_digest"],
            key=("id", "device_id"),
            times=("token_update_at", "user_authenticate_at", "user_authenticate_digest_at"),
        )  # fmt: skip

        def row(u):
            return (
                u.id, u.device_id, u.user_short_name, u.user_long_name, u.token_update,
                u.user_authenticate, u.user_authenticate_digest, self._at(u.token_update),
                self._at(u.user_authenticate), self._at(u.user_authenticate_digest),
            )  # fmt: skip

        return query, row

    def _enrollments(self) -> tuple[str, Callable]:
        query = self._upsert(
            "enrollments",
            ["id", "device_id", "user_id", "type", "topic", "push_magic", "token_hex",
             "enabled", "token_update_tally"],
            key=("id",),
            times=("last_seen_at",),
        )  # fmt: skip

        def row(e):
            return (
                e.id, e.device_id, e.user_id, e.type, e.topic, e.push_magic, e.token.hex(),
                e.enabled, e.token_update_tally,
                self._now if e.last_seen_at is None else e.last_seen_at,
            )  # fmt: skip

        return query, row

    def _commands(self) -> tuple[str, Callable]:
        query = self._upsert(
            "commands", ["command_uuid", "request_type", "command"], key=("command_uuid",)
        )
        return query, lambda c: (c.command_uuid, c.request_type, c.raw)

    def _queue(self) -> tuple[str, Callable]:
        # Inserted in the source's order: seq (and created_at) then deliver in that order.
        query = self._upsert(
            "enrollment_queue",
            ["id", "command_uuid", "active", "priority"],
            key=("id", "command_uuid"),
        )
        return query, lambda q: (q.enrollment_id, q.command_uuid, q.active, q.priority)

    def _results(self) -> tuple[str, Callable]:
        query = self._upsert(
            "command_results",
            ["id", "command_uuid", "status", "result", "not_now_tally"],
            key=("id", "command_uuid"),
        )
        return query, lambda r: (
            r.enrollment_id, r.command_uuid, r.status, r.raw, r.not_now_tally
        )

    def _push_certs(self) -> tuple[str, Callable]:
        query = self._dialect.upsert(
            "push_certs",
            {"topic": "?", "cert_pem": "?", "key_pem": "?", "stale_token": "?"},
            key=("topic",),
            copy=("cert_pem", "key_pem", "stale_token"),
        )
        return query, lambda p: (p.topic, p.cert_pem, p.key_pem, p.stale_token)

    def _cert_auth(self) -> tuple[str, Callable]:
        query = self._dialect.upsert(
            "cert_auth_associations", {"id": "?", "sha256": "?"}, key=("id", "sha256")
        )
        return query, lambda a: (a.enrollment_id, a.sha256)
