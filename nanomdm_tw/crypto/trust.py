"""
Is a device certificate one of ours?  The ``-ca`` / ``-intermediate`` check.

NanoMDM runs Go's ``x509.Certificate.Verify`` with the ``-ca`` roots, the
``-intermediate`` pool and ``ExtKeyUsageClientAuth``.  We build the chain
with OpenSSL (through pyOpenSSL's X509Store) and then apply Go's extended
key usage rule ourselves.  OpenSSL, like Go, accepts the certificates SCEP
servers in the field issue (no EKU at all, no AKI, odd key usages,
non-critical basic constraints); cryptography's ``x509.verification.PolicyBuilder``
enforces the CA/Browser Forum profile and refuses many of them, which would
unenroll working fleets.
"""

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from ..cache import WALL_CLOCK, LRUCache
from ..errors import AuthenticationError, MessageError
from .memo import CertificateMemo

_CLIENT_USAGES = frozenset(
    {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)

# Verdicts kept, and for how long at most (less when the chain expires sooner).
CACHE_SIZE = 10_000
CACHE_TTL = 60.0


def load_pem_certificates(pems: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; none for an empty bundle."""
    if not pems.strip():
        return []
    return x509.load_pem_x509_certificates(pems)


class TrustStore:
    """
    Verifies device certificates against the configured CAs, with a cache.

    A device presents the same certificate on every request, so a success
    is remembered (keyed by the DER) for ``cache_ttl`` seconds, or until the
    earliest notAfter in its chain if sooner.  Failures are not remembered:
    a fixed CA file or clock must take effect at once.  ``clock`` (an
    ``IReactorTime``) is the time both for validity and for the cache.
    """

    def __init__(
        self,
        ca_pems: bytes,
        intermediate_pems: bytes = b"",
        clock=None,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
    ):
        roots = load_pem_certificates(ca_pems)
        if not roots:
            raise ValueError("no CA certificates given")
        self._roots = [crypto.X509.from_cryptography(root) for root in roots]
        self._intermediates = [
            crypto.X509.from_cryptography(cert)
            for cert in load_pem_certificates(intermediate_pems)
        ]
        self._clock = clock or WALL_CLOCK
        self._cache_ttl = cache_ttl
        # Until when each certificate's verdict holds, by its DER (x509.Certificate
        # hashes and compares by it, cheaper than a fingerprint) ...
        self._verified: LRUCache[x509.Certificate, float] = LRUCache(
            cache_size, cache_ttl, self._clock
        )
        # ... and the same verdicts found by object identity first (see memo.py).
        self._recent: CertificateMemo[float] = CertificateMemo(
            cache_size, cache_ttl, self._clock
        )

    @classmethod
    def from_files(
        cls, ca_path: str | Path, intermediate_path: str | Path | None = None, **kw
    ) -> "TrustStore":
        intermediates = b""
        if intermediate_path:
            intermediates = Path(intermediate_path).read_bytes()
        return cls(Path(ca_path).read_bytes(), intermediates, **kw)

    def verify(self, cert: x509.Certificate) -> None:
        """Raise AuthenticationError unless ``cert`` is a valid client cert of ours."""
        if self._recent.get(cert) is not None:
            return
        expires = self._verified.get(cert)
        if expires is None:
            now = self._clock.seconds()
            expires = min(self._verify_chain(cert, now), now + self._cache_ttl)
            self._verified.put(cert, expires, until=expires)
        self._recent.put(cert, expires, until=expires)

    def _verify_chain(self, cert: x509.Certificate, now: float) -> float:
        """Verify at time ``now``; the time until which the result holds."""
        # A store per check: OpenSSL keeps the first verification time set on one.
        store = crypto.X509Store()
        for root in self._roots:
            store.add_cert(root)
        store.set_time(datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
        try:
            candidate = crypto.X509.from_cryptography(cert)
        except crypto.Error:  # cryptography parses lazily; OpenSSL refuses what it cannot read
            raise MessageError("device certificate is malformed")
        context = crypto.X509StoreContext(store, candidate, self._intermediates)
        try:
            chain = [c.to_cryptography() for c in context.get_verified_chain()]
        except crypto.X509StoreContextError as e:
            raise AuthenticationError(f"device certificate not trusted: {e}")
        for link in chain:
            _check_client_usage(link)
        return min(c.not_valid_after_utc for c in chain).timestamp()


def _check_client_usage(cert: x509.Certificate) -> None:
    """Go's rule: a cert with an EKU extension must allow client auth (or any)."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if _CLIENT_USAGES.isdisjoint(usages):
        raise AuthenticationError("device certificate not valid for client auth")
