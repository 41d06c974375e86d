"""
A minimal, strict DER reader for the one structure on the hot path.

Every device request carries a CMS signature; reading it with a general
ASN.1 library costs several times the signature check itself.  This reads
definite-length DER only, one level at a time (no recursion), and raises
DERError on anything else; the caller then falls back to the general
parser, so unusual but valid encodings (BER) still work.

An element is a plain tuple of offsets into the buffer it was read from,
not an object holding copies: a signature has some forty elements and is
read on every request.
"""

# (tag, header start, contents start, end): the identifier octet (low-tag-number
# form only); the element is data[header:end], its contents data[start:end].
Element = tuple[int, int, int, int]


class DERError(ValueError):
    """Not the strict DER this reader takes."""


def read(data: bytes, offset: int = 0, end: int | None = None) -> Element:
    """The element at ``offset``, which must end by ``end`` (default: the data's end)."""
    if end is None:
        end = len(data)
    if offset + 2 > end:
        raise DERError("truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag number")
    length = data[offset + 1]
    start = offset + 2
    if length >= 0x80:
        if length == 0x80:
            raise DERError("indefinite length")
        count = length & 0x7F
        if count > 4 or start + count > end:
            raise DERError("bad length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    stop = start + length
    if stop > end:
        raise DERError("truncated")
    return tag, offset, start, stop


def children(data: bytes, element: Element, tag: int) -> list[Element]:
    """The elements that make up the contents of ``element``, which must have ``tag``."""
    if element[0] != tag:
        raise DERError(f"tag {element[0]:#x}, expected {tag:#x}")
    return elements(data, element[2], element[3])


def elements(data: bytes, offset: int = 0, end: int | None = None) -> list[Element]:
    """The elements one after another in ``data[offset:end]`` (default: all of it)."""
    if end is None:
        end = len(data)
    items = []
    while offset < end:
        item = read(data, offset, end)
        items.append(item)
        offset = item[3]
    return items


def expect(element: Element, tag: int) -> Element:
    if element[0] != tag:
        raise DERError(f"tag {element[0]:#x}, expected {tag:#x}")
    return element


def contents(data: bytes, element: Element, tag: int) -> bytes:
    """The contents octets of ``element``, which must have ``tag``."""
    expect(element, tag)
    return data[element[2] : element[3]]


def encoded(data: bytes, element: Element) -> bytes:
    """The whole element, header included."""
    return data[element[1] : element[3]]


def oid(data: bytes, element: Element) -> bytes:
    """An OBJECT IDENTIFIER's encoded contents, to compare with ``encode_oid`` constants."""
    value = contents(data, element, 0x06)
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
