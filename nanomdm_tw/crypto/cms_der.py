"""
Mdm-Signature's fast path: the strict-DER SignedData a device sends.

Every device request carries one; reading it with a general ASN.1 library
costs several times the signature check itself.  This reader takes strict
DER only and raises DERError on anything else, which cms then hands to
asn1crypto: it makes the same checks, and tests hold the two to the same
verdict.

A device's signatures differ only in a few values: the signing time, the
message digest and the signature.  After a signature verifies, its bytes
are kept as a layout; a later signature equal to it in every other byte
(same length, same structure, same certificate) is checked by reading
just those values, which is exactly what a full reading would compare.
"""

from cryptography import x509

from ..cache import LRUCache, memoize
from ..errors import MessageError
from . import der
from .content import Content, content_bytes, content_digest
from .signers import HASHES, check_signature, load_certificate, signer_identifiers

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
_MESSAGE_DIGEST_OID = der.encode_oid("1.2.840.113549.1.9.4")
_SEQUENCE, _SET, _OCTET_STRING, _INTEGER = 0x30, 0x31, 0x04, 0x02
_CONTEXT_0, _CONTEXT_1, _CONTEXT_0_PRIMITIVE = 0xA0, 0xA1, 0x80

# Signer = (certificate, public key, digest name, signature algorithm name)
Signer = tuple[x509.Certificate, object, str, str]


def verify_der(data: bytes, content: Content) -> x509.Certificate:
    """
    The signer's certificate if ``data`` is a valid detached signature over
    ``content``; MessageError or InvalidSignature if not, DERError if it is
    not the strict DER this reads.
    """
    key = data[:_KEY_LENGTH]
    layout = _layouts.get(key)
    if layout is not None and layout.matches(data):
        return layout.verify(data, content)
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
    signer = _signer(
        data[parts[1][1] : parts[-2][3]],
        data[fields[0][1] : fields[2][3]],
        data[algorithm[1] : algorithm[3]],
    )
    cert, public_key, hash_name, signature_algo = signer
    signature = fields[5 if signed_attrs else 4]
    der.expect(signature, _OCTET_STRING)
    if signed_attrs is None:
        signed_bytes = content_bytes(content)
    else:
        digest, unread = _signed_attributes(data, signed_attrs)
        if data[digest[2] : digest[3]] != content_digest(content, hash_name):
            raise MessageError("message digest does not match the body")
        # The signature covers the attributes with a SET tag, not the [0] tag.
        signed_bytes = bytes([_SET]) + data[signed_attrs[1] + 1 : signed_attrs[3]]
    check_signature(
        public_key,
        signature_algo,
        data[signature[2] : signature[3]],
        signed_bytes,
        HASHES[hash_name](),
    )
    if signed_attrs is not None:
        variable = [*unread, digest[2:], signature[2:]]
        _remember(_Layout(data, signer, signed_attrs, digest, signature, variable))
    return cert


def _algorithm(data: bytes, item: der.Element, names: dict[bytes, str]) -> str:
    """The name of an AlgorithmIdentifier's OID; DERError (so: the general path) if unknown."""
    name = names.get(der.oid(data, der.children(data, item, _SEQUENCE)[0]))
    if name is None:
        raise der.DERError("algorithm left to the general path")
    return name


# Signers and layouts remembered, and the bytes of signature they may hold.
_CACHE_SIZE = 4096
_CACHE_BYTES = 32 << 20


@memoize(_CACHE_SIZE, _CACHE_BYTES)
def _signer(head: bytes, signer_fields: bytes, signature_algorithm: bytes) -> Signer:
    """
    What a signature's SignedData fields between version and signerInfos
    (``head``), its SignerInfo's version, sid and digest algorithm
    (``signer_fields``) and its signature algorithm say: who signed, how.
    None of it depends on the body, and a device sends the same bytes every
    time, so this is cached by them.
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
    cert, public_key = load_certificate(signer_der)
    return cert, public_key, hash_name, signature_algo


def _find_signer_der(data: bytes, certificates: list[bytes], sid: der.Element) -> bytes:
    if sid[0] == _SEQUENCE:
        issuer, serial = der.children(data, sid, _SEQUENCE)
        wanted = (der.encoded(data, der.expect(issuer, _SEQUENCE)),
                  int.from_bytes(der.contents(data, serial, _INTEGER), "big", signed=True))
        found = [c for c in certificates if signer_identifiers(c)[:2] == wanted]
    elif sid[0] == _CONTEXT_0_PRIMITIVE:
        key_identifier = data[sid[2] : sid[3]]
        found = [c for c in certificates if signer_identifiers(c)[2] == key_identifier]
    else:
        raise der.DERError("unknown signer identifier")
    if not found:
        raise MessageError("signer certificate not included in the signature")
    return found[0]


def _signed_attributes(
    data: bytes, signed_attrs: der.Element
) -> tuple[der.Element, list[tuple[int, int]]]:
    """
    The message digest (an OCTET STRING element) of the signed attributes,
    and where the values of the others are: nothing reads those.
    """
    digests, unread = [], []
    for attribute in der.children(data, signed_attrs, _CONTEXT_0):
        attribute_type, values = der.children(data, attribute, _SEQUENCE)
        if der.oid(data, attribute_type) == _MESSAGE_DIGEST_OID:
            values = der.children(data, values, _SET)
            if len(values) == 1:
                digests.append(der.expect(values[0], _OCTET_STRING))
        else:
            unread.append(values[2:])
    if len(digests) != 1:
        raise MessageError("signed attributes need exactly one message digest")
    return digests[0], unread


class _Layout:
    """
    A verified signature with signed attributes, as a template: the ranges
    of the values that change from one signature to the next (the other
    attributes' values, which nothing reads; the message digest; the
    signature) and every other byte, which must be the same.  Equal in
    those, another signature reads exactly as this one did but for the
    changing values, which ``verify`` compares as a full reading would.
    """

    __slots__ = ("length", "constant", "signer", "attributes", "digest", "signature")

    def __init__(
        self,
        data: bytes,
        signer: Signer,
        signed_attrs: der.Element,
        digest: der.Element,
        signature: der.Element,
        variable: list[tuple[int, int]],
    ):
        self.length = len(data)
        self.signer = signer
        self.attributes = signed_attrs[1], signed_attrs[3]
        self.digest = digest[2], digest[3]
        self.signature = signature[2], signature[3]
        constant, offset = [], 0
        for start, end in sorted(variable):
            if start > offset:
                constant.append((offset, data[offset:start]))
            offset = end
        if offset < len(data):
            constant.append((offset, data[offset:]))
        self.constant = tuple(constant)

    def matches(self, data: bytes) -> bool:
        return len(data) == self.length and all(
            data.startswith(part, offset) for offset, part in self.constant
        )

    def verify(self, data: bytes, content: Content) -> x509.Certificate:
        cert, public_key, hash_name, signature_algo = self.signer
        if data[self.digest[0] : self.digest[1]] != content_digest(content, hash_name):
            raise MessageError("message digest does not match the body")
        start, end = self.attributes
        check_signature(
            public_key,
            signature_algo,
            data[self.signature[0] : self.signature[1]],
            bytes([_SET]) + data[start + 1 : end],
            HASHES[hash_name](),
        )
        return cert


# Layouts by their first bytes (which include the signer's certificate's
# serial number).  A layout is a function of the signature's bytes, checked
# in full but for the changing values: nothing it holds can go stale, so it
# does not expire (the device's trust and cert auth are checked apart).
_KEY_LENGTH = 192
_layouts: LRUCache[bytes, _Layout] = LRUCache(_CACHE_SIZE, max_bytes=_CACHE_BYTES)


def _remember(layout: _Layout) -> None:
    first = layout.constant[0]
    if first[0] != 0 or len(first[1]) < _KEY_LENGTH:
        return  # a changing value within the key: no layout
    _layouts.put(first[1][:_KEY_LENGTH], layout, weight=layout.length)
