"""
Which certificate a request proves, and whether we trust it.

This is NanoMDM's certificate middleware chain in one object: extract the
certificate (``-cert-header`` or ``Mdm-Signature``), then verify it against
``-ca`` when one is configured.
"""

import functools
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..errors import MessageError
from .certheader import certificate_from_header
from .cms import decode_mdm_signature
from .content import Content
from .memo import CertificateMemo
from .trust import TrustStore

MDM_SIGNATURE_HEADER = b"Mdm-Signature"


def cert_hash(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER: the key of cert auth associations."""
    value = _recent_hashes.get(cert)
    if value is None:
        value = _cert_hash(cert)
        _recent_hashes.put(cert, value)
    return value


_recent_hashes: CertificateMemo[str] = CertificateMemo(4096)


@functools.lru_cache(maxsize=65536)
def _cert_hash(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


class DeviceIdentity:
    def __init__(self, trust: TrustStore | None, cert_header: str | None):
        self._trust = trust
        self._cert_header = cert_header.encode("ascii") if cert_header else None

    @property
    def checks_body_signature(self) -> bool:
        """Mdm-Signature mode: the whole body is hashed (not so behind a cert header)."""
        return self._cert_header is None

    def certificate(
        self, headers_get: Callable[[bytes], bytes | None], body: Content
    ) -> x509.Certificate:
        """
        The verified device certificate of a request.

        MessageError (400) when it is missing or its signature is bad,
        AuthenticationError (403) when it does not chain to our CAs.
        """
        if self._cert_header:
            value = headers_get(self._cert_header)
            if not value:
                raise MessageError("missing certificate header")
            cert = certificate_from_header(value)
        else:
            value = headers_get(MDM_SIGNATURE_HEADER)
            if not value:
                raise MessageError("missing Mdm-Signature header")
            cert = decode_mdm_signature(value, body)
        if self._trust is not None:
            self._trust.verify(cert)
        return cert
