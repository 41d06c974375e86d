"""
A minimal, strict DER reader for the one structure on the hot path.

Every device request carries a CMS signature; reading it with a general
ASN.1 library costs several times the signature check itself.  This reads
definite-length DER only, one level at a time (no recursion), and raises
DERError on anything else; the caller then falls back to the general
parser, so unusual but valid encodings (BER) still work.
"""

from typing import NamedTuple


class DERError(ValueError):
    """Not the strict DER this reader takes."""


class TLV(NamedTuple):
    tag: int  # the identifier octet (low-tag-number form only)
    value: bytes  # the contents octets
    encoded: bytes  # the whole element, header included


def read(data: bytes, offset: int = 0) -> tuple[TLV, int]:
    """The element at ``offset`` and the offset just after it."""
    end = len(data)
    if offset + 2 > end:
        raise DERError("truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag number")
    first = data[offset + 1]
    header = 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DERError("indefinite length")
    else:
        count = first & 0x7F
        if count > 4 or offset + 2 + count > end:
            raise DERError("bad length")
        length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
        header += count
    start = offset + header
    stop = start + length
    if stop > end:
        raise DERError("truncated")
    return TLV(tag, data[start:stop], data[offset:stop]), stop


def children(value: bytes) -> list[TLV]:
    """The elements that make up a constructed element's contents."""
    items, offset = [], 0
    while offset < len(value):
        item, offset = read(value, offset)
        items.append(item)
    return items


def expect(item: TLV, tag: int) -> TLV:
    if item.tag != tag:
        raise DERError(f"tag {item.tag:#x}, expected {tag:#x}")
    return item


def oid(item: TLV) -> bytes:
    """An OBJECT IDENTIFIER's encoded contents, to compare with ``encode_oid`` constants."""
    value = expect(item, 0x06).value
    if not value or value[-1] & 0x80:
        raise DERError("bad OID")
    return value


def encode_oid(dotted: str) -> bytes:
    """The contents octets of an OBJECT IDENTIFIER, for tables of known OIDs."""
    arcs = [int(a) for a in dotted.split(".")]
    encoded = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        encoded += bytes(reversed(chunk))
    return bytes(encoded)
