"""
Device identity: the development CA, Mdm-Signature, the certificate header and trust.

Hostile inputs (truncated, garbage, huge, deeply nested) must come back as
MessageError (400) at once, never as a 500 or a hang.
"""

import base64
import datetime
import hashlib
import random
import stat
import time
from urllib.parse import quote

import pytest
from asn1crypto import algos, cms as asn1_cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.task import Clock

from nanomdm_tw.crypto import cms, cms_der
from nanomdm_tw.crypto import der as der_reader
from nanomdm_tw.crypto.certheader import certificate_from_header
from nanomdm_tw.crypto.cms import decode_mdm_signature, sign_detached, verify_detached
from nanomdm_tw.crypto.devca import UID_OID, DevelopmentCA, write_cert_and_key
from nanomdm_tw.crypto.identity import DeviceIdentity, cert_hash
from nanomdm_tw.crypto.memo import CertificateMemo
from nanomdm_tw.crypto.trust import TrustStore
from nanomdm_tw.errors import AuthenticationError, MessageError

BODY = b"<?xml version='1.0'?><plist><dict><key>MessageType</key></dict></plist>"
# Hostile input must be refused well inside one request's budget.
QUICK_SECONDS = 1.0


@pytest.fixture(scope="module")
def ca() -> DevelopmentCA:
    return DevelopmentCA.create()


@pytest.fixture(scope="module")
def identity(ca):
    return ca.issue_device_identity("device-1")


@pytest.fixture(scope="module")
def ec_identity(ca):
    return ca.issue_device_identity("device-ec", key_type="ec")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def tlv(tag: int, contents: bytes) -> bytes:
    """A DER tag-length-value, for building hostile input by hand."""
    length = len(contents)
    if length < 0x80:
        return bytes([tag, length]) + contents
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + contents


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def resign(
    signature_der: bytes,
    key,
    hash_name: str,
    with_attributes: bool = True,
    by_key_identifier: bool = False,
) -> bytes:
    """
    Re-sign a sign_detached() result another way a device may sign.

    Apple devices use RSA with SHA-1 or SHA-256; other signers omit the
    signed attributes or name the signer by subject key identifier.
    """
    hash_algorithm = getattr(hashes, hash_name.upper())()
    content_info = asn1_cms.ContentInfo.load(signature_der)
    signed_data = content_info["content"]
    signer_info = signed_data["signer_infos"][0]
    cert = signed_data["certificates"][0].chosen
    attributes = asn1_cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["data"]},
            {
                "type": "message_digest",
                "values": [hashlib.new(hash_name, BODY).digest()],
            },
        ]
    )
    signed = attributes.dump() if with_attributes else BODY
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed, padding.PKCS1v15(), hash_algorithm)
        algorithm = "rsassa_pkcs1v15"
    else:
        signature = key.sign(signed, ec.ECDSA(hash_algorithm))
        algorithm = "ecdsa"
    sid = {"issuer_and_serial_number": signer_info["sid"].chosen}
    if by_key_identifier:
        sid = {"subject_key_identifier": cert.key_identifier}
    new_signer_info = {
        "version": "v3" if by_key_identifier else "v1",
        "sid": sid,
        "digest_algorithm": {"algorithm": hash_name},
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}),
        "signature": signature,
    }
    if with_attributes:
        new_signer_info["signed_attrs"] = attributes
    return asn1_cms.ContentInfo(
        {
            "content_type": "signed_data",
            "content": {
                "version": "v1",
                "digest_algorithms": [{"algorithm": hash_name}],
                "encap_content_info": {"content_type": "data"},
                "certificates": [cert],
                "signer_infos": [new_signer_info],
            },
        }
    ).dump()


def assert_refused_quickly(signature: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(MessageError) as refused:
        verify_detached(signature, BODY)
    assert refused.value.status == 400
    assert time.perf_counter() - started < QUICK_SECONDS


# The development CA


def test_ca_save_and_load(ca, tmp_path):
    ca.save(tmp_path / "ca")
    loaded = DevelopmentCA.load(tmp_path / "ca")
    assert loaded.cert == ca.cert
    assert loaded.cert_pem == ca.cert_pem
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    cert, key = loaded.issue_device_identity("after-load")
    cert.verify_directly_issued_by(ca.cert)


def test_device_identity_is_a_client_cert(ca, identity):
    cert, key = identity
    cert.verify_directly_issued_by(ca.cert)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature


def test_push_certificate_names_its_topic_in_uid(ca, tmp_path):
    topic = "com.apple.mgmt.External.2d3c1d8e-1f7f-4b5a-9a0e-6f2c1f0e9a11"
    cert, key = ca.issue_push_certificate(topic)
    assert [a.value for a in cert.subject.get_attributes_for_oid(UID_OID)] == [topic]
    write_cert_and_key(cert, key, tmp_path / "push.pem", tmp_path / "push.key")
    assert x509.load_pem_x509_certificate((tmp_path / "push.pem").read_bytes()) == cert
    assert stat.S_IMODE((tmp_path / "push.key").stat().st_mode) == 0o600


# Mdm-Signature


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_sign_verify_roundtrip(kind, identity, ec_identity):
    cert, key = identity if kind == "rsa" else ec_identity
    signature = sign_detached(BODY, cert, key)
    assert verify_detached(signature, BODY) == cert
    header = base64.b64encode(signature)
    assert decode_mdm_signature(header, BODY) == cert
    assert decode_mdm_signature(header.decode(), BODY) == cert


def test_signature_is_detached_with_signed_attributes(identity):
    cert, key = identity
    content_info = asn1_cms.ContentInfo.load(sign_detached(BODY, cert, key))
    signed_data = content_info["content"]
    assert signed_data["encap_content_info"]["content"].native is None
    signer_info = signed_data["signer_infos"][0]
    assert signer_info["digest_algorithm"]["algorithm"].native == "sha256"
    types = {a["type"].native for a in signer_info["signed_attrs"]}
    assert types == {"content_type", "message_digest", "signing_time"}


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("with_attributes", [True, False])
def test_verify_the_ways_devices_sign(identity, hash_name, with_attributes):
    cert, key = identity
    signature = resign(sign_detached(BODY, cert, key), key, hash_name, with_attributes)
    assert verify_detached(signature, BODY) == cert


def test_verify_signer_by_subject_key_identifier(ec_identity):
    cert, key = ec_identity
    signature = resign(
        sign_detached(BODY, cert, key), key, "sha256", by_key_identifier=True
    )
    assert verify_detached(signature, BODY) == cert


@pytest.mark.parametrize("with_attributes", [True, False])
def test_tampered_body_refused(identity, with_attributes):
    cert, key = identity
    signature = resign(sign_detached(BODY, cert, key), key, "sha1", with_attributes)
    with pytest.raises(MessageError):
        verify_detached(signature, BODY + b" ")


def test_signature_by_another_key_refused(ca, identity):
    cert, _ = identity
    _, other_key = ca.issue_device_identity("device-2")
    with pytest.raises(MessageError):
        verify_detached(sign_detached(BODY, cert, other_key), BODY)


def test_truncated_signature_refused(identity):
    signature = sign_detached(BODY, *identity)
    for length in (0, 1, 10, len(signature) // 2, len(signature) - 1):
        assert_refused_quickly(signature[:length])


def test_garbage_signature_refused():
    assert_refused_quickly(bytes(range(256)) * 8)
    assert_refused_quickly(b"\x30\x84\xff\xff\xff\xff")


def test_huge_header_refused_before_decoding():
    header = b"A" * (64 * 1024 + 4)
    started = time.perf_counter()
    with pytest.raises(MessageError, match="too large"):
        decode_mdm_signature(header, BODY)
    assert time.perf_counter() - started < QUICK_SECONDS


def test_not_base64_header_refused():
    with pytest.raises(MessageError, match="base64"):
        decode_mdm_signature(b"not base64 at all!", BODY)


def test_deeply_nested_signature_refused():
    nested = b""
    for _ in range(10000):
        nested = tlv(0x30, nested)
    signed_data_oid = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
    assert_refused_quickly(nested)
    assert_refused_quickly(tlv(0x30, signed_data_oid + tlv(0xA0, nested)))
    # Indefinite lengths, the BER form that recursive parsers trip on.
    indefinite = b"\x30\x80" * 10000 + b"\x00\x00" * 10000
    assert_refused_quickly(indefinite)
    assert_refused_quickly(
        b"\x30\x80" + signed_data_oid + b"\xa0\x80" + indefinite + b"\x00\x00" * 2
    )


def test_deeply_nested_certificate_refused(identity):
    """A well-formed SignedData whose certificate is a nest of SEQUENCEs."""
    signed_data = asn1_cms.ContentInfo.load(sign_detached(BODY, *identity))["content"]
    nested = b""
    for _ in range(10000):
        nested = tlv(0x30, nested)
    signed_data_der = tlv(
        0x30,
        signed_data["version"].dump()
        + signed_data["digest_algorithms"].dump()
        + signed_data["encap_content_info"].dump()
        + tlv(0xA0, nested)
        + signed_data["signer_infos"].dump(),
    )
    signed_data_oid = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
    hostile = tlv(0x30, signed_data_oid + tlv(0xA0, signed_data_der))
    assert len(hostile) < 48 * 1024
    assert_refused_quickly(hostile)


# The certificate header


def test_rfc9440_certificate_header(identity):
    cert, _ = identity
    value = b":" + base64.b64encode(der(cert)) + b":"
    assert certificate_from_header(value) == cert
    assert certificate_from_header(value.decode()) == cert


def nginx_escape(pem: bytes) -> str:
    """$ssl_client_escaped_cert: nginx escapes as a URI component."""
    return quote(pem, safe="-_.!~*'()")


def test_nginx_escaped_certificate_header(identity):
    cert, _ = identity
    pem = cert.public_bytes(Encoding.PEM)
    escaped = nginx_escape(pem)
    assert escaped.startswith("-----BEGIN%20CERTIFICATE-----%0A")
    assert certificate_from_header(escaped) == cert
    assert certificate_from_header(escaped.encode()) == cert


def test_unescaped_plus_stays_plus(ca):
    """Some proxies leave '+' as is; it is base64, not an escaped space."""
    for attempt in range(50):
        cert, _ = ca.issue_device_identity(f"plus-{attempt}")
        pem = cert.public_bytes(Encoding.PEM)
        if b"+" in pem:
            break
    else:
        pytest.fail("no certificate with '+' in its PEM")
    escaped = quote(pem, safe="+")
    assert "+" in escaped
    assert certificate_from_header(escaped) == cert


@pytest.mark.parametrize(
    "value",
    [b"", b":", b"::", b":!!!:", b":QUJD:", b":QUJD", b"garbage", b"%ZZ", b"A" * 70000],
)
def test_bad_certificate_header_refused(value):
    with pytest.raises(MessageError):
        certificate_from_header(value)


# Trust


@pytest.fixture(scope="module")
def intermediate(ca) -> DevelopmentCA:
    return ca.issue_intermediate("nanomdm-tw intermediate")


@pytest.fixture
def trust(ca, intermediate) -> TrustStore:
    return TrustStore(ca.cert_pem, intermediate.cert_pem)


def issue(ca, usages, not_before=None, not_after=None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return ca.issue(name("device"), key.public_key(), usages, not_before, not_after)


def test_trust_good_chain(trust, identity):
    trust.verify(identity[0])


def test_trust_chain_via_intermediate(trust, intermediate, ca):
    cert, _ = intermediate.issue_device_identity("device-via-intermediate")
    trust.verify(cert)
    with pytest.raises(AuthenticationError):
        TrustStore(ca.cert_pem).verify(cert)


def test_trust_refuses_another_ca(trust):
    stranger, _ = DevelopmentCA.create("someone else").issue_device_identity("x")
    with pytest.raises(AuthenticationError) as refused:
        trust.verify(stranger)
    assert refused.value.status == 403


def test_trust_refuses_expired(trust, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = issue(
        ca,
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        now - datetime.timedelta(days=30),
        now - datetime.timedelta(days=1),
    )
    with pytest.raises(AuthenticationError):
        trust.verify(expired)


def test_trust_refuses_server_auth_only(trust, ca):
    with pytest.raises(AuthenticationError, match="client auth"):
        trust.verify(issue(ca, [ExtendedKeyUsageOID.SERVER_AUTH]))


@pytest.mark.parametrize(
    "usages",
    [
        None,
        [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    ],
)
def test_trust_accepts_what_go_accepts(trust, ca, usages):
    """Go's verify with ExtKeyUsageClientAuth takes no EKU, any, or client auth."""
    trust.verify(issue(ca, usages))


def test_trust_from_files(ca, intermediate, tmp_path):
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "int.pem").write_bytes(intermediate.cert_pem)
    cert, _ = intermediate.issue_device_identity("from-files")
    TrustStore.from_files(tmp_path / "ca.pem", tmp_path / "int.pem").verify(cert)
    with pytest.raises(AuthenticationError):
        TrustStore.from_files(tmp_path / "ca.pem").verify(cert)


def test_trust_needs_a_ca():
    with pytest.raises(ValueError):
        TrustStore(b"")


def test_trust_cache_holds_until_not_after(ca, identity):
    clock = Clock()
    clock.advance(time.time())
    trust = TrustStore(ca.cert_pem, clock=clock)
    cert = identity[0]
    assert trust.verify(cert) is None
    assert trust.verify(cert) is None
    clock.advance(cert.not_valid_after_utc.timestamp() - clock.seconds() + 1)
    with pytest.raises(AuthenticationError):
        trust.verify(cert)


def test_trust_failures_are_not_cached(ca, identity):
    cert = identity[0]
    clock = Clock()
    clock.advance(cert.not_valid_before_utc.timestamp() - 60)
    trust = TrustStore(ca.cert_pem, clock=clock)
    with pytest.raises(AuthenticationError):
        trust.verify(cert)
    clock.advance(120)
    trust.verify(cert)


def test_trust_cache_is_bounded(ca):
    trust = TrustStore(ca.cert_pem, cache_size=2)
    certs = [issue(ca, None) for _ in range(3)]
    for cert in certs:
        trust.verify(cert)
    assert len(trust._verified) == 2


def test_certificate_memo_finds_only_the_same_object(ca, identity):
    cert = identity[0]
    twin = x509.load_der_x509_certificate(der(cert))
    other = issue(ca, None)
    memo = CertificateMemo(2)
    memo.put(cert, "cert")
    assert memo.get(cert) == "cert"
    assert memo.get(twin) is None  # equal, but another object: the caller's content cache
    memo.put(twin, "twin")
    memo.put(other, "other")
    assert len(memo) == 2
    assert (memo.get(cert), memo.get(twin), memo.get(other)) == (None, "twin", "other")


def test_trust_and_cert_hash_of_an_equal_certificate_object(trust, identity):
    cert = identity[0]
    twin = x509.load_der_x509_certificate(der(cert))
    trust.verify(cert)
    trust.verify(twin)
    assert cert_hash(twin) == cert_hash(cert) == hashlib.sha256(der(cert)).hexdigest()


# Device identity


def headers(**values: bytes):
    table = {k.replace("_", "-").lower().encode(): v for k, v in values.items()}
    return lambda name: table.get(name.lower())


def test_identity_from_mdm_signature(trust, identity):
    cert, key = identity
    signature = base64.b64encode(sign_detached(BODY, cert, key))
    device = DeviceIdentity(trust, None)
    assert device.certificate(headers(Mdm_Signature=signature), BODY) == cert
    with pytest.raises(MessageError):
        device.certificate(headers(Mdm_Signature=signature), BODY + b"x")
    with pytest.raises(MessageError, match="missing"):
        device.certificate(headers(), BODY)


def test_identity_from_cert_header(trust, identity):
    cert, _ = identity
    device = DeviceIdentity(trust, "X-Client-Cert")
    value = nginx_escape(cert.public_bytes(Encoding.PEM)).encode()
    assert device.certificate(headers(X_Client_Cert=value), b"") == cert
    with pytest.raises(MessageError, match="missing"):
        device.certificate(headers(Mdm_Signature=b"ignored"), b"")


def test_identity_untrusted_is_403_unless_no_ca(trust):
    cert, key = DevelopmentCA.create("rogue").issue_device_identity("rogue")
    signature = base64.b64encode(sign_detached(BODY, cert, key))
    with pytest.raises(AuthenticationError):
        DeviceIdentity(trust, None).certificate(headers(Mdm_Signature=signature), BODY)
    untrusting = DeviceIdentity(None, None)
    assert untrusting.certificate(headers(Mdm_Signature=signature), BODY) == cert


def test_cert_hash_is_hex_sha256_of_der(identity):
    cert, _ = identity
    assert cert_hash(cert) == hashlib.sha256(der(cert)).hexdigest()
    assert cert_hash(cert) == cert.fingerprint(hashes.SHA256()).hex()


# The strict-DER fast path must agree with the general (asn1crypto) path.


def verdict(verify, signature: bytes, body: bytes):
    """The certificate a path accepts, or the kind of refusal."""
    try:
        return verify(signature, body)
    except der_reader.DERError:
        return "left to the general path"
    except (MessageError, InvalidSignature):
        return "refused"
    except Exception as e:  # the general path's parser errors: refused by verify_detached
        return "refused: " + e.__class__.__name__


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("with_attributes", [True, False])
@pytest.mark.parametrize("by_key_identifier", [False, True])
def test_fast_path_takes_what_devices_send(ec_identity, identity, hash_name, with_attributes,
                                           by_key_identifier):
    for cert, key in (identity, ec_identity):
        signature = resign(sign_detached(BODY, cert, key), key, hash_name, with_attributes,
                           by_key_identifier=by_key_identifier)
        assert cms_der.verify_der(signature, BODY) == cert
        assert cms._verify_general(signature, BODY) == cert


def test_fast_path_leaves_ber_to_the_general_path(identity):
    cert, key = identity
    signature = sign_detached(BODY, cert, key)
    # The outer SEQUENCE re-encoded with an indefinite length: valid BER, not DER.
    _, _, start, end = der_reader.read(signature)
    ber = b"\x30\x80" + signature[start:end] + b"\x00\x00"
    with pytest.raises(der_reader.DERError):
        cms_der.verify_der(ber, BODY)
    assert verify_detached(ber, BODY) == cert


def test_fast_and_general_paths_agree_on_every_mutation(identity):
    """Flip each byte of a real signature in turn: the paths never disagree on acceptance."""
    cert, key = identity
    signature = sign_detached(BODY, cert, key)
    rng = random.Random(7)
    for position in [p for p in range(len(signature)) for _ in range(3)]:
        mutated = bytearray(signature)
        mutated[position] ^= rng.randrange(1, 256)
        mutated = bytes(mutated)
        fast = verdict(cms_der.verify_der, mutated, BODY)
        general = verdict(cms._verify_general, mutated, BODY)
        if fast == "left to the general path":
            continue
        assert (fast == cert) == (general == cert), (position, fast, general)
    assert verdict(cms_der.verify_der, signature, BODY) == cert


def test_der_reader_refuses_what_it_does_not_take():
    for data, reason in [
        (b"\x30", "truncated"),
        (b"\x30\x80\x00\x00", "indefinite"),
        (b"\x1f\x81\x01\x00", "high tag"),
        (b"\x30\x85\x01\x00\x00\x00\x00", "bad length"),
        (b"\x30\x05\x00", "truncated"),
    ]:
        with pytest.raises(der_reader.DERError, match=reason):
            der_reader.read(data)
    signed_data = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"
    assert der_reader.encode_oid("1.2.840.113549.1.7.2") == signed_data
    encoded = b"\x06\x09" + signed_data
    assert der_reader.oid(encoded, der_reader.read(encoded)) == signed_data
    sha256 = b"\x60\x86\x48\x01\x65\x03\x04\x02\x01"
    assert der_reader.encode_oid("2.16.840.1.101.3.4.2.1") == sha256
    with pytest.raises(der_reader.DERError, match="bad OID"):
        der_reader.oid(b"\x06\x01\x86", der_reader.read(b"\x06\x01\x86"))


def test_a_device_s_next_signature_is_read_by_its_layout(identity, monkeypatch):
    cert, key = identity
    cms_der._layouts.clear()
    assert cms_der.verify_der(sign_detached(BODY, cert, key), BODY) == cert
    second = sign_detached(BODY + b"more", cert, key)

    def full_reading(*args):
        raise AssertionError("read in full")

    monkeypatch.setattr(cms_der, "_signer", full_reading)
    assert cms_der.verify_der(second, BODY + b"more") == cert
    with pytest.raises(MessageError, match="digest"):
        cms_der.verify_der(second, BODY)


def test_layout_verdicts_are_a_full_reading_s_on_every_mutation(identity):
    """With the device's layout known or not, every single-byte change gets the same verdict."""
    cert, key = identity
    first = sign_detached(BODY, cert, key)
    body = BODY + b"next request"
    second = sign_detached(body, cert, key)
    rng = random.Random(9)
    taken_by_layout = 0
    for position in range(len(second)):
        mutated = bytearray(second)
        mutated[position] ^= rng.randrange(1, 256)
        mutated = bytes(mutated)
        cms_der._layouts.clear()
        full = verdict(cms_der.verify_der, mutated, body)
        cms_der._layouts.clear()
        cms_der.verify_der(first, BODY)
        layout = cms_der._layouts.get(first[: cms_der._KEY_LENGTH])
        taken_by_layout += layout.matches(mutated)
        assert verdict(cms_der.verify_der, mutated, body) == full, position
    assert taken_by_layout > 250  # digest, signing time and signature bytes
    for changed in (second + b"\x00", second[:-1], second[:100] + second[101:]):
        cms_der._layouts.clear()
        full = verdict(cms_der.verify_der, changed, body)
        cms_der.verify_der(first, BODY)
        assert verdict(cms_der.verify_der, changed, body) == full != cert
    cms_der._layouts.clear()
