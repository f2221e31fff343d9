"""Prepared frames against a real server (the gateway's uvicorn protocol,
gateway.http.ws_protocol) and the Python ``websockets`` client, which checks every frame
and inflates each compressed message as RFC 7692 says: permessage-deflate negotiated with
server_no_context_takeover, every shadowChanged result written by the hub as a spliced
frame to compressed and plain sockets alike, on both subprotocols, with the other messages
(ack, pings, complete) from websockets in between. Node's ``ws`` and Chromium receive them
in tests/http/test_graphql_ws_conformance.py and tests/http/test_real_clients.py."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any
from uuid import UUID

import pytest
import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)

from gateway.app import create_app
from gateway.http.ws_protocol import WS_PROTOCOL
from gateway.live.hub import ShadowHub
from gateway.runtime.cli import uvicorn_ws
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.live.test_subscriptions import SUB, report, subscribe
from tests.support.live_server import TransportWS, lifespan_state, serve


@pytest.fixture
async def device(stores: Stores, tenant: Tenant) -> UUID:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    return fleet.active[0]


def deflate_of(ws: Any) -> PerMessageDeflate | None:
    (extension,) = ws.protocol.extensions or (None,)
    assert extension is None or isinstance(extension, PerMessageDeflate)
    return extension


async def test_spliced_frames_reach_compressed_and_plain_sockets(
    served: tuple[str, ShadowHub], gateway: Gateway, tenant: Tenant,
    device: UUID,
) -> None:
    address, hub = served
    async with AsyncExitStack() as stack:
        sockets = []
        for compression in ("deflate", "deflate", None):
            ws = await stack.enter_async_context(websockets.connect(
                f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"],
                compression=compression))
            client = TransportWS(ws)
            await client.send({"type": "connection_init",
                               "payload": {"Authorization": f"Bearer {tenant.key}"}})
            sockets.append(client)
        deflates = [deflate_of(client.ws) for client in sockets]
        assert deflates[2] is None
        for extension in deflates[:2]:
            assert extension is not None
            assert extension.remote_no_context_takeover  # the server's messages
            assert extension.remote_max_window_bits == 12
        ids = []
        for client in sockets:
            ids.append(await subscribe(client, {"ids": [str(device)]}))
            assert (await client.next_event())["kind"] == "SNAPSHOT"
        prepared = hub.frames.prepared
        for n in range(1, 6):
            version = await report(gateway, tenant, device, {"n": n, "text": "é✓温" * n * 40})
            for client, op_id in zip(sockets, ids, strict=True):
                message = await client.receive()
                assert (message["id"], message["type"]) == (op_id, "next")
                event = message["payload"]["data"]["shadowChanged"]
                assert (event["kind"], event["version"]) == ("UPDATED", version)
                assert event["shadow"]["reported"]["n"] == {"n": n, "text": "é✓温" * n * 40}
        assert hub.frames.prepared - prepared == 15  # every frame spliced, none sent the ASGI way
        # Messages from websockets between spliced ones: a ping answered, then complete.
        pong = await sockets[0].ws.ping()
        await pong
        await sockets[0].send({"id": ids[0], "type": "complete"})
        await sockets[0].send({"type": "ping"})
        assert await sockets[0].receive() == {"type": "pong"}


async def test_spliced_frames_on_the_legacy_protocol(
    served: tuple[str, ShadowHub], gateway: Gateway, tenant: Tenant,
    device: UUID,
) -> None:
    address, hub = served
    async with websockets.connect(f"ws://{address}/graphql", subprotocols=["graphql-ws"]) as ws:
        assert deflate_of(ws) is not None
        await ws.send(json.dumps({"type": "connection_init",
                                  "payload": {"Authorization": f"Bearer {tenant.key}"}}))

        async def receive() -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(await ws.recv())
                if message["type"] != "ka":
                    return message

        assert (await receive())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "légacy", "type": "start",
                                  "payload": {"query": SUB, "variables": {"ids": [str(device)]}}}))
        prepared = hub.frames.prepared
        message = await receive()
        assert (message["type"], message["id"]) == ("data", "légacy")
        assert message["payload"]["data"]["shadowChanged"]["kind"] == "SNAPSHOT"
        version = await report(gateway, tenant, device, "legacy")
        message = await receive()
        assert (message["type"], message["id"]) == ("data", "légacy")
        assert message["payload"]["data"]["shadowChanged"]["version"] == version
        assert hub.frames.prepared - prepared == 2
        await ws.send(json.dumps({"id": "légacy", "type": "stop"}))
        assert await receive() == {"type": "complete", "id": "légacy"}


def test_the_setting_picks_the_protocol(settings: Settings) -> None:
    assert uvicorn_ws(replace(settings, ws_compression="shared")) == WS_PROTOCOL
    assert uvicorn_ws(replace(settings, ws_compression="per-socket")) == "websockets-sansio"


async def test_without_the_gateway_protocol_frames_take_the_asgi_send(
    settings: Settings, stores: Stores, gateway: Gateway, tenant: Tenant
) -> None:
    """Under uvicorn's own websockets-sansio (IOTSPHERE_WS_COMPRESSION=per-socket, or
    another server: no prepared frames in the scope, context takeover negotiated) every
    frame goes through the ASGI send, as before."""
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = fleet.active[0]
    app = create_app(settings, stores=stores)
    kept = lifespan_state(app)
    ws = uvicorn_ws(replace(settings, ws_compression="per-socket"))
    async with serve(app, ws=ws) as address, \
            TransportWS.connect(address, tenant.key) as client:
        hub: ShadowHub = kept["state"]["hub"]
        extension = deflate_of(client.ws)
        assert extension is not None and not extension.remote_no_context_takeover
        await subscribe(client, {"ids": [str(device)]})
        assert (await client.next_event())["kind"] == "SNAPSHOT"
        for n in range(3):
            version = await report(gateway, tenant, device, n)
            event = await client.next_event()
            assert (event["kind"], event["version"]) == ("UPDATED", version)
        assert hub.frames.prepared == 0 and hub.frames.frames >= 4


async def test_a_client_asking_for_a_smaller_window_gets_frames_compressed_for_it(
    served: tuple[str, ShadowHub], stores: Stores, gateway: Gateway, tenant: Tenant
) -> None:
    """A client may ask for a smaller server window (server_max_window_bits=9): negotiated,
    and its frames arrive beside a usual socket's (the payload is compressed once per
    window). zlib's inflater does not refuse a distance past the window it was given when
    the bytes are in its output, so what this shows is negotiation and delivery."""
    address, hub = served
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = fleet.active[0]
    async with websockets.connect(
            f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"], compression=None,
            extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=9)]) as small, \
            TransportWS.connect(address, tenant.key) as usual:
        client = TransportWS(small)
        await client.send({"type": "connection_init",
                           "payload": {"Authorization": f"Bearer {tenant.key}"}})
        extension = deflate_of(small)
        assert extension is not None and extension.remote_max_window_bits == 9
        for ws in (client, usual):
            await subscribe(ws, {"ids": [str(device)]})
            assert (await ws.next_event())["kind"] == "SNAPSHOT"
        prepared = hub.frames.prepared
        # Repeats 600 bytes apart: past a 512-byte window, within a 4 KiB one.
        block = "".join(f"{n * 7919 % 100_000:05d}" for n in range(120))
        version = await report(gateway, tenant, device, block * 4)
        for ws in (client, usual):
            event = await ws.next_event()
            assert (event["kind"], event["version"]) == ("UPDATED", version)
        assert hub.frames.prepared - prepared == 2
