"""
Push in NanoMDM's tables: where each enrollment is pushed to (enrollments'
topic, push magic and token) and the APNs push certificates per topic.
"""

from twisted.internet.defer import Deferred

from . import new_stale_token
from .interfaces import PushCert, PushInfo
from .sqlbase import as_bytes, chunks, marks


def _push_cert(topic: str, cert_pem, key_pem, stale_token) -> PushCert:
    """A push_certs row as stored (bytes or text, by driver) made into a PushCert."""
    return PushCert(
        topic=topic,
        cert_pem=as_bytes(cert_pem),
        key_pem=as_bytes(key_pem),
        stale_token=str(stale_token),
    )


class SQLPushStore:
    """The push roles of SQLStorage, over SQLBase's interactions."""

    async def retrieve_push_info(self, enrollment_ids: list[str]) -> dict[str, PushInfo]:
        if not enrollment_ids:
            return {}
        rows = await self._interact(self._push_info_rows, list(enrollment_ids))
        return {
            row[0]: PushInfo(
                enrollment_id=row[0],
                topic=row[1],
                push_magic=row[2],
                token=bytes.fromhex(row[3]),
            )
            for row in rows
        }

    def _push_info_rows(self, txn, ids: list[str]) -> list:
        rows = []
        for chunk in chunks(ids):
            rows += self._all(
                txn,
                "SELECT id, topic, push_magic, token_hex FROM enrollments "
                f"WHERE id IN ({marks(len(chunk))}) AND enabled = TRUE",
                chunk,
            )
        return rows

    def store_push_cert(self, topic: str, cert_pem: bytes, key_pem: bytes) -> Deferred:
        return self._interact(
            self._store_push_cert, topic, cert_pem.decode("ascii"), key_pem.decode("ascii")
        )

    def _store_push_cert(self, txn, topic: str, cert_pem: str, key_pem: str) -> str:
        row = self._one(txn, "SELECT stale_token FROM push_certs WHERE topic = ?", (topic,))
        stale_token = new_stale_token(None if row is None else row[0])
        query = self.dialect.upsert(
            "push_certs",
            {"topic": "?", "cert_pem": "?", "key_pem": "?", "stale_token": "?"},
            key=("topic",),
            copy=("cert_pem", "key_pem", "stale_token"),
        )
        self._execute(txn, query, (topic, cert_pem, key_pem, stale_token))
        return str(stale_token)

    async def retrieve_push_cert(self, topic: str) -> PushCert | None:
        row = await self._interact(
            self._one,
            "SELECT cert_pem, key_pem, stale_token FROM push_certs WHERE topic = ?",
            (topic,),
        )
        return None if row is None else _push_cert(topic, *row)

    async def retrieve_push_certs(self) -> list[PushCert]:
        rows = await self._interact(
            self._all, "SELECT topic, cert_pem, key_pem, stale_token FROM push_certs"
        )
        certs = [_push_cert(*row) for row in rows]
        return sorted(certs, key=lambda cert: cert.topic)  # not the database's collation

    async def is_push_cert_stale(self, topic: str, stale_token: str) -> bool:
        row = await self._interact(
            self._one, "SELECT stale_token FROM push_certs WHERE topic = ?", (topic,)
        )
        return row is None or str(row[0]) != stale_token
