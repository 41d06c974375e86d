"""
The decoders against hostile input, property-tested: whatever a client
sends, a decoder answers with a value of the promised shape or a
MessageError (a 400), never another exception (a 500).
"""

import base64
import plistlib
import urllib.parse

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import example, given
from hypothesis import strategies as st

from nanomdm_tw.crypto.certheader import MAX_CERT_HEADER, certificate_from_header
from nanomdm_tw.crypto.cms import decode_mdm_signature, sign_detached, verify_detached
from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.errors import MessageError
from nanomdm_tw.mdm.messages import (
    CommandReport,
    CheckinMessage,
    decode_checkin,
    decode_command,
    decode_command_report,
)
from nanomdm_tw.tools.sim import make_identity

from .hostile_inputs import (
    CHECKIN_FIELDS,
    REPORT_FIELDS,
    STORABLE_SOMEWHERE,
    base64_text,
    bounded,
    broken_plist,
    checkin_with_wrong_field,
    header_text,
    mutated,
    named_documents,
    plist_values,
    report_with_wrong_field,
    signature_variants,
    wrong_type,
)

IDS = {"UDID": "0000-HOSTILE"}
CA = DevelopmentCA.create("hostile decoders")
IDENTITY = make_identity(CA)
BODY = plistlib.dumps({"MessageType": "Authenticate", **IDS, "Topic": "t"})
SIGNATURE = sign_detached(BODY, IDENTITY.cert, IDENTITY.key)
PEM = IDENTITY.cert_pem


def decodes_or_refuses(decode, raw: bytes):
    """``decode(raw)``, or None when it raised MessageError; any other exception fails."""
    try:
        return decode(raw)
    except MessageError:
        return None


def valid_checkin_shape(message: CheckinMessage) -> None:
    for key, value in CHECKIN_FIELDS[message.message_type].items():
        if key in message.values:
            assert type(message.values[key]) is type(value), key
    assert isinstance(message.enroll_id.id, str) and message.enroll_id.id


@bounded(300)
@given(st.binary(max_size=300) | st.builds(lambda v: plistlib.dumps(v), plist_values))
def test_any_bytes_are_a_plist_or_a_message_error(raw: bytes) -> None:
    for decode in (decode_checkin, decode_command_report, decode_command):
        decodes_or_refuses(decode, raw)


@bounded(300)
@given(
    st.sampled_from(sorted(CHECKIN_FIELDS)).flatmap(
        lambda t: broken_plist({"MessageType": t, **IDS, **CHECKIN_FIELDS[t]})
    )
)
def test_broken_checkins_are_refused_or_well_formed(raw: bytes) -> None:
    message = decodes_or_refuses(decode_checkin, raw)
    if message is not None:
        valid_checkin_shape(message)


def every_field(fields: dict[str, dict]) -> list[tuple[str, str]]:
    return [(kind, key) for kind, values in sorted(fields.items())
            for key in sorted({**IDS, "MessageType": kind, **values})]


@bounded(30)
@given(st.data())
def test_every_checkin_field_of_the_wrong_type_is_refused(data) -> None:
    for message_type, key in every_field(CHECKIN_FIELDS):  # each example tries them all
        message = {"MessageType": message_type, **IDS, **CHECKIN_FIELDS[message_type]}
        message[key] = data.draw(wrong_type(message[key]), label=f"{message_type}.{key}")
        with pytest.raises(MessageError):
            decode_checkin(plistlib.dumps(message))


@bounded(300)
@given(checkin_with_wrong_field(IDS))
def test_wrong_field_checkins_are_refused(message: dict) -> None:
    with pytest.raises(MessageError):
        decode_checkin(plistlib.dumps(message))


@bounded(200)
@given(report_with_wrong_field(IDS))
def test_every_report_field_of_the_wrong_type_is_refused(message: dict) -> None:
    with pytest.raises(MessageError):
        decode_command_report(plistlib.dumps(message))


@bounded(200)
@given(broken_plist({**IDS, **REPORT_FIELDS}))
def test_broken_reports_are_refused_or_well_formed(raw: bytes) -> None:
    report = decodes_or_refuses(decode_command_report, raw)
    if report is not None:
        assert isinstance(report, CommandReport) and isinstance(report.command_uuid, str)


@pytest.mark.parametrize("name", sorted(set(named_documents(IDS)) - STORABLE_SOMEWHERE))
def test_named_attacks_are_refused(name: str) -> None:
    # Duplicate keys: the last value wins, as in plistlib; here an integer Topic.
    with pytest.raises(MessageError):
        decode_checkin(named_documents(IDS)[name])


def test_external_entities_are_never_read() -> None:
    raw = named_documents(IDS)["external entity"]
    with pytest.raises(MessageError) as refused:
        decode_checkin(raw)
    assert "root:" not in str(refused.value)


# Mdm-Signature: the header's base64, the CMS inside it.


@bounded(300)
@given(mutated(SIGNATURE))
def test_mutated_signatures_are_refused(signature: bytes) -> None:
    # A change the signature does not cover (in the certificate's name, say)
    # may still verify: it proves possession of the same key, and the trust
    # store then refuses the altered certificate (test_mdm_http checks that).
    cert = decodes_or_refuses(lambda der: verify_detached(der, BODY), signature)
    assert cert is None or cert.public_key() == IDENTITY.cert.public_key()


@bounded(300)
@given(base64_text | header_text | st.binary(max_size=400).map(base64.b64encode))
def test_any_signature_header_is_refused(header) -> None:
    assert decodes_or_refuses(lambda v: decode_mdm_signature(v, BODY), header) is None


@pytest.mark.parametrize("name", sorted(signature_variants(BODY, IDENTITY)))
def test_signature_variants_are_refused(name: str) -> None:
    signature = signature_variants(BODY, IDENTITY)[name]
    with pytest.raises(MessageError):
        decode_mdm_signature(base64.b64encode(signature), BODY)


# --cert-header: the URL-escaped PEM (nginx) or RFC 9440's :base64 DER:.


@bounded(300)
@given(
    header_text
    | st.builds(lambda b: ":" + base64.b64encode(b).decode() + ":", st.binary(max_size=300))
    | mutated(urllib.parse.quote(PEM.decode()).encode()).map(lambda b: b.decode("latin-1"))
)
@example(urllib.parse.quote((PEM * 3).decode()))  # a chain: the first certificate
@example(":" + "A" * (MAX_CERT_HEADER + 4) + ":")
@example("%" * 10_000)
@example(urllib.parse.quote(PEM.decode().replace("CERTIFICATE", "PRIVATE KEY")))
def test_any_cert_header_is_a_certificate_or_refused(header: str) -> None:
    cert = decodes_or_refuses(certificate_from_header, header)
    if cert is not None:
        assert cert.public_bytes(serialization.Encoding.DER)
