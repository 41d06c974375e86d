"""Our HPACK encoding of APNs request headers, read back by hpack's own decoder."""

from hpack import Decoder

from nanomdm_tw.push.headers import RequestHeaderEncoder

TOPIC = b"com.apple.mgmt.External." + b"x" * 200  # lengths past one prefix byte


def request(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"api.push.apple.com"),
        (b":path", b"/3/device/%064x" % n),
        (b"apns-push-type", b"mdm"),
        (b"apns-topic", TOPIC),
        (b"apns-priority", b"10"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % (40 + n)),
    ]


def test_repeated_fields_become_indexes_and_per_push_ones_stay_out_of_the_table():
    encoder, decoder = RequestHeaderEncoder(), Decoder()

    blocks = [encoder.encode(request(n)) for n in range(3)]

    assert [decoder.decode(b, raw=True) for b in blocks] == [request(n) for n in range(3)]
    assert len(blocks[1]) == len(blocks[2]) < len(blocks[0]) // 3
    assert {name for name, _ in decoder.header_table.dynamic_entries} == {
        b":authority", b"apns-push-type", b"apns-topic", b"apns-priority", b"content-type"
    }


def test_a_smaller_table_from_the_peer_starts_the_table_over():
    encoder, decoder = RequestHeaderEncoder(), Decoder()
    assert decoder.decode(encoder.encode(request(1)), raw=True) == request(1)

    # The peer's SETTINGS_HEADER_TABLE_SIZE drops: h2 tells the encoder, and
    # the decoder refuses any table size above it.
    for size in (200, 0, 4096):
        decoder.max_allowed_table_size = encoder.header_table_size = size
        blocks = [encoder.encode(request(n)) for n in range(2)]

        assert [decoder.decode(b, raw=True) for b in blocks] == [request(n) for n in range(2)]
        assert decoder.header_table.maxsize == size
        entries = decoder.header_table.dynamic_entries
        assert sum(len(name) + len(value) + 32 for name, value in entries) <= size
