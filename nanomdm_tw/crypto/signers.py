"""
The signer's side of a CMS signature check, shared by both readers of
Mdm-Signature (cms_der's strict-DER fast path and cms's general one): the
signer's certificate and key, parsed once per certificate, and the check.
"""

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..cache import memoize
from ..errors import MessageError

HASHES = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Certificates remembered, and the bytes of DER at most (a signature carries
# whatever certificates its sender likes, up to the 1 MiB header limit).
CACHE_SIZE = 4096
CACHE_BYTES = 16 << 20


@memoize(CACHE_SIZE, CACHE_BYTES)
def load_certificate(der: bytes) -> tuple[x509.Certificate, object]:
    """Parsed once per device: the same identity signs every request it sends."""
    cert = x509.load_der_x509_certificate(der)
    return cert, cert.public_key()


@memoize(CACHE_SIZE, CACHE_BYTES)
def signer_identifiers(der: bytes) -> tuple[bytes, int, bytes | None]:
    """(issuer DER, serial, key identifier) of a certificate, read once per certificate."""
    cert = asn1_x509.Certificate.load(der)
    return cert.issuer.dump(), cert.serial_number, cert.key_identifier


def check_signature(public_key, signature_algo, signature, data, hash_algorithm) -> None:
    """InvalidSignature unless ``signature`` over ``data`` is by ``public_key``."""
    if signature_algo == "rsassa_pkcs1v15" and isinstance(
        public_key, rsa.RSAPublicKey
    ):
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif signature_algo == "ecdsa" and isinstance(
        public_key, ec.EllipticCurvePublicKey
    ):
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    else:
        raise MessageError(f"unsupported signature algorithm {signature_algo}")
