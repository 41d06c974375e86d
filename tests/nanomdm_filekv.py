"""
A NanoMDM filekv store, written as NanoMDM's kv backend writes one.

Test stores for the migration tool.  Each method does to the keys what the
NanoMDM method of the same name does (NanoMDM's storage/kv, over
storage/diskv's folder layout), so a store reached by a sequence of NanoMDM
operations (enqueue, reports, a cleared queue, a checkout) can be built
without NanoMDM and read back.
"""

import time
from pathlib import Path

PUSH_CERT_TOPIC_PREFIX = "com.apple.mgmt.External."


class FileKVStore:
    def __init__(self, folder: Path):
        self.folder = folder
        for bucket in ("devices", "users", "enrollments", "queue", "cert_auth", "push_cert"):
            (folder / bucket).mkdir(parents=True, exist_ok=True)

    # -- diskv: one file per key, two folder levels from the key's first characters

    def _path(self, bucket: str, key: str) -> Path:
        name = key
        if bucket == "push_cert":
            name = name.removeprefix(PUSH_CERT_TOPIC_PREFIX)
        name = name.rjust(4, "0")
        return self.folder / bucket / name[0:2] / name[2:4] / key

    def set(self, bucket: str, key: str, value: bytes | str) -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.encode() if isinstance(value, str) else value)

    def get(self, bucket: str, key: str) -> bytes | None:
        path = self._path(bucket, key)
        return path.read_bytes() if path.exists() else None

    def delete(self, bucket: str, key: str) -> None:
        self._path(bucket, key).unlink(missing_ok=True)

    def _user_channels(self, device_id: str) -> list[str]:
        prefix = f"{device_id}.user_ch."
        return [p.name[len(prefix):] for p in (self.folder / "enrollments").rglob(prefix + "*")]

    def _seen(self, enrollment_id: str) -> None:
        self.set("enrollments", enrollment_id + ".last_seen_at", str(int(time.time() * 1e6)))

    # -- check-ins (storage/kv/mdm.go, bstoken.go) ------------------------------

    def store_authenticate(
        self, device_id: str, raw: bytes, cert_der: bytes | None, serial: str = ""
    ) -> None:
        """Authenticate, and the Disable that NanoMDM's service calls after it."""
        self.set("devices", device_id + ".auth", raw)
        if cert_der:
            self.set("devices", device_id + ".cert", cert_der)
        else:
            self.delete("devices", device_id + ".cert")
        if serial:
            self.set("devices", device_id + ".serial", serial)
        else:
            self.delete("devices", device_id + ".serial")
        self.delete("devices", device_id + ".bstoken")
        for field in ("unl_tok", "tok_tal", "enrolled_at"):
            self.delete("enrollments", f"{device_id}.{field}")
        for user_id in self._user_channels(device_id):
            self.delete("enrollments", user_id + ".tok_tal")
        self.disable(device_id)

    def store_token_update(
        self,
        enrollment_id: str,
        raw: bytes,
        enroll_type: str,
        topic: str,
        push_magic: str,
        token: bytes,
        unlock_token: bytes = b"",
        parent_id: str | None = None,
    ) -> None:
        if parent_id:
            self.set("users", enrollment_id + ".device_ch", parent_id)
            self.set("users", enrollment_id + ".tok_upd", raw)
        else:
            self.set("devices", enrollment_id + ".tok_upd", raw)
        self._seen(enrollment_id)
        self.set("enrollments", enrollment_id + ".type", enroll_type)
        self.set("enrollments", enrollment_id + ".topic", topic)
        self.set("enrollments", enrollment_id + ".push_magic", push_magic)
        self.set("enrollments", enrollment_id + ".token", token)
        if unlock_token:
            self.set("enrollments", enrollment_id + ".unl_tok", unlock_token)
        if parent_id:
            self.set("enrollments", f"{parent_id}.user_ch.{enrollment_id}", "1")
        tally = int(self.get("enrollments", enrollment_id + ".tok_tal") or 0) + 1
        self.set("enrollments", enrollment_id + ".tok_tal", str(tally))
        if tally == 1:
            self.set("enrollments", enrollment_id + ".enrolled_at", str(int(time.time() * 1e6)))
        self.delete("enrollments", enrollment_id + ".disabled")

    def disable(self, enrollment_id: str, is_user_channel: bool = False) -> None:
        self._seen(enrollment_id)
        self.set("enrollments", enrollment_id + ".disabled", "1")
        if not is_user_channel:
            for user_id in self._user_channels(enrollment_id):
                self.set("enrollments", user_id + ".disabled", "1")

    def store_user_authenticate(self, user_id: str, raw: bytes, digest: bool = False) -> None:
        self._seen(user_id)
        self.set("users", user_id + (".user_auth_digest" if digest else ".user_auth"), raw)
        self.set("enrollments", user_id + ".disabled", "1")

    def store_bootstrap_token(self, device_id: str, token: bytes) -> None:
        self._seen(device_id)
        self.set("devices", device_id + ".bstoken", token)

    # -- the queue: a linked list per enrollment (storage/kv/queue.go, queue_ll.go)

    def _item(self, enrollment_id: str, command_uuid: str, field: str) -> str:
        return f"{enrollment_id}.{command_uuid}.queueitem.{field}"

    def _queue_key(self, enrollment_id: str, field: str) -> str:
        return f"{enrollment_id}.queuekey.queue.{field}"

    def _text(self, key: str) -> str:
        return (self.get("queue", key) or b"").decode()

    def enqueue_command(
        self, enrollment_ids: list[str], command_uuid: str, raw: bytes, request_type: str
    ) -> None:
        self.set("queue", command_uuid + ".raw", raw)
        self.set("queue", command_uuid + ".req_type", request_type)
        for enrollment_id in enrollment_ids:
            last = self._text(self._queue_key(enrollment_id, "last"))
            if not last:
                self.set("queue", self._queue_key(enrollment_id, "first"), command_uuid)
            else:
                self.set("queue", self._item(enrollment_id, last, "next"), command_uuid)
                self.set("queue", self._item(enrollment_id, command_uuid, "prev"), last)
            self.set("queue", self._queue_key(enrollment_id, "last"), command_uuid)

    def store_command_report(
        self, enrollment_id: str, command_uuid: str, status: str, raw: bytes
    ) -> None:
        self._seen(enrollment_id)
        self.set("queue", self._item(enrollment_id, command_uuid, "report"), raw)
        self.set("queue", self._item(enrollment_id, command_uuid, "status"), status)
        if status != "NotNow":
            self._unlink(enrollment_id, command_uuid)

    def _unlink(self, enrollment_id: str, command_uuid: str) -> None:
        prev = self._text(self._item(enrollment_id, command_uuid, "prev"))
        nxt = self._text(self._item(enrollment_id, command_uuid, "next"))
        if not prev:
            if not nxt:
                self.delete("queue", self._queue_key(enrollment_id, "last"))
                self.delete("queue", self._queue_key(enrollment_id, "first"))
            else:
                self.set("queue", self._queue_key(enrollment_id, "first"), nxt)
                self.delete("queue", self._item(enrollment_id, nxt, "prev"))
        elif not nxt:
            self.set("queue", self._queue_key(enrollment_id, "last"), prev)
        else:
            self.set("queue", self._item(enrollment_id, prev, "next"), nxt)
            self.set("queue", self._item(enrollment_id, nxt, "prev"), prev)
        self.delete("queue", self._item(enrollment_id, command_uuid, "prev"))
        self.delete("queue", self._item(enrollment_id, command_uuid, "next"))

    def clear_queue(self, enrollment_id: str) -> None:
        command_uuid = self._text(self._queue_key(enrollment_id, "first"))
        while command_uuid:
            following = self._text(self._item(enrollment_id, command_uuid, "next"))
            self.delete("queue", self._item(enrollment_id, command_uuid, "next"))
            self.delete("queue", self._item(enrollment_id, command_uuid, "prev"))
            command_uuid = following
        self.delete("queue", self._queue_key(enrollment_id, "first"))
        self.delete("queue", self._queue_key(enrollment_id, "last"))

    # -- cert auth and push certs (storage/kv/certauth.go, pushcert.go) --------

    def associate_cert_hash(self, enrollment_id: str, cert_hash: str) -> None:
        self.set("cert_auth", enrollment_id + ".cert_hash", cert_hash)
        self.set("cert_auth", cert_hash + ".hash_cert", enrollment_id)

    def store_push_cert(self, topic: str, cert_pem: bytes, key_pem: bytes) -> None:
        previous = self.get("push_cert", topic + ".stale_token")
        token = 0 if previous is None else int(previous) + 1
        self.set("push_cert", topic + ".pem", cert_pem)
        self.set("push_cert", topic + ".key", key_pem)
        self.set("push_cert", topic + ".stale_token", str(token))
