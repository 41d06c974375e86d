"""
Values remembered per certificate object, found by identity.

Hashing an ``x509.Certificate`` (by its DER) costs more than the rest of a
cache lookup, and a device request looks its certificate up more than once
(trust, cert hash).  The signature parser hands out one object per
certificate (it caches them by DER), so identity finds it; callers keep a
cache keyed by the certificate's content behind this for the other objects.
"""

from typing import Generic, TypeVar

from cryptography import x509

from ..cache import FOREVER, LRUCache

Value = TypeVar("Value")


class CertificateMemo(Generic[Value]):
    """
    An LRUCache (same ``size``, ``ttl`` and ``clock``) keyed by certificate objects.

    An entry keeps its certificate alive, so no other object can take its
    ``id()`` while the entry is here; a lookup also checks it is the same object.
    """

    __slots__ = ("_entries",)

    def __init__(self, size: int, ttl: float | None = None, clock=None):
        self._entries: LRUCache[int, tuple[x509.Certificate, Value]] = LRUCache(
            size, ttl, clock
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, cert: x509.Certificate) -> Value | None:
        entry = self._entries.get(id(cert))
        if entry is None or entry[0] is not cert:
            return None
        return entry[1]

    def put(self, cert: x509.Certificate, value: Value, until: float = FOREVER) -> None:
        self._entries.put(id(cert), (cert, value), until)
