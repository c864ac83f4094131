"""The wire codec: round trips, and every corruption is dropped with a reason (never a crash)."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest

from vr.message import (
    EMPTY_BODY_CHECKSUM,
    HEADER_SIZE,
    MESSAGE_SIZE_MAX,
    Command,
    Header,
    InvalidMessage,
    Message,
    Operation,
    checksum,
    decode_batch,
    decode_header,
    decode_headers,
    decode_message,
    encode_batch,
    encode_headers,
    make_message,
    root_prepare,
    split_batch,
)

CLUSTER = 7


def _request(n: int) -> Message:
    return make_message(
        command=Command.REQUEST,
        cluster=CLUSTER,
        body=b'{"key": "k", "value": %d}' % n,
        client=42,
        request=n,
        operation=Operation.WRITE,
        replica=255,
    )


def test_round_trip_keeps_every_field() -> None:
    message = make_message(
        command=Command.PREPARE,
        cluster=CLUSTER,
        body=b"hello",
        parent=b"p" * 16,
        context=b"c" * 16,
        replica=2,
        operation=Operation.BATCH,
        view=9,
        op=123,
        commit=120,
        client=1 << 63,
        request=5,
        extra=(1 << 64) - 1,
    )
    raw = message.encode()
    assert len(raw) == HEADER_SIZE + 5
    assert decode_message(raw, cluster=CLUSTER) == message
    assert message.header.size == len(raw)
    assert message.header.valid_checksum()


def test_header_layout_matches_contract_offsets() -> None:
    header = make_message(command=Command.COMMIT, cluster=0x0102, view=3, op=4, commit=5).header
    raw = header.encode()
    assert raw[:16] == checksum(raw[16:])
    assert raw[16:32] == EMPTY_BODY_CHECKSUM
    assert struct.unpack_from("<Q", raw, 64)[0] == 0x0102
    assert struct.unpack_from("<I", raw, 72)[0] == HEADER_SIZE
    assert raw[76] == Command.COMMIT
    assert raw[79] == 1
    assert struct.unpack_from("<QQQ", raw, 80) == (3, 4, 5)


def test_flipped_bit_in_header_is_dropped_for_every_bit() -> None:
    raw = bytearray(_request(1).encode())
    for bit in range(HEADER_SIZE * 8):
        corrupt = bytearray(raw)
        corrupt[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidMessage) as info:
            decode_message(bytes(corrupt), cluster=CLUSTER)
        assert info.value.reason == "header-checksum"


def test_flipped_bit_in_body_is_dropped() -> None:
    raw = bytearray(_request(1).encode())
    rng = random.Random(1)
    for _ in range(50):
        corrupt = bytearray(raw)
        index = rng.randrange(HEADER_SIZE, len(raw))
        corrupt[index] ^= 1 << rng.randrange(8)
        with pytest.raises(InvalidMessage) as info:
            decode_message(bytes(corrupt), cluster=CLUSTER)
        assert info.value.reason == "body-checksum"


def test_wrong_cluster_is_dropped() -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_message(_request(1).encode(), cluster=CLUSTER + 1)
    assert info.value.reason == "cluster"


@pytest.mark.parametrize("cut", [0, 1, 64, 127, 128, 130])
def test_truncated_is_dropped(cut: int) -> None:
    raw = _request(1).encode()
    with pytest.raises(InvalidMessage) as info:
        decode_message(raw[:cut], cluster=CLUSTER)
    assert info.value.reason == "truncated"


def test_trailing_bytes_are_a_size_mismatch() -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_message(_request(1).encode() + b"x", cluster=CLUSTER)
    assert info.value.reason == "size"


def test_size_field_beyond_max_is_dropped_even_with_valid_checksum() -> None:
    header = Header(command=Command.PING, cluster=CLUSTER, size=MESSAGE_SIZE_MAX + 1).sealed()
    with pytest.raises(InvalidMessage) as info:
        decode_header(header.encode())
    assert info.value.reason == "size"
    small = Header(command=Command.PING, cluster=CLUSTER, size=10).sealed()
    with pytest.raises(InvalidMessage) as info:
        decode_header(small.encode())
    assert info.value.reason == "size"


def test_unknown_command_and_protocol_are_dropped() -> None:
    good = Header(command=Command.PING, cluster=CLUSTER).sealed()
    raw = bytearray(good.encode_raw())
    raw[76] = 250
    raw[:16] = checksum(bytes(raw[16:]))
    with pytest.raises(InvalidMessage) as info:
        decode_header(bytes(raw))
    assert info.value.reason == "command"
    bad_protocol = Header(command=Command.PING, cluster=CLUSTER, protocol=9).sealed()
    with pytest.raises(InvalidMessage) as info:
        decode_header(bad_protocol.encode())
    assert info.value.reason == "protocol"


def test_random_garbage_never_raises_anything_but_invalid_message() -> None:
    rng = random.Random(5)
    for _ in range(500):
        junk = rng.randbytes(rng.randrange(0, 400))
        with pytest.raises(InvalidMessage):
            decode_message(junk, cluster=CLUSTER)


def test_reserved_and_root_headers_are_canonical() -> None:
    reserved = Header.reserved(CLUSTER, 17)
    assert reserved.op == 17
    assert reserved.command == Command.RESERVED
    assert reserved.valid_checksum()
    assert Header.reserved(CLUSTER, 17) == reserved
    assert Header.reserved(CLUSTER, 18).checksum != reserved.checksum
    root = root_prepare(CLUSTER)
    assert root.header.op == 0
    assert root.header.operation == Operation.ROOT
    assert decode_message(root.encode(), cluster=CLUSTER) == root
    assert Header.root(CLUSTER + 1).checksum != root.header.checksum


def test_headers_body_round_trip_and_rejects_corruption() -> None:
    headers = [_request(i).header for i in range(1, 5)]
    body = encode_headers(headers)
    assert decode_headers(body, cluster=CLUSTER) == headers
    with pytest.raises(InvalidMessage) as info:
        decode_headers(body[:-1])
    assert info.value.reason == "headers-size"
    corrupt = bytearray(body)
    corrupt[200] ^= 1
    with pytest.raises(InvalidMessage):
        decode_headers(bytes(corrupt))


def test_batch_round_trip() -> None:
    requests = [_request(i) for i in range(1, 4)]
    body = encode_batch(requests)
    assert decode_batch(body, cluster=CLUSTER) == requests
    assert decode_batch(b"", cluster=CLUSTER) == []
    with pytest.raises(InvalidMessage):
        decode_batch(body[:-3], cluster=CLUSTER)


def test_replace_reseals() -> None:
    header = _request(1).header
    changed = header.replace(view=4)
    assert changed.view == 4
    assert changed.valid_checksum()
    assert changed.checksum != header.checksum
    unsealed = Header(command=Command.PING, cluster=1)
    assert not unsealed.valid_checksum()
    assert decode_header(unsealed.encode()) == unsealed.sealed()


def _uncached(header: Header) -> Header:
    """The same fields built through the plain constructor (no kept wire bytes)."""
    return Header(**{f.name: getattr(header, f.name) for f in dataclasses.fields(Header) if f.init})


def test_kept_wire_bytes_always_equal_a_fresh_encoding() -> None:
    request = _request(3)
    decoded = decode_message(request.encode(), cluster=CLUSTER).header
    for header in (request.header, decoded, request.header.sealed(), request.header.replace(view=4)):
        fresh = _uncached(header)
        assert header == fresh
        assert header.encode() == fresh.encode() == header.encode_raw() == fresh.encode_raw()
        assert decode_header(header.encode(), cluster=CLUSTER) == header
    assert request.header.replace(view=4).view == 4
    assert decode_header(request.header.replace(view=4).encode(), cluster=CLUSTER).view == 4


def test_a_bad_checksum_inside_a_batch_is_not_passed_off_as_valid() -> None:
    """split_batch trusts the prepare's body checksum, not each request's: a request header with a
    wrong checksum comes out as it is (encode_raw), and encode() computes the right one afresh."""
    good = _request(1).encode()
    bad = bytes(16) + good[16:]
    (header,) = [m.header for m in split_batch(bad)]
    assert not header.valid_checksum()
    assert header.encode_raw() == bad[:HEADER_SIZE]
    assert header.encode() == good[:HEADER_SIZE]
    assert encode_batch(split_batch(good + good)) == good + good
