"""
The plain-XML plist reader must build exactly what plistlib builds.

Whatever it takes on its fast path, plistlib must read to an identical value
(types included); everything else it leaves to plistlib.  Checked on what
devices send, on hand-made edge cases, and on every single-byte change of
real check-ins.
"""

import datetime
import math
import plistlib
import random

import pytest

from nanomdm_tw.mdm import plist
from nanomdm_tw.tools.sim import SimulatedDevice, make_command, make_identity
from nanomdm_tw.crypto.devca import DevelopmentCA


def same(a, b) -> bool:
    """Equal, with the same types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def fast(raw: bytes):
    """The fast path's value, or None where it leaves the input to plistlib."""
    try:
        return ("value", plist._loads_plain(raw.decode("utf-8")))
    except (plist._Defer, UnicodeDecodeError):
        return None


def plistlib_verdict(raw: bytes):
    try:
        return ("value", plistlib.loads(raw))
    except Exception as e:  # plistlib raises many types on bad input
        return ("error", type(e))


def assert_agrees(raw: bytes) -> bool:
    """The fast path never disagrees with plistlib; True if it took the input."""
    taken = fast(raw)
    expected = plistlib_verdict(raw)
    if taken is not None:
        assert expected[0] == "value" and same(taken[1], expected[1]), (raw, taken, expected)
    answer = plistlib_verdict_of_loads(raw)
    assert answer[0] == expected[0] and (answer[0] == "error" or same(answer[1], expected[1]))
    return taken is not None


def plistlib_verdict_of_loads(raw: bytes):
    try:
        return ("value", plist.loads(raw))
    except Exception as e:
        return ("error", type(e))


@pytest.fixture(scope="module")
def device_bodies() -> list[bytes]:
    """Check-ins and reports as the simulator (and so the benchmark) sends them."""
    sim = SimulatedDevice.create("http://localhost", make_identity(DevelopmentCA.create()))
    fields = dict(Topic=sim.topic, SerialNumber=sim.serial_number)
    prepared = [
        sim.prepare_checkin("Authenticate", **fields),
        sim.prepare_token_update(),
        sim.prepare_report("Idle"),
        sim.prepare_report("Acknowledged", "CMD-1"),
        sim.prepare_report("Error", "CMD-2", ErrorChain=[{"ErrorCode": 12021, "ErrorDomain": "x"}]),
        sim.user_channel().prepare_checkin("UserAuthenticate", DigestResponse="abc"),
    ]
    return [p.body for p in prepared] + [make_command("ProfileList")]


def test_what_devices_send_takes_the_fast_path(device_bodies):
    for raw in device_bodies:
        assert assert_agrees(raw), raw


VALUES = [
    {"a": "text with > and ' and \" and unicode \u00e9\u4e2d\U0001f600", "b": ""},
    {"n": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1], "r": [0.5, -1e300, 1.0, float("inf")]},
    {"t": True, "f": False, "d": b"", "bytes": bytes(range(256)), "nested": {"x": [[], {}, [{}]]}},
    {"": "empty key", "k": {"": ""}},
    ["root", "array", 1, True],
    "a string root",
    42,
    {"date": datetime.datetime(2024, 1, 2, 3, 4, 5)},
    {"amp": "a & b < c", "cr": "line\r\nbreak", "tab\tkey": "x\ty"},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_plistlib_output_agrees(value):
    assert_agrees(plistlib.dumps(value))
    assert_agrees(plistlib.dumps(value, sort_keys=False))


PROLOG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN"'
    b' "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n'
)
EDGE_CASES = [
    b"<dict><key>a</key><string>b</string></dict>",
    b"<dict><key>a</key><string>b</string><key>a</key><string>c</string></dict>",  # last wins
    b"<dict><key>a</key></dict>",  # key without a value
    b"<dict><key></key><string>x</string></dict>",
    b"<dict><key/><string>x</string></dict>",
    b"<dict><key>a</key><key>b</key><string>x</string></dict>",
    b"<dict><string>x</string></dict>",
    b"<array><key>a</key></array>",
    b"<dict><key>a</key><string>b</string></array>",
    b"<dict><key>a</key><string>b</string>",
    b"<dict/><dict/>",
    b"<dict><key>a</key><true/></dict><array/>",  # plistlib keeps the last root
    b"<dict></dict>junk",
    b"<dict><key>a</key><string>&amp;</string></dict>",
    b"<dict><key>a</key><string>&#65;</string></dict>",
    b"<dict><key>a</key><string><![CDATA[x]]></string></dict>",
    b"<dict><key>a</key><string>]]></string></dict>",
    b"<dict><!-- c --><key>a</key><string>b</string></dict>",
    b"<dict><key>a</key><string>b\rc</string></dict>",
    b"<dict><key>a</key><string>b\x01c</string></dict>",
    b"<dict><key>a</key><string>b\xef\xbf\xbec</string></dict>",
    b"<dict><key>a</key><string>\xff</string></dict>",
    b"<dict><key>a</key><integer> 12 </integer></dict>",
    b"<dict><key>a</key><integer>1_000</integer></dict>",
    b"<dict><key>a</key><integer>0x1F</integer></dict>",
    b"<dict><key>a</key><integer>0X1f</integer></dict>",
    b"<dict><key>a</key><integer>0x</integer></dict>",
    b"<dict><key>a</key><integer></integer></dict>",
    b"<dict><key>a</key><integer>+7</integer></dict>",
    b"<dict><key>a</key><integer>1.5</integer></dict>",
    b"<dict><key>a</key><real>nan</real></dict>",
    b"<dict><key>a</key><real>1e5</real></dict>",
    b"<dict><key>a</key><real>x</real></dict>",
    b"<dict><key>a</key><data>QUJD\n RA==</data></dict>",
    b"<dict><key>a</key><data>QUJ</data></dict>",
    b"<dict><key>a</key><data>!!!</data></dict>",
    b"<dict><key>a</key><true></true></dict>",
    b"<dict><key>a</key><true/><key>b</key><false/></dict>",
    b"<dict><key>a</key><date>2024-01-02T03:04:05Z</date></dict>",
    b"<dict><key>a</key><unknown>x</unknown></dict>",
    b'<dict><key a="1">a</key><string>b</string></dict>',
    b"<array><string/><data/><dict/><array/></array>",
    b"<string>root</string>",
    b"",
]


@pytest.mark.parametrize("body", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_agree(body):
    assert_agrees(PROLOG + body + b"\n</plist>\n")
    assert_agrees(b"<plist>" + body + b"</plist>")


@pytest.mark.parametrize(
    "document",
    [
        b" " + PROLOG + b"<dict/></plist>",
        b"\xef\xbb\xbf" + PROLOG + b"<dict/></plist>",
    PROLOG.replace(b"UTF-8", b"ISO-8859-1") + b"<string>\xe9</string></plist>",
        PROLOG.replace(b"UTF-8", b"utf-8") + b"<dict/></plist>",
        PROLOG.replace(b"UTF-8", b"ISO-8859-1") + b"<dict/></plist>",
        PROLOG.replace(b"1.0", b"1.1", 1) + b"<dict/></plist>",
        b'<?xml version="1.0"?><plist><dict/></plist>',
        b'<plist version="2.0"><dict/></plist>',
        b"<plist><dict/></plist><!-- after -->",
        b"<plist><dict/></plist>\n\n",
        b"<plist><dict/></plist>x",
        b"<plist><dict/>",
        b"bplist00",
        plistlib.dumps({"a": 1}, fmt=plistlib.FMT_BINARY),
    ],
)
def test_documents_agree(document):
    assert_agrees(document)


def test_every_byte_change_of_real_check_ins_agrees(device_bodies):
    rng = random.Random(8)
    alphabet = b"<>/&;#!?[]-=\"' \t\r\nakey0x\x00\xc3\xff"
    taken = 0
    for raw in device_bodies[:4]:
        for position in range(len(raw)):
            for change in (
                raw[:position] + raw[position + 1 :],
                raw[:position] + bytes([rng.choice(alphabet)]) + raw[position + 1 :],
                raw[:position] + bytes([rng.choice(alphabet)]) + raw[position:],
            ):
                taken += assert_agrees(change)
    assert taken > 1000  # many changes (inside text, whitespace) stay on the fast path
