"""
Detached CMS signatures: what a device puts in the Mdm-Signature header.

A device signs the exact request body with its identity key and sends the
base64 of a SignedData with no encapsulated content and its certificate
included.  Apple devices sign with RSA and SHA-1 or SHA-256; we also accept
SHA-384/512 and ECDSA, which other clients (and our simulator) may use.

The header is attacker-controlled BER: its size is capped before decoding
and every failure of the parser or the check becomes a MessageError (400).
"""

import binascii
import datetime
import hashlib

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import MessageError
from . import cms_der, der
from .content import Content, content_bytes, content_digest
from .signers import HASHES, check_signature, load_certificate, signer_identifiers

MAX_SIGNATURE_HEADER = 64 * 1024
MAX_SIGNATURE_DER = MAX_SIGNATURE_HEADER * 3 // 4



def sign_detached(content: bytes, cert: x509.Certificate, key) -> bytes:
    """
    A DER SignedData over ``content`` (detached) with ``cert`` included.

    Signed attributes contentType, messageDigest and signingTime, SHA-256,
    RSA PKCS#1 v1.5 or ECDSA by the key's type.
    """
    digest = hashlib.sha256(content).digest()
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["data"]},
            {"type": "message_digest", "values": [digest]},
            {
                "type": "signing_time",
                "values": [
                    cms.Time(
                        {"utc_time": datetime.datetime.now(datetime.timezone.utc)}
                    )
                ],
            },
        ]
    )
    to_sign = signed_attrs.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = "sha256_rsa"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = "sha256_ecdsa"
    else:
        raise TypeError("unsupported key type")
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {
                            "issuer": asn1_cert.issuer,
                            "serial_number": asn1_cert.serial_number,
                        }
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm(
                {"algorithm": signature_algorithm}
            ),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data"},
            "certificates": [asn1_cert],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo(
        {"content_type": "signed_data", "content": signed_data}
    ).dump()


def verify_detached(signature_der: bytes, content: Content) -> x509.Certificate:
    """
    Check a detached SignedData over ``content``; return the signer's certificate.

    Like NanoMDM (smallstep's pkcs7 ``Verify`` then ``GetOnlySigner``) this
    proves possession of the key of the included certificate; whether that
    certificate is trusted is the TrustStore's question.
    """
    if len(signature_der) > MAX_SIGNATURE_DER:
        raise MessageError("signature too large")
    try:
        return _verify(signature_der, content)
    except MessageError:
        raise
    except InvalidSignature:
        raise MessageError("signature does not verify")
    except Exception as e:  # asn1crypto raises many types, RecursionError too
        raise MessageError(f"malformed signature: {e.__class__.__name__}")


def decode_mdm_signature(header_value: bytes | str, body: Content) -> x509.Certificate:
    """The device certificate proven by an Mdm-Signature header over ``body``."""
    if isinstance(header_value, str):
        header_value = header_value.encode("ascii", "replace")
    if len(header_value) > MAX_SIGNATURE_HEADER:
        raise MessageError("Mdm-Signature header too large")
    try:
        # strict_mode: the alphabet check in C, not b64decode(validate=True)'s regex.
        signature_der = binascii.a2b_base64(header_value.strip(), strict_mode=True)
    except binascii.Error:
        raise MessageError("Mdm-Signature header is not base64")
    return verify_detached(signature_der, content=body)


def _verify(signature_der: bytes, content: Content) -> x509.Certificate:
    """The strict-DER fast path; anything it does not take goes to asn1crypto."""
    try:
        return cms_der.verify_der(signature_der, content)
    except der.DERError:
        return _verify_general(signature_der, content)


_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


def _verify_general(signature_der: bytes, content: Content) -> x509.Certificate:
    content_info = cms.ContentInfo.load(signature_der, strict=True)
    if content_info["content_type"].native != "signed_data":
        raise MessageError("signature is not CMS SignedData")
    signed_data = content_info["content"]
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise MessageError("signature must have exactly one signer")
    signer_info = signer_infos[0]
    signer_der = _find_signer(signed_data["certificates"], signer_info["sid"])

    hash_name = signer_info["digest_algorithm"]["algorithm"].native
    if hash_name not in HASHES:
        raise MessageError(f"unsupported digest algorithm {hash_name}")
    hash_algorithm = HASHES[hash_name]()

    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, core.Void):
        signed_bytes = content_bytes(content)
    else:
        digest = content_digest(content, hash_name)
        if _message_digest(signed_attrs) != digest:
            raise MessageError("message digest does not match the body")
        # The signature covers the attributes' DER with a SET tag, not the [0] tag.
        signed_bytes = _set_of(signed_attrs.contents)

    cert, public_key = load_certificate(signer_der)
    check_signature(
        public_key,
        signer_info["signature_algorithm"].signature_algo,
        signer_info["signature"].native,
        signed_bytes,
        hash_algorithm,
    )
    return cert


def _find_signer(certificates, sid: cms.SignerIdentifier) -> bytes:
    """The DER of the included certificate that ``sid`` names."""
    candidates = [
        choice.chosen.dump()
        for choice in (certificates if not isinstance(certificates, core.Void) else [])
        if choice.name == "certificate"
    ]
    if sid.name == "issuer_and_serial_number":
        wanted = (sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native)
        for candidate in candidates:
            if signer_identifiers(candidate)[:2] == wanted:
                return candidate
    else:
        key_identifier = sid.chosen.native
        for candidate in candidates:
            if signer_identifiers(candidate)[2] == key_identifier:
                return candidate
    raise MessageError("signer certificate not included in the signature")


def _message_digest(signed_attrs: cms.CMSAttributes) -> bytes:
    # Compare OIDs in dotted form: cheaper than asn1crypto's .native mapping.
    digests = [
        attr["values"][0].native
        for attr in signed_attrs
        if attr["type"].dotted == _MESSAGE_DIGEST and len(attr["values"]) == 1
    ]
    if len(digests) != 1:
        raise MessageError("signed attributes need exactly one message digest")
    return digests[0]


def _set_of(contents: bytes) -> bytes:
    """DER of a SET with these contents."""
    length = len(contents)
    if length < 0x80:
        header = bytes([0x31, length])
    else:
        octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([0x31, 0x80 | len(octets)]) + octets
    return header + contents
