"""Subscription documents get the request limits queries get (tokens, depth, aliases,
cost): the hub parses and validates them itself, and a subscriber's document then runs
once per change for as long as it stays."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import websockets

from gateway.app import create_app
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, serve


def _aliased(count: int) -> str:
    fields = " ".join(f"a{i}: version" for i in range(count))
    return f"subscription {{ shadowChanged {{ kind {fields} }} }}"


async def _refusal(ws: TransportWS, query: str) -> dict[str, Any]:
    op_id = await ws.subscribe(query)
    message = await ws.receive()
    assert message["type"] == "error" and message["id"] == op_id, message
    [error] = message["payload"]
    return dict(error)


async def test_subscriptions_are_held_to_the_query_limits(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1, machines=1)
    limited = dataclasses.replace(settings, max_aliases=5, max_tokens=200, max_depth=1)
    async with serve(create_app(limited, stores=stores)) as address, \
            TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"

        aliases = await _refusal(ws, _aliased(6))
        assert aliases["extensions"]["code"] == "LIMIT_EXCEEDED"
        assert aliases["extensions"]["limit"] == "maxAliases"

        # A fragment does not hide depth: shadowChanged > shadow > version is too deep.
        deep = await _refusal(ws, "subscription { shadowChanged { ...F } } "
                                  "fragment F on ShadowEvent { shadow { version } }")
        assert deep["extensions"]["code"] == "LIMIT_EXCEEDED"
        assert deep["extensions"]["limit"] == "maxDepth"

        # Within every limit the same connection still subscribes and gets snapshots.
        await ws.subscribe(_aliased(5))
        event = await ws.next_event()
        assert event["kind"] == "SNAPSHOT" and "a4" in event

        # Over the token limit the document is not parsed past the limit; like any syntax
        # error in a subscribe message, graphql-transport-ws closes the socket with 4400.
        await ws.subscribe(_aliased(5).replace("kind", "kind " * 200))
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            while True:
                await ws.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        assert "more than 200 tokens" in closed.value.rcvd.reason
