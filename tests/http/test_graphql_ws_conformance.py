"""Protocol conformance of shadowChanged: the legacy ``graphql-ws`` subprotocol spoken by
hand, and ``graphql-transport-ws`` driven by the reference client from npm
(``tests/js/subscribe.mjs``, ``graphql-ws``), installed here on first use."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from gateway.live.hub import ShadowHub
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.live.test_subscriptions import SUB, report
from tests.support.js import JS, npm_ready
from tests.support.live_server import wait_until


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                            machines=1)


class LegacyWS:
    """The legacy subscriptions-transport-ws protocol (subprotocol ``graphql-ws``)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        """The next message other than a keep-alive (``ka``)."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), 10)
            assert isinstance(frame, str), "the protocol's messages are text frames"
            message: dict[str, Any] = json.loads(frame)
            if message["type"] != "ka":
                return message


def legacy(address: str) -> Any:
    return websockets.connect(f"ws://{address}/graphql", subprotocols=["graphql-ws"])


async def test_legacy_graphql_ws_protocol(
    served: tuple[str, ShadowHub], gateway: Gateway, tenant: Tenant, fleet: Fleet
) -> None:
    address, hub = served
    device = str(fleet.active[0])
    async with legacy(address) as raw:
        assert raw.subprotocol == "graphql-ws"
        ws = LegacyWS(raw)
        await ws.send({"type": "connection_init",
                       "payload": {"Authorization": f"Bearer {tenant.key}"}})
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.send({"id": "1", "type": "start",
                       "payload": {"query": SUB, "variables": {"ids": [device]}}})
        events = []
        for _ in range(3):
            message = await ws.receive()
            assert (message["type"], message["id"]) == ("data", "1"), message
            events.append(message["payload"]["data"]["shadowChanged"])
            if len(events) < 3:
                await report(gateway, tenant, device, len(events))
        assert [(e["kind"], e["version"]) for e in events] == [
            ("SNAPSHOT", 1), ("UPDATED", 2), ("UPDATED", 3)]

        await ws.send({"id": "1", "type": "stop"})
        assert await ws.receive() == {"type": "complete", "id": "1"}
        await wait_until(lambda: hub.subscriber_count == 0 and not hub._cohorts)

        await ws.send({"id": "2", "type": "start", "payload": {
            "query": SUB, "variables": {"ids": ["00000000-0000-4000-8000-000000000000"]}}})
        message = await ws.receive()
        assert (message["type"], message["id"]) == ("error", "2"), message
        assert message["payload"]["extensions"]["code"] == "NOT_FOUND"


async def test_legacy_protocol_refuses_a_bad_key(served: tuple[str, ShadowHub]) -> None:
    address, _ = served
    async with legacy(address) as raw:
        ws = LegacyWS(raw)
        await ws.send({"type": "connection_init", "payload": {"Authorization": "Bearer nope"}})
        assert (await ws.receive())["type"] == "connection_error"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.receive()
        assert closed.value.rcvd is not None  # a close frame, not a dropped connection


# graphql-ws 6 is the reference; 5.10 is what GraphiQL 2.x bundles, whose validator refuses
# a connection_ack with `"payload": null` ("Invalid message" in the IDE).
CLIENTS = ("graphql-ws", "graphql-ws-5")


@pytest.mark.parametrize("client", CLIENTS)
async def test_reference_client_from_npm(
    served: tuple[str, ShadowHub], gateway: Gateway, tenant: Tenant, fleet: Fleet, client: str
) -> None:
    await asyncio.to_thread(npm_ready, *CLIENTS)
    address, hub = served
    device = str(fleet.active[0])
    prepared = hub.frames.prepared
    node = await asyncio.create_subprocess_exec(
        "node", str(JS / "subscribe.mjs"), f"ws://{address}/graphql", tenant.key, device, "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GRAPHQL_WS_CLIENT": client})
    try:
        assert node.stdout is not None
        # The server's messages are compressed, each on its own (gateway.http.ws_protocol):
        # ws inflates the hub's spliced frames.
        line = await asyncio.wait_for(node.stdout.readline(), 30)
        assert line, (await node.stderr.read()).decode() if node.stderr else ""
        extensions = json.loads(line)["extensions"]
        assert extensions.startswith("permessage-deflate"), extensions
        assert "server_no_context_takeover" in extensions, extensions
        events = []
        for n in range(3):
            line = await asyncio.wait_for(node.stdout.readline(), 30)
            assert line, (await node.stderr.read()).decode() if node.stderr else ""
            events.append(json.loads(line))
            if n < 2:
                await report(gateway, tenant, device, n)
        assert await asyncio.wait_for(node.wait(), 30) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert [(e["kind"], e["deviceId"], e["version"]) for e in events] == [
        ("SNAPSHOT", device, 1), ("UPDATED", device, 2), ("UPDATED", device, 3)]
    assert events[2]["shadow"]["reported"]["n"] == 1
    assert hub.frames.prepared - prepared == 3
    # The client's `complete` (it leaves after three events) ended the subscription.
    await wait_until(lambda: hub.subscriber_count == 0 and not hub._cohorts)


async def test_reference_client_is_refused_with_4403(
    served: tuple[str, ShadowHub], fleet: Fleet
) -> None:
    await asyncio.to_thread(npm_ready, *CLIENTS)
    address, _ = served
    node = await asyncio.create_subprocess_exec(
        "node", str(JS / "subscribe.mjs"), f"ws://{address}/graphql", "iot_wrong",
        str(fleet.active[0]), "1", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(node.communicate(), 60)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert node.returncode == 5 and out == b""
    assert "4403" in err.decode(), err.decode()
