"""
Reading an uploaded APNs push certificate: PEM certificate + unencrypted key.

The topic an MDM push certificate serves is its subject's UID
(``com.apple.mgmt.External.…``); pushes for that topic use this pair as
their TLS client certificate.
"""

import datetime
import json
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import MessageError
from .devca import UID_OID

# NanoMDM accepts a push certificate only for a topic with this prefix.
MDM_TOPIC_PREFIX = "com.apple.mgmt"

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


@dataclass(frozen=True)
class PushCertificate:
    topic: str
    cert_pem: bytes
    key_pem: bytes
    not_after: datetime.datetime


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_push_certificate(body: bytes) -> PushCertificate:
    """The certificate and key in ``body`` (either order), checked to be a pair."""
    # Blocks pasted together without a newline ("-----END ...----------BEGIN") still count.
    body = body.replace(b"----------", b"-----\n-----")
    cert_pem = key_pem = None
    for block in _PEM_BLOCK.finditer(body):
        kind = block.group(1)
        if kind == b"CERTIFICATE":
            cert_pem = block.group(0) + b"\n"
        elif kind == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block.group(0):
            raise MessageError("private key PEM appears to be encrypted")
        elif kind.endswith(b"PRIVATE KEY"):
            key_pem = block.group(0) + b"\n"
        else:
            raise MessageError(f"unrecognized PEM type: {kind.decode()!r}")
    if cert_pem is None:
        raise MessageError("no PEM certificate in the body")
    if key_pem is None:
        raise MessageError("no PEM private key in the body")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise MessageError(f"cannot read the certificate: {e}")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise MessageError(f"cannot read the private key: {e}")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise MessageError("private key does not match the certificate")
    uids = cert.subject.get_attributes_for_oid(UID_OID)
    if not uids or not uids[0].value:
        raise MessageError("certificate subject has no UID (topic)")
    topic = str(uids[0].value)
    if not topic.startswith(MDM_TOPIC_PREFIX):
        # NanoMDM's words: a push certificate for another service is no MDM topic.
        raise MessageError(f"invalid APNs Topic: {json.dumps(topic)}")
    return PushCertificate(
        topic=topic,
        cert_pem=cert_pem,
        key_pem=key_pem,
        not_after=cert.not_valid_after_utc,
    )


def certificate_not_after(cert_pem: bytes) -> datetime.datetime:
    """When a stored push certificate expires (the key is not read: a listing is cheap)."""
    try:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
    except ValueError as e:
        raise MessageError(f"cannot read the certificate: {e}") from None
