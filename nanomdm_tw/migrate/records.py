"""
What a NanoMDM store holds, as plain records every source yields and the writer takes.

The fields are those of NanoMDM's SQL schema (and so ours), with values
decoded: raw plists and tokens as bytes, times as Unix seconds.  A source
yields each kind in an order the writer can follow: devices before their
users and enrollments, commands before the queue entries and results that
name them, each enrollment's queue entries in delivery order.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    authenticate: bytes
    identity_cert_pem: str | None = None
    serial_number: str | None = None
    token_update: bytes | None = None
    unlock_token: bytes | None = None
    bootstrap_token: bytes | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A user channel's messages (NanoMDM's users table)."""

    id: str
    device_id: str
    user_short_name: str | None = None
    user_long_name: str | None = None
    token_update: bytes | None = None
    user_authenticate: bytes | None = None
    user_authenticate_digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One MDM channel that completed a TokenUpdate: where and how to push it."""

    id: str
    device_id: str
    user_id: str | None
    type: str
    topic: str
    push_magic: str
    token: bytes
    enabled: bool = True
    token_update_tally: int = 1
    last_seen_at: float | None = None


@dataclass(frozen=True, slots=True)
class Command:
    command_uuid: str
    request_type: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A command queued to an enrollment; inactive once the queue was cleared."""

    enrollment_id: str
    command_uuid: str
    active: bool = True
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    """An enrollment's latest report on a command: answered, or NotNow (still queued)."""

    enrollment_id: str
    command_uuid: str
    status: str
    raw: bytes
    not_now_tally: int = 0


@dataclass(frozen=True, slots=True)
class PushCert:
    topic: str
    cert_pem: str
    key_pem: str
    stale_token: int


@dataclass(frozen=True, slots=True)
class CertAuth:
    """A device channel's identity certificate hash (hex SHA-256) that cert auth accepts."""

    enrollment_id: str
    sha256: str


# The kinds of record in the order they are copied (parents before the rows naming them).
KINDS = (
    "devices", "users", "enrollments", "commands", "queue", "results", "push_certs", "cert_auth",
)  # fmt: skip


class Source(Protocol):
    """A NanoMDM store, opened for reading."""

    # Problems met while reading (records skipped), one line each, for the user.
    warnings: list[str]

    def count(self, kind: str) -> int:
        """How many records of ``kind`` (a KINDS name) ``read`` will yield, about."""

    def read(self, kind: str) -> Iterator:
        """The records of ``kind``, in the order the module docstring describes."""

    def close(self) -> None:
        """Release files or connections."""
