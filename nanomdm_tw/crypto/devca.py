"""
A development certificate authority.

Real deployments get device identities from a SCEP or ACME server and push
certificates from Apple.  For tests, the simulator and local trials this CA
issues certificates of the same shape, so the rest of the server runs the
same code paths against them.
"""

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"

# Apple's MDM push certificates name their topic in the subject's UID attribute.
UID_OID = NameOID.USER_ID

_CA_LIFETIME = datetime.timedelta(days=3650)
_LEAF_LIFETIME = datetime.timedelta(days=365)
# Backdate so a clock that is slightly behind still accepts a fresh certificate.
_BACKDATE = datetime.timedelta(minutes=5)


def generate_key(key_type: str = "rsa") -> PrivateKey:
    """RSA 2048 (what SCEP clients on Apple devices use) or EC P-256."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {key_type!r}")


def key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, as NanoMDM's push cert upload expects."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_cert_and_key(
    cert: x509.Certificate,
    key: PrivateKey,
    cert_path: str | Path,
    key_path: str | Path,
) -> None:
    """Write a certificate and its key as PEM; only the owner may read the key."""
    Path(cert_path).write_bytes(cert_pem(cert))
    _write_private(Path(key_path), key_pem(key))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class DevelopmentCA:
    """A self-signed CA certificate and its key; issues device and push certs."""

    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def create(
        cls, common_name: str = "nanomdm-tw development CA", key_type: str = "rsa"
    ) -> "DevelopmentCA":
        key = generate_key(key_type)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .add_extension(ski, False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, folder: str | Path) -> "DevelopmentCA":
        folder = Path(folder)
        cert = x509.load_pem_x509_certificate((folder / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key(
            (folder / CA_KEY_FILE).read_bytes(), password=None
        )
        return cls(cert, key)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_cert_and_key(
            self.cert, self.key, folder / CA_CERT_FILE, folder / CA_KEY_FILE
        )

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    def issue(
        self,
        subject: x509.Name,
        public_key,
        extended_key_usage: list[x509.ObjectIdentifier] | None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        ca: bool = False,
    ) -> x509.Certificate:
        """
        Sign a certificate for ``public_key``.

        Tests use the optional arguments to make expired certificates,
        intermediates and certificates with the wrong usage.
        """
        now = _now()
        not_before = not_before or now - _BACKDATE
        not_after = not_after or now + _LEAF_LIFETIME
        is_rsa_leaf = not ca and isinstance(public_key, rsa.RSAPublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=is_rsa_leaf,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()
                ),
                False,
            )
        )
        if extended_key_usage is not None:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(extended_key_usage), False
            )
        return builder.sign(self.key, hashes.SHA256())

    def issue_device_identity(
        self, common_name: str, key_type: str = "rsa"
    ) -> tuple[x509.Certificate, PrivateKey]:
        """A device identity as SCEP issues it: client auth, digital signature."""
        key = generate_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = self.issue(
            subject, key.public_key(), [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        return cert, key

    def issue_push_certificate(
        self, topic: str
    ) -> tuple[x509.Certificate, PrivateKey]:
        """A certificate shaped like Apple's MDM push certificate for ``topic``."""
        key = generate_key("rsa")
        subject = x509.Name(
            [
                x509.NameAttribute(UID_OID, topic),
                # Apple's CN is "APSP:" and the topic's last part, a UUID.
                x509.NameAttribute(
                    NameOID.COMMON_NAME, ("APSP:" + topic.rsplit(".", 1)[-1])[:64]
                ),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )
        cert = self.issue(
            subject, key.public_key(), [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        return cert, key

    def issue_intermediate(self, common_name: str) -> "DevelopmentCA":
        """A subordinate CA signed by this one, for chains with an intermediate."""
        key = generate_key("rsa")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = self.issue(subject, key.public_key(), None, ca=True)
        return DevelopmentCA(cert, key)
