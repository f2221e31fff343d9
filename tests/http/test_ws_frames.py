"""Prepared frames (gateway.http.ws_frames), read back as a receiver reads them: the
header parsed by RFC 6455's rules, the body inflated with a fresh raw inflater after the
``00 00 ff ff`` that RFC 7692 §7.2.2 has the receiver append. Real clients receive them
in tests/live/test_prepared_frames.py."""

from __future__ import annotations

import struct
import zlib

import pytest

from gateway.http.ws_frames import PreparedHead, frame_header, message
from gateway.live.payload import PreparedPayload, stored_blocks

HEADS = ['{"id":"1","type":"next","payload":',
         '{"type":"data","id":"opération ✓","payload":']


def parse(frame: bytes) -> tuple[int, bool, bytes]:
    """(opcode, RSV1, payload) of one whole unmasked frame; fails on anything else."""
    first, second = frame[0], frame[1]
    assert first & 0x80, "FIN"
    assert not first & 0x30, "RSV2 and RSV3 are clear"
    assert not second & 0x80, "a server's frame is not masked"
    length, offset = second & 0x7F, 2
    if length == 126:
        (length,), offset = struct.unpack("!H", frame[2:4]), 4
        assert length >= 126, "the shortest length encoding"
    elif length == 127:
        (length,), offset = struct.unpack("!Q", frame[2:10]), 10
        assert length >= 0x10000, "the shortest length encoding"
    assert len(frame) == offset + length, "one whole frame"
    return first & 0x0F, bool(first & 0x40), frame[offset:]


def inflate(body: bytes, window_bits: int = 12) -> bytes:
    inflater = zlib.decompressobj(-window_bits)
    out = inflater.decompress(body + b"\x00\x00\xff\xff")
    assert not inflater.unconsumed_tail and not inflater.unused_data
    assert not inflater.eof, "no final block: the stream goes on in the next message"
    return out


def payloads() -> list[bytes]:
    json = b'{"data":{"shadowChanged":{"kind":"UPDATED","version":7}}}'
    return [b"", b"{}", json, "«é✓ 温度»".encode() * 11, json * 3000,
            bytes(range(32, 127)) * 1200]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("payload", payloads(), ids=lambda p: f"{len(p)}B")
@pytest.mark.parametrize("window_bits", [12, 9, 15])
def test_a_compressed_message_inflates_to_head_payload_and_tail(
    head: str, payload: bytes, window_bits: int
) -> None:
    frame = message(PreparedHead(head), PreparedPayload(payload), window_bits)
    opcode, rsv1, body = parse(frame)
    assert (opcode, rsv1) == (1, True)
    text = inflate(body, window_bits)
    assert text == head.encode() + payload + b"}"
    text.decode()  # whole UTF-8


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("payload", payloads(), ids=lambda p: f"{len(p)}B")
def test_a_plain_message_is_head_payload_and_tail(head: str, payload: bytes) -> None:
    opcode, rsv1, body = parse(message(PreparedHead(head), PreparedPayload(payload), None))
    assert (opcode, rsv1, body) == (1, False, head.encode() + payload + b"}")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_the_header_takes_the_shortest_length_encoding(length: int) -> None:
    if length >= 1:  # a plain message of exactly `length` bytes: the payload and `}`
        body = parse(message(PreparedHead(""), PreparedPayload(b"x" * (length - 1)), None))[2]
        assert len(body) == length
    header = frame_header(length, True)
    assert len(header) == (2 if length < 126 else 4 if length < 65536 else 10)
    opcode, rsv1, body = parse(header + b"\x00" * length)
    assert (opcode, rsv1, len(body)) == (1, True, length)


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 140_000])
def test_a_head_of_any_length_becomes_stored_blocks(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    blocks = stored_blocks(data)
    assert inflate(blocks) == data
    payload = PreparedPayload(b'{"data":null}')
    head = PreparedHead(data.decode("latin-1"))
    assert inflate(parse(message(head, payload, 12))[2]) == head.raw + b'{"data":null}}'


def test_messages_inflate_one_after_another_with_context_kept() -> None:
    """A receiver that keeps its inflater across messages (no server_no_context_takeover
    seen) decodes them as well: nothing refers back past a message's start."""
    inflater = zlib.decompressobj(-12)
    payload = PreparedPayload(b'{"data":{"v":1}}' * 50)
    for op in ("a", "bb", "ccc"):
        head = PreparedHead(f'{{"id":"{op}","type":"next","payload":')
        body = parse(message(head, payload, 12))[2]
        assert inflater.decompress(body + b"\x00\x00\xff\xff") == head.raw + payload.text + b"}"


def test_a_wrong_stored_length_fails_to_inflate() -> None:
    """The check above would see a broken splice: one LEN off and the receiver fails."""
    head = PreparedHead('{"id":"1","type":"next","payload":')
    body = bytearray(parse(message(head, PreparedPayload(b'{"data":1}'), 12))[2])
    body[1] += 1  # the head's LEN
    with pytest.raises(zlib.error):
        inflate(bytes(body))
