"""
Certificate authentication in NanoMDM's table ``cert_auth_associations``:
which identity certificate (by SHA-256, lower-case hex) belongs to which
enrollment.
"""

from typing import Any

from twisted.internet.defer import Deferred


class SQLCertAuth:
    """The cert-auth role of SQLStorage, over SQLBase's interactions."""

    async def _exists(self, query: str, *args: Any) -> bool:
        return await self._interact(self._one, query, args) is not None

    async def has_cert_hash(self, cert_hash: str) -> bool:
        return await self._exists(
            "SELECT 1 FROM cert_auth_associations WHERE sha256 = ? LIMIT 1",
            cert_hash.lower(),
        )

    async def enrollment_has_cert_hash(self, enrollment_id: str) -> bool:
        return await self._exists(
            "SELECT 1 FROM cert_auth_associations WHERE id = ? LIMIT 1", enrollment_id
        )

    async def is_cert_hash_associated(self, enrollment_id: str, cert_hash: str) -> bool:
        return await self._exists(
            "SELECT 1 FROM cert_auth_associations WHERE id = ? AND sha256 = ?",
            enrollment_id,
            cert_hash.lower(),
        )

    def associate_cert_hash(self, enrollment_id: str, cert_hash: str) -> Deferred:
        query = self.dialect.upsert(
            "cert_auth_associations", {"id": "?", "sha256": "?"}, key=("id", "sha256")
        )
        return self._interact(self._execute, query, (enrollment_id, cert_hash.lower()))

    async def enrollment_id_for_cert_hash(self, cert_hash: str) -> str | None:
        row = await self._interact(
            self._one,
            "SELECT id FROM cert_auth_associations WHERE sha256 = ? LIMIT 1",
            (cert_hash.lower(),),
        )
        return None if row is None else row[0]
