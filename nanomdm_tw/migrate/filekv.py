"""
NanoMDM's filekv store (``-storage filekv``, by default the folder ``dbkv``), read.

NanoMDM's key-value backend (its storage/kv over storage/diskv) keeps six
buckets, each a folder under the DSN.  Every key is one file named as the
key, two folder levels down (diskv's transform splits the key's first four
characters 2x2: ``devices/AB/CD/ABCD....auth``); the value is the file's
bytes.  Keys join an ID and a field with dots:

- devices: ``<id>.auth``, ``.cert`` (DER), ``.serial``, ``.tok_upd``, ``.bstoken``
- users: ``<id>.device_ch``, ``.tok_upd``, ``.user_auth``, ``.user_auth_digest``
- enrollments: ``<id>.type``, ``.topic``, ``.push_magic``, ``.token``,
  ``.unl_tok``, ``.tok_tal``, ``.disabled``, ``.last_seen_at`` (Unix
  microseconds); ``<device id>.user_ch.<user channel id>``
- queue: ``<uuid>.raw``, ``<uuid>.req_type``; ``<id>.queuekey.queue.first``
  and ``.last``; ``<id>.<uuid>.queueitem.next``, ``.prev``, ``.status``, ``.report``
- cert_auth: ``<id>.cert_hash`` (the hash), ``<hash>.hash_cert`` (the ID)
- push_cert: ``<topic>.pem``, ``.key``, ``.stale_token``

An enrollment's queue is a linked list from ``first`` along ``next``: the
commands not yet answered, or answered NotNow, in delivery order.  Any
other report unlinks its command but keeps status and report; clearing the
queue unlinks everything and keeps the statuses.
"""

import os
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import MessageError
from ..mdm.enrollment import EnrollType
from ..mdm.messages import CheckinMessage, decode_checkin, decode_command
from ..storage import NOT_NOW
from .records import CertAuth, Command, Device, Enrollment, PushCert, QueueEntry, Result, User

BUCKETS = ("devices", "users", "enrollments", "queue", "cert_auth", "push_cert")

# Enrollment types whose channel belongs to a device channel.
_USER_CHANNEL_TYPES = {
    str(t) for t in (EnrollType.USER, EnrollType.USER_ENROLLMENT, EnrollType.SHARED_IPAD)
}
_QUEUE_ITEM = ".queueitem."


class _Bucket:
    """One diskv folder: each key's file, read when asked for."""

    def __init__(self, folder: Path):
        self.paths: dict[str, Path] = {}
        for directory, _, names in os.walk(folder):
            for name in names:
                self.paths[name] = Path(directory, name)

    def get(self, key: str) -> bytes | None:
        path = self.paths.get(key)
        return None if path is None else path.read_bytes()

    def text(self, key: str) -> str | None:
        value = self.get(key)
        return None if value is None else value.decode("utf-8", "replace").strip()

    def ids(self, field: str) -> list[str]:
        """The IDs that have ``field`` (keys ``<id>.<field>``), sorted."""
        suffix = "." + field
        return sorted(key[: -len(suffix)] for key in self.paths if key.endswith(suffix))


def is_filekv_store(folder: Path) -> bool:
    """Does ``folder`` look like a NanoMDM filekv store (one of its bucket folders)?"""
    return any((folder / name).is_dir() for name in BUCKETS)


def _checkin(raw: bytes | None) -> CheckinMessage | None:
    if not raw:
        return None
    try:
        return decode_checkin(raw)
    except MessageError:
        return None


class FileKVSource:
    """A filekv store, indexed at opening; values are read from disk as records are yielded."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not is_filekv_store(folder):
            raise ValueError(
                f"{folder} is not a NanoMDM filekv store: it has none of the folders "
                f"{', '.join(BUCKETS)}; give the folder NanoMDM's -storage-dsn named "
                "(dbkv by default)"
            )
        self.warnings: list[str] = []
        b = {name: _Bucket(folder / name) for name in BUCKETS}
        self._devices, self._users, self._enrollments = b["devices"], b["users"], b["enrollments"]
        self._queue, self._cert_auth, self._push_cert = b["queue"], b["cert_auth"], b["push_cert"]
        self._device_ids = self._devices.ids("auth")
        self._user_parents = self._index_users(set(self._device_ids))
        self._enrollment_records = self._index_enrollments()
        self._command_uuids = self._queue.ids("raw")
        self._queue_plan = self._plan_queues()

    def close(self) -> None:
        """Nothing is held open between reads."""

    def _skip(self, what: str, why: str) -> None:
        self.warnings.append(f"skipped {what}: {why}")

    # -- indexes ---------------------------------------------------------------

    def _index_users(self, device_ids: set[str]) -> dict[str, str]:
        """User channel ID -> its device channel ID, for user channels whose device is known."""
        fields = ("device_ch", "tok_upd", "user_auth", "user_auth_digest")
        parents = {}
        for user_id in sorted({i for f in fields for i in self._users.ids(f)}):
            device_id = self._users.text(user_id + ".device_ch")
            if not device_id:
                message = self._user_message(user_id)
                device_id = message.enroll_id.device_channel_id if message else None
            if device_id not in device_ids:
                self._skip(f"user channel {user_id}", f"its device {device_id} is not stored")
                continue
            parents[user_id] = device_id
        return parents

    def _user_message(self, user_id: str) -> CheckinMessage | None:
        """The user channel's latest message that names it (TokenUpdate first)."""
        for field in ("tok_upd", "user_auth_digest", "user_auth"):
            message = _checkin(self._users.get(f"{user_id}.{field}"))
            if message is not None:
                return message
        return None

    def _index_enrollments(self) -> dict[str, Enrollment]:
        e = self._enrollments
        records = {}
        for enrollment_id in e.ids("type"):
            kind = e.text(enrollment_id + ".type")
            if kind in _USER_CHANNEL_TYPES:
                device_id, user_id = self._user_parents.get(enrollment_id), enrollment_id
                known = device_id is not None
            else:
                device_id, user_id = enrollment_id, None
                known = enrollment_id in self._device_ids
            topic = e.text(enrollment_id + ".topic")
            push_magic = e.text(enrollment_id + ".push_magic")
            token = e.get(enrollment_id + ".token")
            if not known:
                self._skip(f"enrollment {enrollment_id}", "its device or user is not stored")
            elif not (topic and push_magic and token):
                self._skip(f"enrollment {enrollment_id}", "no topic, push magic or token")
            else:
                records[enrollment_id] = Enrollment(
                    id=enrollment_id,
                    device_id=device_id,
                    user_id=user_id,
                    type=kind,
                    topic=topic,
                    push_magic=push_magic,
                    token=token,
                    enabled=(enrollment_id + ".disabled") not in e.paths,
                    token_update_tally=_integer(e.text(enrollment_id + ".tok_tal")),
                    last_seen_at=_micros(e.text(enrollment_id + ".last_seen_at")),
                )
        return records

    def _split_item_key(self, key: str, known_ids: set[str]) -> tuple[str, str]:
        """``<id>.<uuid>`` -> (id, uuid): IDs may hold dots in theory, so known IDs decide."""
        position = key.find(".")
        while position != -1:
            if key[:position] in known_ids:
                return key[:position], key[position + 1 :]
            position = key.find(".", position + 1)
        enrollment_id, _, command_uuid = key.partition(".")
        return enrollment_id, command_uuid

    def _linked(self, enrollment_id: str) -> list[str]:
        """The enrollment's queue, from ``first`` along ``next`` (a cycle ends it)."""
        order: list[str] = []
        command_uuid = self._queue.text(enrollment_id + ".queuekey.queue.first")
        while command_uuid and command_uuid not in order:
            order.append(command_uuid)
            command_uuid = self._queue.text(f"{enrollment_id}.{command_uuid}{_QUEUE_ITEM}next")
        return order

    def _plan_queues(self) -> list[tuple[QueueEntry, str | None]]:
        """Every queue entry, each with its report's status (None: unanswered)."""
        queued = self._queue.ids("queuekey.queue.first")
        known_ids = set(queued) | set(self._enrollment_records) | set(self._device_ids)
        statuses: dict[str, dict[str, str]] = {}
        for key in self._queue.ids("queueitem.status"):
            enrollment_id, command_uuid = self._split_item_key(key, known_ids)
            status = self._queue.text(f"{key}{_QUEUE_ITEM}status")
            statuses.setdefault(enrollment_id, {})[command_uuid] = status
        commands = set(self._command_uuids)
        plan = []
        for enrollment_id in sorted(set(queued) | set(statuses)):
            answered = statuses.get(enrollment_id, {})
            linked = self._linked(enrollment_id)
            # Answered (or cleared) commands first: they were queued before those still waiting.
            entries = [
                (QueueEntry(enrollment_id, uuid, active=answered[uuid] != NOT_NOW), answered[uuid])
                for uuid in sorted(set(answered) - set(linked))
            ]
            entries += [(QueueEntry(enrollment_id, uuid), answered.get(uuid)) for uuid in linked]
            for entry, status in entries:
                what = f"queued command {entry.command_uuid} of {enrollment_id}"
                if enrollment_id not in self._enrollment_records:
                    self._skip(what, "the enrollment is not stored")
                elif entry.command_uuid not in commands:
                    self._skip(what, "the command itself is not stored")
                else:
                    plan.append((entry, status))
        return plan

    # -- reading -------------------------------------------------------------

    def count(self, kind: str) -> int:
        return {
            "devices": len(self._device_ids),
            "users": len(self._user_parents),
            "enrollments": len(self._enrollment_records),
            "commands": len(self._command_uuids),
            "queue": len(self._queue_plan),
            "results": sum(status is not None for _, status in self._queue_plan),
            "push_certs": len(self._push_cert.ids("pem")),
            "cert_auth": len(self._cert_auth.ids("cert_hash")),
        }[kind]

    def read(self, kind: str) -> Iterator:
        return getattr(self, "_read_" + kind)()

    def _read_devices(self) -> Iterator[Device]:
        d = self._devices
        for device_id in self._device_ids:
            authenticate = d.get(device_id + ".auth")
            if not authenticate:
                self._skip(f"device {device_id}", "its Authenticate is empty")
                continue
            yield Device(
                id=device_id,
                authenticate=authenticate,
                identity_cert_pem=self._identity_cert(device_id),
                serial_number=d.text(device_id + ".serial") or None,
                token_update=d.get(device_id + ".tok_upd") or None,
                unlock_token=self._enrollments.get(device_id + ".unl_tok") or None,
                bootstrap_token=d.get(device_id + ".bstoken") or None,
            )

    def _identity_cert(self, device_id: str) -> str | None:
        der = self._devices.get(device_id + ".cert")
        if not der:
            return None
        try:
            return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
        except ValueError as e:
            self.warnings.append(f"device {device_id}: identity certificate unreadable ({e})")
            return None

    def _read_users(self) -> Iterator[User]:
        u = self._users
        for user_id, device_id in self._user_parents.items():
            message = self._user_message(user_id)
            enrollment = message.enrollment if message else None
            yield User(
                id=user_id,
                device_id=device_id,
                user_short_name=(enrollment.user_short_name or None) if enrollment else None,
                user_long_name=(enrollment.user_long_name or None) if enrollment else None,
                token_update=u.get(user_id + ".tok_upd") or None,
                user_authenticate=u.get(user_id + ".user_auth") or None,
                user_authenticate_digest=u.get(user_id + ".user_auth_digest") or None,
            )

    def _read_enrollments(self) -> Iterator[Enrollment]:
        yield from self._enrollment_records.values()

    def _read_commands(self) -> Iterator[Command]:
        for command_uuid in self._command_uuids:
            raw = self._queue.get(command_uuid + ".raw")
            request_type = self._queue.text(command_uuid + ".req_type")
            if not request_type:
                try:
                    request_type = decode_command(raw).request_type
                except MessageError as e:
                    self._skip(f"command {command_uuid}", str(e))
                    continue
            yield Command(command_uuid, request_type, raw)

    def _read_queue(self) -> Iterator[QueueEntry]:
        for entry, _ in self._queue_plan:
            yield entry

    def _read_results(self) -> Iterator[Result]:
        for entry, status in self._queue_plan:
            if status is None:
                continue
            key = f"{entry.enrollment_id}.{entry.command_uuid}{_QUEUE_ITEM}report"
            raw = self._queue.get(key)
            if not raw:
                self._skip(f"result of {entry.command_uuid} from {entry.enrollment_id}", "empty")
                continue
            tally = 1 if status == NOT_NOW else 0
            yield Result(entry.enrollment_id, entry.command_uuid, status, raw, tally)

    def _read_push_certs(self) -> Iterator[PushCert]:
        p = self._push_cert
        for topic in p.ids("pem"):
            cert_pem, key_pem = p.text(topic + ".pem"), p.text(topic + ".key")
            if not (cert_pem or "").startswith("-----BEGIN CERTIFICATE-----") or not key_pem:
                self._skip(f"push certificate {topic}", "no PEM certificate and key")
                continue
            yield PushCert(topic, cert_pem, key_pem, _integer(p.text(topic + ".stale_token")))

    def _read_cert_auth(self) -> Iterator[CertAuth]:
        # Only each enrollment's current hash: NanoMDM's kv cert auth accepts no other.
        for enrollment_id in self._cert_auth.ids("cert_hash"):
            cert_hash = self._cert_auth.text(enrollment_id + ".cert_hash")
            if cert_hash:
                yield CertAuth(enrollment_id, cert_hash.lower())


def _integer(text: str | None) -> int:
    """NanoMDM's integer values (tallies, stale tokens): 0 when absent or unreadable."""
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _micros(text: str | None) -> float | None:
    """NanoMDM's times: Unix microseconds as decimal text."""
    try:
        return int(text) / 1e6 if text else None
    except ValueError:
        return None
