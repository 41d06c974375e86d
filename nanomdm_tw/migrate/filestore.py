"""
NanoMDM's deprecated file store (``-storage file``, by default the folder ``db``), read.

One folder per enrollment ID (a user channel's is ``<UDID>:<user>``), holding:
``Authenticate.plist``, ``TokenUpdate.plist`` (push topic, token and magic
are read from it), ``Identity.pem``, ``SerialNumber.txt``,
``UnlockToken.dat``, ``BootstrapToken.dat``, ``TokenUpdate.tally.txt``,
``UserAuthenticate.plist``, ``UserAuthenticate.Digest.plist``, ``Disabled``
(a checked-out enrollment) and ``CertAuth.sha256.txt`` (the current
certificate hash).  Commands are files ``<uuid>.plist`` in queue folders,
reports beside them as ``<uuid>.result.plist``: ``Queue`` (waiting),
``QueueNotNow`` (answered NotNow, sent first), ``QueueDone`` (answered),
``QueueInactive`` (cleared).  NanoMDM sends each folder's commands in file
name order.  Push certificates are ``<topic>.pem`` and ``<topic>.key`` in
the top folder; their stale token was the file's time.
"""

from collections.abc import Iterator
from pathlib import Path

from ..errors import MessageError
from ..mdm.messages import (
    CheckinMessage,
    TokenUpdate,
    decode_checkin,
    decode_command,
    decode_command_report,
)
from ..storage import NOT_NOW
from .records import CertAuth, Command, Device, Enrollment, PushCert, QueueEntry, Result, User

# Queue folders in the order NanoMDM's file store sends from them (answered ones first).
_QUEUES = (("QueueDone", True), ("QueueNotNow", True), ("Queue", True), ("QueueInactive", False))
_RESULT = ".result.plist"


def is_file_store(folder: Path) -> bool:
    """Does ``folder`` hold NanoMDM file-store enrollments (``<id>/Authenticate.plist``)?"""
    return folder.is_dir() and any(folder.glob("*/Authenticate.plist"))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes() or None
    except FileNotFoundError:
        return None


def _text(path: Path) -> str | None:
    value = _read(path)
    return None if value is None else value.decode("utf-8", "replace").strip() or None


class FileStoreSource:
    """A file store, indexed at opening (enrollment folders and their check-ins)."""

    def __init__(self, folder: str | Path):
        self._folder = Path(folder)
        if not is_file_store(self._folder):
            raise ValueError(
                f"{self._folder} is not a NanoMDM file store: no <enrollment ID>/"
                "Authenticate.plist in it; give the folder NanoMDM's -storage-dsn named (db)"
            )
        self.warnings: list[str] = []
        self._devices = sorted(p.parent.name for p in self._folder.glob("*/Authenticate.plist"))
        device_ids = set(self._devices)
        self._users: dict[str, CheckinMessage] = {}
        self._enrollments: dict[str, Enrollment] = {}
        for folder in sorted(p for p in self._folder.iterdir() if p.is_dir()):
            self._index(folder, device_ids)
        self._queue = self._plan_queues()

    def close(self) -> None:
        """Nothing is held open between reads."""

    def _checkin(self, path: Path) -> CheckinMessage | None:
        raw = _read(path)
        if raw is None:
            return None
        try:
            return decode_checkin(raw)
        except MessageError as e:
            self.warnings.append(f"{path} unreadable: {e}")
            return None

    def _index(self, folder: Path, device_ids: set[str]) -> None:
        """Note the folder's user channel and enrollment, if it holds them."""
        enrollment_id = folder.name
        token_update = self._checkin(folder / "TokenUpdate.plist")
        message = token_update or self._checkin(folder / "UserAuthenticate.plist")
        if message is None:
            return
        enroll_id = message.enroll_id
        if enroll_id.device_channel_id not in device_ids:
            self.warnings.append(f"skipped {enrollment_id}: its device is not stored")
            return
        if enroll_id.is_user_channel:
            self._users[enrollment_id] = message
        if isinstance(token_update, TokenUpdate):
            self._enrollments[enrollment_id] = Enrollment(
                id=enrollment_id,
                device_id=enroll_id.device_channel_id,
                user_id=enrollment_id if enroll_id.is_user_channel else None,
                type=str(enroll_id.type),
                topic=token_update.topic,
                push_magic=token_update.push_magic,
                token=token_update.token,
                enabled=not (folder / "Disabled").exists(),
                token_update_tally=int(_text(folder / "TokenUpdate.tally.txt") or 0),
                last_seen_at=(folder / "TokenUpdate.plist").stat().st_mtime,
            )

    def _plan_queues(self) -> list[tuple[QueueEntry, str, Path, Path | None]]:
        """Each queue entry, with its command's request type and file, and its report file."""
        plan = []
        for enrollment_id in self._enrollments:
            for name, active in _QUEUES:
                folder = self._folder / enrollment_id / name
                for path in sorted(folder.glob("*.plist")) if folder.is_dir() else []:
                    if path.name.endswith(_RESULT):
                        continue
                    command_uuid = path.name.removesuffix(".plist")
                    try:
                        request_type = decode_command(path.read_bytes()).request_type
                    except MessageError as e:
                        self.warnings.append(f"skipped command {path}: {e}")
                        continue
                    result = folder / (command_uuid + _RESULT)
                    entry = QueueEntry(enrollment_id, command_uuid, active)
                    plan.append((entry, request_type, path, result if result.exists() else None))
        return plan

    def count(self, kind: str) -> int:
        return {
            "devices": len(self._devices),
            "users": len(self._users),
            "enrollments": len(self._enrollments),
            "commands": len({entry.command_uuid for entry, _, _, _ in self._queue}),
            "queue": len(self._queue),
            "results": sum(result is not None for _, _, _, result in self._queue),
            "push_certs": len(list(self._folder.glob("*.pem"))),
            "cert_auth": len(list(self._folder.glob("*/CertAuth.sha256.txt"))),
        }[kind]

    def read(self, kind: str) -> Iterator:
        return getattr(self, "_read_" + kind)()

    def _read_devices(self) -> Iterator[Device]:
        for device_id in self._devices:
            folder = self._folder / device_id
            yield Device(
                id=device_id,
                authenticate=_read(folder / "Authenticate.plist"),
                identity_cert_pem=_text(folder / "Identity.pem"),
                serial_number=_text(folder / "SerialNumber.txt"),
                token_update=_read(folder / "TokenUpdate.plist"),
                unlock_token=_read(folder / "UnlockToken.dat"),
                bootstrap_token=_read(folder / "BootstrapToken.dat"),
            )

    def _read_users(self) -> Iterator[User]:
        for user_id, message in self._users.items():
            folder = self._folder / user_id
            yield User(
                id=user_id,
                device_id=message.enroll_id.device_channel_id,
                user_short_name=message.enrollment.user_short_name or None,
                user_long_name=message.enrollment.user_long_name or None,
                token_update=_read(folder / "TokenUpdate.plist"),
                user_authenticate=_read(folder / "UserAuthenticate.plist"),
                user_authenticate_digest=_read(folder / "UserAuthenticate.Digest.plist"),
            )

    def _read_enrollments(self) -> Iterator[Enrollment]:
        yield from self._enrollments.values()

    def _read_commands(self) -> Iterator[Command]:
        seen = set()
        for entry, request_type, path, _ in self._queue:
            if entry.command_uuid not in seen:
                seen.add(entry.command_uuid)
                yield Command(entry.command_uuid, request_type, path.read_bytes())

    def _read_queue(self) -> Iterator[QueueEntry]:
        for entry, _, _, _ in self._queue:
            yield entry

    def _read_results(self) -> Iterator[Result]:
        for entry, _, _, path in self._queue:
            if path is None:
                continue
            raw = path.read_bytes()
            try:
                status = decode_command_report(raw).status
            except MessageError as e:
                self.warnings.append(f"{path} unreadable ({e}): its command will be sent again")
                continue
            tally = 1 if status == NOT_NOW else 0
            yield Result(entry.enrollment_id, entry.command_uuid, status, raw, tally)

    def _read_push_certs(self) -> Iterator[PushCert]:
        for cert in sorted(self._folder.glob("*.pem")):
            topic = cert.name.removesuffix(".pem")
            key = _text(cert.with_suffix(".key"))
            if key is None:
                self.warnings.append(f"skipped push certificate {topic}: no {topic}.key")
                continue
            yield PushCert(topic, _text(cert), key, int(cert.stat().st_mtime))

    def _read_cert_auth(self) -> Iterator[CertAuth]:
        for path in sorted(self._folder.glob("*/CertAuth.sha256.txt")):
            cert_hash = _text(path)
            if cert_hash:
                yield CertAuth(path.parent.name, cert_hash.lower())

