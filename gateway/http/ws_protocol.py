"""The gateway's WebSocket protocol for uvicorn: uvicorn's websockets-sansio implementation,
with permessage-deflate negotiated without server context takeover and a write of
prepared frames (``gateway.http.ws_frames``) that the hub's writer uses for subscription
results.

Passed as uvicorn's ``ws`` (``iotsphere serve``, its workers, the test servers and the
benchmarks' uvicorn all name ``WS_PROTOCOL``). A socket it accepts carries, in its ASGI
scope's ``extensions``, ``PREPARED_FRAMES``: ``{"write": write_prepared}``. The app looks
it up and falls back to ``websocket.send`` when it is absent (another server, a test
transport) or when ``write_prepared`` returns False.

Why no server context takeover: with it, each compressed message may refer back to the
ones before it on the same socket, so each socket must compress each message itself (a
third of the gateway's CPU per delivered message, and half its memory at 10,000 sockets:
a compressor per socket; bench/RESULTS.md). Without it each message stands alone, so one
compression of a result serves every socket that receives it. The price is on the wire:
a stream of similar small messages compresses far better against its predecessors (a
~240-byte shadowChanged message: ~18 bytes with context takeover, ~210 alone; measured
with zlib on 200 successive versions of one device's event).

``write_prepared`` writes a whole frame with ``transport.write`` only when uvicorn's own
``send`` would write at once: the handshake done, no close sent or received, the socket
still open and its transport not paused. Otherwise it returns False and the caller takes
``send``, which waits for the transport to drain (a slow reader), raises when the client
has gone, and so keeps flow control and the closing handshake as they are. websockets
builds whole frames per call and uvicorn writes them out at once (pings, pongs, closes,
the app's other messages), so a frame written here never lands inside one of theirs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.http.ws_frames import PREPARED_FRAMES, PreparedHead, message
from gateway.live.payload import PreparedPayload

WS_PROTOCOL = "gateway.http.ws_protocol:GatewayWebSocketProtocol"  # uvicorn's `ws`
WINDOW_BITS = 12  # uvicorn's choice, kept: a 4 KiB window per socket's decompressor


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, config: Config, server_state: ServerState,
                 app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    server_max_window_bits=WINDOW_BITS,
                    client_max_window_bits=WINDOW_BITS,
                    compress_settings={"memLevel": 5},
                )],
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )
        self.window_bits: int | None = None  # the server's negotiated window; None: plain

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code != 101:
            return
        window_bits: int | None = None
        for extension in self.conn.extensions:
            if not (isinstance(extension, PerMessageDeflate)
                    and extension.local_no_context_takeover):
                return  # messages this writer cannot build: every send goes the usual way
            window_bits = extension.local_max_window_bits
        self.window_bits = window_bits
        # The app's task is created but has not run: it sees the scope with this in it.
        self.scope["extensions"][PREPARED_FRAMES] = {"write": self.write_prepared}

    def write_prepared(self, head: PreparedHead, payload: PreparedPayload) -> bool:
        """Writes ``head`` + ``payload`` + ``}`` as one text message when uvicorn's ``send``
        would write it without waiting; False (nothing written) otherwise."""
        if (not self.writable.is_set() or self.close_sent or self.disconnected
                or not self.handshake_complete or self.initial_response is not None
                or self.conn.state is not State.OPEN or self.transport.is_closing()):
            return False
        self.transport.write(message(head, payload, self.window_bits))
        return True
