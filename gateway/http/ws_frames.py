"""Prepared WebSocket frames: one subscription result's payload compressed once, and every
member's message built around it without compressing again (gorilla/websocket's
``PreparedMessage``, extended to messages that differ per socket).

The payload and its compressed blocks are a ``gateway.live.payload.PreparedPayload``
(made once per group by the hub's writer); this module frames a member's message: its
head's stored blocks and the payload's shared blocks, spliced as that module's docstring
draws, behind one frame header. With permessage-deflate negotiated *without server
context takeover* (RFC 7692 §7.1.1.1; ``gateway.http.ws_protocol``) each message the
server sends is a DEFLATE stream of its own, so any receiver's inflater, reset per
message or not, decodes it.

The frame header is the server's (RFC 6455 §5.2): FIN, RSV1 on a compressed message,
opcode text, a 7-, 16- or 64-bit length and no mask.
"""

from __future__ import annotations

import struct

from gateway.live.payload import PreparedPayload, stored_blocks

PREPARED_FRAMES = "iotsphere.prepared_frames"  # the ASGI scope extension (ws_protocol)
_TEXT = 0x81  # FIN + opcode text
_TEXT_COMPRESSED = 0xC1  # FIN + RSV1 + opcode text


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


def message(head: PreparedHead, payload: PreparedPayload, window_bits: int | None) -> bytes:
    """The whole frame of ``head`` + ``payload`` + ``}``: compressed with permessage-deflate
    when ``window_bits`` (the server's negotiated window) is given, else plain text."""
    if window_bits is None:
        body = head.raw + payload.plain
        return frame_header(len(body), False) + body
    shared = payload.deflated(window_bits)
    return b"".join((frame_header(len(head.stored) + len(shared), True), head.stored, shared))
