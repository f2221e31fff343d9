"""A result's prepared payload (gateway.live.payload): encoded and compressed once, its
compressed form a DEFLATE stream that inflates to the payload and the closing ``}``.
Framed and read back as a WebSocket receiver reads it in tests/http/test_ws_frames.py."""

from __future__ import annotations

import zlib

import pytest

from gateway.live.payload import TAIL, PreparedPayload, deflated_body, stored_blocks


def test_the_payload_is_compressed_once_per_window() -> None:
    payload = PreparedPayload(b'{"data":{"v":1}}')
    first = payload.deflated(12)
    assert payload.deflated(12) is first
    assert first == deflated_body(payload.text, 12)
    assert payload.deflated(10) is not first


@pytest.mark.parametrize("window_bits", [9, 12, 15])
def test_head_blocks_and_the_payload_inflate_to_one_message(window_bits: int) -> None:
    payload = PreparedPayload(b'{"data":{"shadowChanged":{"version":7}}}' * 20)
    head = b'{"id":"1","type":"next","payload":'
    inflater = zlib.decompressobj(-window_bits)
    text = inflater.decompress(stored_blocks(head) + payload.deflated(window_bits)
                               + b"\x00\x00\xff\xff")
    assert text == head + payload.text + TAIL == head + payload.plain
    assert not inflater.eof, "no final block: the stream goes on in the next message"
