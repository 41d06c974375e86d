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
import functools
import hashlib

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import MessageError
from . import der

MAX_SIGNATURE_HEADER = 64 * 1024
MAX_SIGNATURE_DER = MAX_SIGNATURE_HEADER * 3 // 4

_HASHES = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


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


def verify_detached(signature_der: bytes, content: bytes) -> x509.Certificate:
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


def decode_mdm_signature(header_value: bytes | str, body: bytes) -> x509.Certificate:
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


def _verify(signature_der: bytes, content: bytes) -> x509.Certificate:
    """The strict-DER fast path; anything it does not take goes to asn1crypto."""
    try:
        return _verify_der(signature_der, content)
    except der.DERError:
        return _verify_general(signature_der, content)


_SIGNED_DATA = der.encode_oid("1.2.840.113549.1.7.2")
_DIGEST_NAMES = {
    der.encode_oid(dotted): name
    for dotted, name in [
        ("1.3.14.3.2.26", "sha1"),
        ("2.16.840.1.101.3.4.2.1", "sha256"),
        ("2.16.840.1.101.3.4.2.2", "sha384"),
        ("2.16.840.1.101.3.4.2.3", "sha512"),
    ]
}
# What asn1crypto's SignedDigestAlgorithm.signature_algo answers for these OIDs.
_SIGNATURE_ALGOS = {
    der.encode_oid(dotted): name
    for dotted, name in [
        ("1.2.840.113549.1.1.1", "rsassa_pkcs1v15"),  # rsaEncryption, as Apple devices send
        ("1.2.840.113549.1.1.5", "rsassa_pkcs1v15"),
        ("1.2.840.113549.1.1.11", "rsassa_pkcs1v15"),
        ("1.2.840.113549.1.1.12", "rsassa_pkcs1v15"),
        ("1.2.840.113549.1.1.13", "rsassa_pkcs1v15"),
        ("1.2.840.10045.4", "ecdsa"),
        ("1.2.840.10045.4.1", "ecdsa"),
        ("1.2.840.10045.4.3.2", "ecdsa"),
        ("1.2.840.10045.4.3.3", "ecdsa"),
        ("1.2.840.10045.4.3.4", "ecdsa"),
    ]
}
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_MESSAGE_DIGEST_OID = der.encode_oid(_MESSAGE_DIGEST)
_SEQUENCE, _SET, _OCTET_STRING, _INTEGER = 0x30, 0x31, 0x04, 0x02
_CONTEXT_0, _CONTEXT_1, _CONTEXT_0_PRIMITIVE = 0xA0, 0xA1, 0x80


def _algorithm(data: bytes, item: der.Element, names: dict[bytes, str]) -> str:
    """The name of an AlgorithmIdentifier's OID; DERError (so: the general path) if unknown."""
    name = names.get(der.oid(data, der.children(data, item, _SEQUENCE)[0]))
    if name is None:
        raise der.DERError("algorithm left to the general path")
    return name


def _verify_der(data: bytes, content: bytes) -> x509.Certificate:
    """The same checks as _verify_general, reading strict DER directly."""
    content_info = der.read(data)
    if content_info[3] != len(data):
        raise der.DERError("trailing data")
    content_type, wrapped = der.children(data, content_info, _SEQUENCE)
    if der.oid(data, content_type) != _SIGNED_DATA:
        raise der.DERError("not SignedData")
    (signed_data,) = der.children(data, wrapped, _CONTEXT_0)
    parts = der.children(data, signed_data, _SEQUENCE)
    if len(parts) < 4:
        raise der.DERError("short SignedData")
    der.expect(parts[0], _INTEGER)
    signer_infos = der.children(data, parts[-1], _SET)
    if len(signer_infos) != 1:
        raise MessageError("signature must have exactly one signer")
    fields = der.children(data, signer_infos[0], _SEQUENCE)
    if len(fields) < 5:
        raise der.DERError("short SignerInfo")
    signed_attrs = fields[3] if fields[3][0] == _CONTEXT_0 else None
    algorithm = fields[4] if signed_attrs else fields[3]
    # What a device repeats in every signature, read once: see _signer.
    cert, public_key, hash_name, signature_algo = _signer(
        data[parts[1][1] : parts[-2][3]],
        data[fields[0][1] : fields[2][3]],
        data[algorithm[1] : algorithm[3]],
    )
    signature = der.contents(data, fields[5 if signed_attrs else 4], _OCTET_STRING)
    if signed_attrs is None:
        signed_bytes = content
    else:
        if _message_digest_der(data, signed_attrs) != hashlib.new(hash_name, content).digest():
            raise MessageError("message digest does not match the body")
        # The signature covers the attributes with a SET tag, not the [0] tag.
        signed_bytes = bytes([_SET]) + data[signed_attrs[1] + 1 : signed_attrs[3]]
    _check_signature(public_key, signature_algo, signature, signed_bytes, _HASHES[hash_name]())
    return cert


@functools.lru_cache(maxsize=4096)
def _signer(
    head: bytes, signer_fields: bytes, signature_algorithm: bytes
) -> tuple[x509.Certificate, object, str, str]:
    """
    (certificate, public key, digest, signature algorithm) of a signature whose
    SignedData fields between version and signerInfos are ``head``, whose
    SignerInfo begins with ``signer_fields`` (version, sid, digest algorithm)
    and names ``signature_algorithm``.  None of it depends on the body, and a
    device sends the same bytes every time, so this is keyed by them.
    """
    parts = der.elements(head)
    if len(parts) < 2:
        raise der.DERError("short SignedData")
    for algorithm in der.children(head, parts[0], _SET):
        der.oid(head, der.children(head, algorithm, _SEQUENCE)[0])
    der.oid(head, der.children(head, parts[1], _SEQUENCE)[0])
    index, certificates = 2, []
    if index < len(parts) and parts[index][0] == _CONTEXT_0:
        certificates = [
            der.encoded(head, c)
            for c in der.children(head, parts[index], _CONTEXT_0)
            if c[0] == _SEQUENCE
        ]
        index += 1
    if index < len(parts) and parts[index][0] == _CONTEXT_1:
        index += 1  # CRLs: not used
    if index != len(parts):
        raise der.DERError("unexpected SignedData fields")
    fields = der.elements(signer_fields)
    hash_name = _algorithm(signer_fields, fields[2], _DIGEST_NAMES)
    signature_algo = _algorithm(
        signature_algorithm, der.read(signature_algorithm), _SIGNATURE_ALGOS
    )
    signer_der = _find_signer_der(signer_fields, certificates, fields[1])
    cert, public_key = _load_certificate(signer_der)
    return cert, public_key, hash_name, signature_algo


def _find_signer_der(data: bytes, certificates: list[bytes], sid: der.Element) -> bytes:
    if sid[0] == _SEQUENCE:
        issuer, serial = der.children(data, sid, _SEQUENCE)
        wanted = (der.encoded(data, der.expect(issuer, _SEQUENCE)),
                  int.from_bytes(der.contents(data, serial, _INTEGER), "big", signed=True))
        found = [c for c in certificates if _signer_identifiers(c)[:2] == wanted]
    elif sid[0] == _CONTEXT_0_PRIMITIVE:
        key_identifier = data[sid[2] : sid[3]]
        found = [c for c in certificates if _signer_identifiers(c)[2] == key_identifier]
    else:
        raise der.DERError("unknown signer identifier")
    if not found:
        raise MessageError("signer certificate not included in the signature")
    return found[0]


def _message_digest_der(data: bytes, signed_attrs: der.Element) -> bytes:
    digests = []
    for attribute in der.children(data, signed_attrs, _CONTEXT_0):
        attribute_type, values = der.children(data, attribute, _SEQUENCE)
        if der.oid(data, attribute_type) == _MESSAGE_DIGEST_OID:
            values = der.children(data, values, _SET)
            if len(values) == 1:
                digests.append(der.contents(data, values[0], _OCTET_STRING))
    if len(digests) != 1:
        raise MessageError("signed attributes need exactly one message digest")
    return digests[0]


def _verify_general(signature_der: bytes, content: bytes) -> x509.Certificate:
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
    if hash_name not in _HASHES:
        raise MessageError(f"unsupported digest algorithm {hash_name}")
    hash_algorithm = _HASHES[hash_name]()

    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, core.Void):
        signed_bytes = content
    else:
        digest = hashlib.new(hash_name, content).digest()
        if _message_digest(signed_attrs) != digest:
            raise MessageError("message digest does not match the body")
        # The signature covers the attributes' DER with a SET tag, not the [0] tag.
        signed_bytes = _set_of(signed_attrs.contents)

    cert, public_key = _load_certificate(signer_der)
    _check_signature(
        public_key,
        signer_info["signature_algorithm"].signature_algo,
        signer_info["signature"].native,
        signed_bytes,
        hash_algorithm,
    )
    return cert


@functools.lru_cache(maxsize=4096)
def _load_certificate(der: bytes) -> tuple[x509.Certificate, object]:
    """Parsed once per device: the same identity signs every request it sends."""
    cert = x509.load_der_x509_certificate(der)
    return cert, cert.public_key()


@functools.lru_cache(maxsize=4096)
def _signer_identifiers(der: bytes) -> tuple[bytes, int, bytes | None]:
    """(issuer DER, serial, key identifier) of a certificate, read once per certificate."""
    cert = asn1_x509.Certificate.load(der)
    return cert.issuer.dump(), cert.serial_number, cert.key_identifier


def _find_signer(certificates, sid: cms.SignerIdentifier) -> bytes:
    """The DER of the included certificate that ``sid`` names."""
    candidates = [
        choice.chosen.dump()
        for choice in (certificates if not isinstance(certificates, core.Void) else [])
        if choice.name == "certificate"
    ]
    if sid.name == "issuer_and_serial_number":
        wanted = (sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native)
        for der in candidates:
            if _signer_identifiers(der)[:2] == wanted:
                return der
    else:
        key_identifier = sid.chosen.native
        for der in candidates:
            if _signer_identifiers(der)[2] == key_identifier:
                return der
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


def _check_signature(public_key, signature_algo, signature, data, hash_algorithm):
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
