"""
Values remembered per certificate object, found by identity.

Hashing an ``x509.Certificate`` (by its DER) costs more than the rest of a
cache lookup, and a device request looks its certificate up more than once
(trust, cert hash).  The signature parser hands out one object per
certificate (it caches them by DER), so identity finds it; callers keep a
cache keyed by the certificate's content behind this for the other objects.
"""

from collections import OrderedDict
from typing import Generic, TypeVar

from cryptography import x509

Value = TypeVar("Value")


class CertificateMemo(Generic[Value]):
    """
    A bounded map from certificate objects to values (oldest out first).

    An entry keeps its certificate alive, so no other object can take its
    ``id()`` while the entry is here; a lookup also checks it is the same object.
    """

    def __init__(self, size: int):
        self._entries: OrderedDict[int, tuple[x509.Certificate, Value]] = OrderedDict()
        self._size = size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, cert: x509.Certificate) -> Value | None:
        entry = self._entries.get(id(cert))
        if entry is None or entry[0] is not cert:
            return None
        return entry[1]

    def put(self, cert: x509.Certificate, value: Value) -> None:
        self._entries[id(cert)] = (cert, value)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, cert: x509.Certificate) -> None:
        entry = self._entries.get(id(cert))
        if entry is not None and entry[0] is cert:
            del self._entries[id(cert)]
