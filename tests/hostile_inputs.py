"""
Hostile inputs for the property tests: what a broken or malicious client
sends instead of a plist, a signature or a certificate header.

Strategies build on a well-formed message and break one thing at a time,
so the decoders are pushed past their first check; the named documents are
the classic XML attacks, too structured for a generator to find.
"""

import plistlib
import string
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from nanomdm_tw.mdm.messages import CHECKIN_TYPES

def bounded(examples: int):
    """
    Hypothesis settings: bounded and reproducible, the same examples on every
    run, no example database, no deadline (loopback requests on a busy machine).
    """
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# The fields each check-in message type reads, with a value of the right type.
CHECKIN_FIELDS: dict[str, dict[str, Any]] = {
    "Authenticate": {"Topic": "com.apple.mgmt.x", "SerialNumber": "C02", "DeviceName": "d",
                     "Model": "m", "ModelName": "M", "ProductName": "p",
                     "OSVersion": "17.0", "BuildVersion": "21A"},
    "TokenUpdate": {"Topic": "com.apple.mgmt.x", "Token": b"\x01" * 32, "PushMagic": "magic",
                    "UnlockToken": b"\x02", "AwaitingConfiguration": False},
    "CheckOut": {},
    "UserAuthenticate": {"DigestResponse": "r"},
    "SetBootstrapToken": {"BootstrapToken": b"\x03", "AwaitingConfiguration": False},
    "GetBootstrapToken": {"AwaitingConfiguration": False},
    "DeclarativeManagement": {"Endpoint": "tokens", "Data": b"{}"},
    "GetToken": {"TokenServiceType": "com.apple.maid", "TokenParameters": {}},
}
assert set(CHECKIN_FIELDS) == set(CHECKIN_TYPES)
REPORT_FIELDS = {"Status": "Acknowledged", "CommandUUID": "c", "RequestType": "ProfileList",
                 "ErrorChain": []}
ENROLLMENT_FIELDS = ("UDID", "UserID", "UserShortName", "UserLongName", "EnrollmentID",
                     "EnrollmentUserID")

# Any plist value, nested a little; integers and strings of every size plistlib writes.
# Text plistlib can write as XML: no control characters, no lone surrogates.
xml_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
scalars = st.one_of(
    xml_text,
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=40),
    st.datetimes(),
)
plist_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(xml_text, inner, max_size=4),
    max_leaves=12,
)


def wrong_type(value: Any) -> st.SearchStrategy:
    """A plist value of a type other than ``value``'s."""
    return plist_values.filter(lambda other: type(other) is not type(value))


@st.composite
def checkin_with_wrong_field(draw, ids: dict[str, str]) -> dict[str, Any]:
    """A check-in of some type with one of its fields (or an identifier) of the wrong type."""
    message_type = draw(st.sampled_from(sorted(CHECKIN_FIELDS)))
    message = {"MessageType": message_type, **ids, **CHECKIN_FIELDS[message_type]}
    key = draw(st.sampled_from(sorted(message)))
    message[key] = draw(wrong_type(message[key]))
    return message


@st.composite
def report_with_wrong_field(draw, ids: dict[str, str]) -> dict[str, Any]:
    message = {**ids, **REPORT_FIELDS}
    key = draw(st.sampled_from(sorted(message)))
    message[key] = draw(wrong_type(message[key]))
    return message


def _xml(message: dict[str, Any]) -> bytes:
    return plistlib.dumps(message)


# Bytes XML text must not hold, or holds only with care, for insertion into a plist.
XML_TROUBLE = [b"\x00", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"<", b"&", b"]]>", b"<!--",
               b"&#0;", b"&#xD800;", b"\r"]


@st.composite
def broken_plist(draw, message: dict[str, Any]) -> bytes:
    """``message`` as a plist (XML or binary), then mutated or re-encoded."""
    raw = draw(st.sampled_from([_xml(message), plistlib.dumps(message, fmt=plistlib.FMT_BINARY)]))
    how = draw(st.sampled_from(["mutate", "utf16", "latin1"]))
    if how == "mutate":
        return draw(mutated(raw, st.sampled_from(XML_TROUBLE) | st.binary(min_size=1, max_size=8)))
    text = raw.decode("utf-8", "replace") if raw[:1] == b"<" else raw.decode("latin-1")
    return text.encode("utf-16" if how == "utf16" else "latin-1", "replace")


def _string_value(ids: dict[str, str], message_type: str, value_xml: str) -> bytes:
    """A check-in whose Topic-like string field holds ``value_xml`` verbatim."""
    entries = "".join(f"<key>{k}</key><string>{v}</string>" for k, v in ids.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>'
        f"<key>MessageType</key><string>{message_type}</string>{entries}"
        f"<key>Topic</key>{value_xml}<key>PushMagic</key><string>m</string>"
        "<key>Token</key><data>AQID</data></dict></plist>"
    ).encode("utf-8")


# Named documents that are well-formed, only too long for some of NanoMDM's
# MySQL and PostgreSQL columns: those databases refuse them, others store them.
STORABLE_SOMEWHERE = {"huge string", "long identifier", "long push magic"}


def named_documents(ids: dict[str, str]) -> dict[str, bytes]:
    """The classic attacks on an XML reader, as check-ins from the enrollment ``ids``."""
    laughs = '<!ENTITY a "' + "a" * 64 + '">' + "".join(
        f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 16 + '">' for i in range(8)
    )
    doctype = '<?xml version="1.0"?>\n<!DOCTYPE plist [{}]>\n'
    body = _string_value(ids, "Authenticate", "<string>{}</string>").decode().split("\n", 1)[1]
    return {
        "billion laughs": (doctype.format(laughs) + body.format("&i;")).encode(),
        "external entity": (doctype.format('<!ENTITY x SYSTEM "file:///etc/passwd">')
                            + body.format("&x;")).encode(),
        "external parameter entity": (doctype.format(
            '<!ENTITY % x SYSTEM "http://127.0.0.1:9/x.dtd"> %x;') + body.format("t")).encode(),
        "deep XML nesting": _string_value(ids, "Authenticate", "<array>" * 50_000 + "</array>" * 50_000),
        "deep binary nesting": _deep_binary(20_000),
        "huge integer": _string_value(ids, "Authenticate", "<integer>" + "9" * 100_000 + "</integer>"),
        "integer past 64 bits": _string_value(ids, "Authenticate", f"<integer>{1 << 70}</integer>"),
        "huge string": _string_value(ids, "Authenticate", "<string>" + "t" * 1_000_000 + "</string>"),
        "long identifier": plistlib.dumps({"MessageType": "Authenticate", "UDID": ids["UDID"] + "x" * 300,
                                           "Topic": "t"}),
        "long push magic": plistlib.dumps({"MessageType": "TokenUpdate", **ids, "Topic": "t",
                                           "PushMagic": "m" * 300, "Token": b"\x01"}),
        "NUL reference": _string_value(ids, "TokenUpdate", "<string>a&#0;b</string>"),
        "raw NUL": _string_value(ids, "TokenUpdate", "<string>a\x00b</string>"),
        "invalid UTF-8": _string_value(ids, "TokenUpdate", "<string>a~b</string>").replace(b"~", b"\xff"),
        "lone surrogate": _string_value(ids, "TokenUpdate", "<string>a&#xD800;b</string>"),
        "duplicate keys": _string_value(ids, "TokenUpdate", "<string>a</string><key>Topic</key><integer>1</integer>"),
        "binary with NUL": plistlib.dumps({"MessageType": "TokenUpdate", **ids, "Topic": "a\x00b",
                                           "PushMagic": "m", "Token": b"\x01"}, fmt=plistlib.FMT_BINARY),
        "binary": plistlib.dumps({"MessageType": "Authenticate", **ids, "Topic": "t"},
                                 fmt=plistlib.FMT_BINARY),
        "UTF-16": _string_value(ids, "Authenticate", "<string>t</string>").decode().replace(
            "UTF-8", "UTF-16").encode("utf-16"),
    }


def _deep_binary(depth: int) -> bytes:
    """A binary plist of ``depth`` arrays each holding the next (2-byte object refs)."""
    objects = [bytes([0xA1]) + (i + 1).to_bytes(2, "big") for i in range(depth)] + [b"\x08"]
    offsets, position = [], 8
    for obj in objects:
        offsets.append(position)
        position += len(obj)
    table = b"".join(o.to_bytes(4, "big") for o in offsets)
    trailer = (b"\x00" * 6 + bytes([4, 2]) + len(objects).to_bytes(8, "big")
               + (0).to_bytes(8, "big") + position.to_bytes(8, "big"))
    return b"bplist00" + b"".join(objects) + table + trailer


# Strings a header may hold (latin-1 on the wire) and text with unusual characters.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)
base64_text = st.text(alphabet=string.ascii_letters + string.digits + "+/=", max_size=400)


def signature_variants(body: bytes, identity) -> dict[str, bytes]:
    """Signatures over ``body`` by ``identity`` that are well-formed CMS but must not pass."""
    from asn1crypto import cms

    from nanomdm_tw.crypto.cms import sign_detached

    def edited(change) -> bytes:
        info = cms.ContentInfo.load(sign_detached(body, identity.cert, identity.key))
        change(info["content"])
        return cms.ContentInfo({"content_type": "signed_data", "content": info["content"]}).dump(force=True)

    def two_signers(sd):
        sd["signer_infos"] = [sd["signer_infos"][0], sd["signer_infos"][0]]

    def no_signer(sd):
        sd["signer_infos"] = []

    def no_certificates(sd):
        del sd["certificates"]

    def digest_algorithm(sd):
        sd["signer_infos"][0]["digest_algorithm"] = {"algorithm": "sha1"}

    def unknown_digest(sd):
        sd["signer_infos"][0]["digest_algorithm"] = {"algorithm": "md5"}

    def signature_algorithm(sd):
        sd["signer_infos"][0]["signature_algorithm"] = {"algorithm": "sha256_rsa"}

    def message_digest(sd):
        attrs = sd["signer_infos"][0]["signed_attrs"]
        sd["signer_infos"][0]["signed_attrs"] = [
            {"type": "message_digest", "values": [b"\x00" * 32]}
            if a["type"].native == "message_digest" else a
            for a in attrs
        ]

    def no_signed_attrs(sd):
        del sd["signer_infos"][0]["signed_attrs"]

    variants = {
        name: edited(change)
        for name, change in [
            ("two signers", two_signers), ("no signer", no_signer),
            ("no certificates", no_certificates), ("digest algorithm mismatch", digest_algorithm),
            ("unknown digest", unknown_digest), ("signature algorithm mismatch", signature_algorithm),
            ("message digest mismatch", message_digest), ("no signed attributes", no_signed_attrs),
        ]
    }
    variants["other body"] = sign_detached(body + b" ", identity.cert, identity.key)
    variants["nested BER"] = b"\x30\x80" * 20_000 + b"\x00\x00" * 20_000
    variants["nested definite"] = _nested_definite(10_000)
    return variants


def _nested_definite(depth: int) -> bytes:
    """``depth`` SEQUENCEs each holding the next, in definite-length DER."""
    inner = b"\x05\x00"
    for _ in range(depth):
        n = len(inner)
        size = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        inner = b"\x30" + size + inner
    return inner


@st.composite
def mutated(draw, raw: bytes, junk: st.SearchStrategy = st.binary(min_size=1, max_size=8)) -> bytes:
    """``raw`` truncated, with a byte flipped, or with ``junk`` inserted."""
    how = draw(st.sampled_from(["truncate", "flip", "insert"]))
    at = draw(st.integers(0, len(raw) - 1))
    if how == "truncate":
        return raw[:at]
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    return raw[:at] + draw(junk) + raw[at:]
