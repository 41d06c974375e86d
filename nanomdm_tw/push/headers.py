"""
HPACK (RFC 7541) for APNs request headers, at a fraction of hpack's cost.

hpack's encoder Huffman-codes every value in pure Python and searches its
tables field by field; a push's headers are the same every time but for
``:path`` and ``content-length``.  So the repeated fields enter the peer's
dynamic table once and are indexes from then on, the others are plain
literals without indexing, and nothing is ever evicted: the encoder knows
each field's representation by heart.
"""

from collections.abc import Iterable

# Fields, and names, of the static table (RFC 7541 Appendix A) that we send.
_STATIC_FIELDS = {(b":method", b"POST"): 3, (b":scheme", b"https"): 7}
_STATIC_NAMES = {b":authority": 1, b":path": 4, b"content-length": 28, b"content-type": 31}
# Names whose value is the same for every push of a client: worth an entry.
_REPEATED = {b":authority", b"apns-push-type", b"apns-topic", b"apns-priority", b"content-type"}
_FIRST_DYNAMIC_INDEX = 62
_ENTRY_OVERHEAD = 32  # RFC 7541 4.1
_DEFAULT_TABLE_SIZE = 4096  # until the peer's SETTINGS_HEADER_TABLE_SIZE says otherwise


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 5.1), ``first`` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    encoded = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        encoded.append(value & 127 | 128)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def _string(value: bytes) -> bytes:
    """An HPACK string literal, not Huffman-coded (RFC 7541 5.2)."""
    return _integer(len(value), 7) + value


_INDEXED_STATIC = {field: _integer(index, 7, 0x80) for field, index in _STATIC_FIELDS.items()}


class RequestHeaderEncoder:
    """
    Encodes header lists of ``(name, value)`` bytes for h2 (its ``encoder``).

    h2 sets ``header_table_size`` when the peer's SETTINGS change it; the
    next block then empties the peer's table and starts over within the new
    size (RFC 7541 4.2).
    """

    def __init__(self) -> None:
        self._size = _DEFAULT_TABLE_SIZE
        self._size_changed = False
        self._start_over()

    @property
    def header_table_size(self) -> int:
        return self._size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._size = value
        self._size_changed = True

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = False) -> bytes:
        encoded = []
        if self._size_changed:
            encoded += [_integer(0, 5, 0x20), _integer(self._size, 5, 0x20)]
            self._size_changed = False
            self._start_over()
        known = self._known
        for field in headers:
            representation = known.get(field)
            encoded.append(representation or self._literal(field))
        return b"".join(encoded)

    def _start_over(self) -> None:
        self._entries: list[tuple[bytes, bytes]] = []  # oldest first
        self._used = 0
        self._known = dict(_INDEXED_STATIC)

    def _literal(self, field: tuple[bytes, bytes]) -> bytes:
        name, value = field
        name_index = _STATIC_NAMES.get(name)
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if name not in _REPEATED or self._used + size > self._size:
            # Literal without indexing (6.2.2).
            prefix = _integer(name_index, 4) if name_index else b"\x00" + _string(name)
            return prefix + _string(value)
        # Literal with incremental indexing (6.2.1); an index from now on.
        prefix = _integer(name_index, 6, 0x40) if name_index else b"\x40" + _string(name)
        self._entries.append(field)
        self._used += size
        # The newest entry takes the first dynamic index; the older ones shift up.
        self._known = dict(_INDEXED_STATIC)
        for offset, entry in enumerate(reversed(self._entries)):
            self._known[entry] = _integer(_FIRST_DYNAMIC_INDEX + offset, 7, 0x80)
        return prefix + _string(value)
