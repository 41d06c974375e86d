"""
A NanoMDM file store (its deprecated ``-storage file``), laid out as NanoMDM's storage/file lays it.

Written from the records of another store, so that the same deployment can
be imported from either: one folder per enrollment with its check-ins and
queue folders, push certificates in the top folder.
"""

import os
from pathlib import Path

from nanomdm_tw.migrate.records import Source

_QUEUE_FOLDER = {None: "Queue", "NotNow": "QueueNotNow"}  # anything else: QueueDone


def write_file_store(folder: Path, source: Source) -> None:
    def put(enrollment_id: str, name: str, value: bytes | str | None) -> None:
        if value is not None:
            path = folder / enrollment_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(value.encode() if isinstance(value, str) else value)

    for d in source.read("devices"):
        put(d.id, "Authenticate.plist", d.authenticate)
        put(d.id, "TokenUpdate.plist", d.token_update)
        put(d.id, "Identity.pem", d.identity_cert_pem)
        put(d.id, "SerialNumber.txt", d.serial_number)
        put(d.id, "UnlockToken.dat", d.unlock_token)
        put(d.id, "BootstrapToken.dat", d.bootstrap_token)
    for u in source.read("users"):
        put(u.id, "TokenUpdate.plist", u.token_update)
        put(u.id, "UserAuthenticate.plist", u.user_authenticate)
        put(u.device_id, f"SubEnrollments/{u.id}", b"")
    for e in source.read("enrollments"):
        put(e.id, "TokenUpdate.tally.txt", str(e.token_update_tally))
        if not e.enabled:
            put(e.id, "Disabled", b"")
    commands = {c.command_uuid: c.raw for c in source.read("commands")}
    results = {(r.enrollment_id, r.command_uuid): r for r in source.read("results")}
    for q in source.read("queue"):
        result = results.get((q.enrollment_id, q.command_uuid))
        status = None if result is None else result.status
        queue = _QUEUE_FOLDER.get(status, "QueueDone") if q.active else "QueueInactive"
        put(q.enrollment_id, f"{queue}/{q.command_uuid}.plist", commands[q.command_uuid])
        put(q.enrollment_id, f"{queue}/{q.command_uuid}.result.plist", result and result.raw)
    for p in source.read("push_certs"):
        (folder / f"{p.topic}.pem").write_text(p.cert_pem)
        (folder / f"{p.topic}.key").write_text(p.key_pem)
        os.utime(folder / f"{p.topic}.pem", (1_700_000_000, 1_700_000_000))
    for a in source.read("cert_auth"):
        put(a.enrollment_id, "CertAuth.sha256.txt", a.sha256)
        with open(folder / "CertAuth.txt", "a") as associations:
            associations.write(f"{a.enrollment_id},{a.sha256}\n")
