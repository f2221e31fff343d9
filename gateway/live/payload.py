"""A subscription result's payload, prepared once for every member that receives it:
encoded to UTF-8 JSON once and, for sockets with permessage-deflate, compressed once
per window size (``PreparedPayload``). The hub's writer (``gateway.live.frames``) makes
one per group; the WebSocket edge (``gateway.http.ws_frames``) frames it per socket.

A message is a head (``{"id":"<op>","type":"next","payload":``, or the legacy protocol's
``{"type":"data","id":"<op>","payload":``), the payload and ``TAIL``. Compressed, it is a
DEFLATE stream of its own (RFC 1951, no preset dictionary, nothing referring back past
its start) spliced from blocks:

    stored block (the head) | the payload's blocks | stored block (``}``) | 0x00

The payload is compressed once (raw deflate, the given window, ended with
``Z_SYNC_FLUSH``, so its blocks end byte-aligned inside an empty stored block's header);
the head's stored block is built once per subscription (``stored_blocks``). A stored
block is a header byte (BFINAL=0, BTYPE=00, padded: ``0x00``), LEN and NLEN
(little-endian), then the bytes. The payload's sync flush ends with ``00 00 ff ff``: its
last stored block's LEN and NLEN, which are dropped and replaced by the tail's (so the
tail goes into that block). The message ends with one more ``0x00``, the header of an
empty stored block, which the receiver's appended ``00 00 ff ff`` (RFC 7692 §7.2.2)
completes.
"""

from __future__ import annotations

import struct
import zlib

TAIL = b"}"  # closes both protocols' messages
_EMPTY_BLOCK_LEN = b"\x00\x00\xff\xff"  # LEN/NLEN of an empty stored block
_STORED_MAX = 0xFFFF


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
