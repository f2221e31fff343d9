"""Prepared WebSocket frames: one subscription result's payload compressed once, and every
member's message built around it without compressing again (gorilla/websocket's
``PreparedMessage``, extended to messages that differ per socket).

A subscription's message is its head (``{"id":"<op>","type":"next","payload":``, or the
legacy protocol's ``{"type":"data","id":"<op>","payload":``), the payload shared by every
member of its group, and ``}``. With permessage-deflate negotiated *without server context
takeover* (RFC 7692 §7.1.1.1; ``gateway.http.ws_protocol``) each message the server sends
is a DEFLATE stream of its own, so the message can be spliced from blocks:

    stored block (the head) | the payload's blocks | stored block (``}``) | 0x00

The payload is compressed once per group (raw deflate, the negotiated window, ended with
``Z_SYNC_FLUSH``, so its blocks end byte-aligned inside an empty stored block's header);
the head's stored block is built once per subscription. A stored block is a header byte
(BFINAL=0, BTYPE=00, padded: ``0x00``), LEN and NLEN (little-endian), then the bytes. The
payload's sync flush ends with ``00 00 ff ff``: its last stored block's LEN and NLEN, which
are dropped and replaced by the tail's (so the tail goes into that block). The message
ends with one more ``0x00``, the header of an empty stored block, which the receiver's
appended ``00 00 ff ff`` (§7.2.2) completes. Nothing in it refers back past its own
start, so any receiver's inflater, reset per message or not, decodes it.

The frame header is the server's (RFC 6455 §5.2): FIN, RSV1 on a compressed message,
opcode text, a 7-, 16- or 64-bit length and no mask.
"""

from __future__ import annotations

import struct
import zlib

PREPARED_FRAMES = "iotsphere.prepared_frames"  # the ASGI scope extension (ws_protocol)
TAIL = b"}"  # closes both protocols' messages
_EMPTY_BLOCK_LEN = b"\x00\x00\xff\xff"  # LEN/NLEN of an empty stored block
_STORED_MAX = 0xFFFF
_TEXT = 0x81  # FIN + opcode text
_TEXT_COMPRESSED = 0xC1  # FIN + RSV1 + opcode text


def stored_blocks(data: bytes) -> bytes:
    """``data`` as non-final DEFLATE stored blocks, from a byte boundary."""
    out = bytearray()
    for start in range(0, max(len(data), 1), _STORED_MAX):
        chunk = data[start:start + _STORED_MAX]
        out += b"\x00" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    return bytes(out)


def deflated_body(payload: bytes, window_bits: int) -> bytes:
    """The shared part of every member's compressed message: ``payload``'s blocks,
    compressed once, then ``}`` and the closing empty block's header (see the module
    docstring). A member's message is its head's ``stored_blocks`` and this."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    blocks = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert blocks.endswith(_EMPTY_BLOCK_LEN), "a sync flush ends with an empty stored block"
    # The flush's empty stored block carries the tail instead, then one more block starts.
    return (blocks[:-4] + struct.pack("<HH", len(TAIL), len(TAIL) ^ 0xFFFF) + TAIL
            + b"\x00")


def frame_header(length: int, compressed: bool) -> bytes:
    """A server's (unmasked) header for one whole text message of ``length`` bytes."""
    first = _TEXT_COMPRESSED if compressed else _TEXT
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


class PreparedHead:
    """One subscription's message head, as text and as stored blocks: built once."""

    __slots__ = ("raw", "stored")

    def __init__(self, head: str) -> None:
        self.raw = head.encode()
        self.stored = stored_blocks(self.raw)


class PreparedPayload:
    """One group's payload (UTF-8 JSON), with its compressed forms made on first use,
    once per window size (every socket of a gateway negotiates the same one unless a
    client asks for a smaller window)."""

    __slots__ = ("_deflated", "plain", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.plain = text + TAIL
        self._deflated: dict[int, bytes] = {}

    def deflated(self, window_bits: int) -> bytes:
        body = self._deflated.get(window_bits)
        if body is None:
            body = self._deflated[window_bits] = deflated_body(self.text, window_bits)
        return body


def message(head: PreparedHead, payload: PreparedPayload, window_bits: int | None) -> bytes:
    """The whole frame of ``head`` + ``payload`` + ``}``: compressed with permessage-deflate
    when ``window_bits`` (the server's negotiated window) is given, else plain text."""
    if window_bits is None:
        body = head.raw + payload.plain
        return frame_header(len(body), False) + body
    shared = payload.deflated(window_bits)
    return b"".join((frame_header(len(head.stored) + len(shared), True), head.stored, shared))
