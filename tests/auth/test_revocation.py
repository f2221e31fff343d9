"""A revoked API key, or a decommissioned device, loses the WebSockets it opened too, on
every replica: the revocation travels over Redis and each hub closes its own sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from gateway.app import create_app
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.registry import VerifiedKeys
from tests.conftest import Gateway, Tenant
from tests.support.live_server import TransportWS, serve

CREATE = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { secret apiKey { id } } }"""
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"
DECOMMISSION = "mutation($id: ID!) { decommissionDevice(id: $id) { status } }"
SUB = "subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) { kind version } }"


@pytest.fixture
async def replica(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    """A second gateway on the same stores: the sockets live there, the writes go through
    the ``gateway`` fixture's app."""
    async with serve(create_app(settings, stores=stores)) as address:
        yield address


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                            machines=1)


async def _key(gateway: Gateway, tenant: Tenant, **input: Any) -> tuple[str, str]:
    body = await gateway.query(CREATE, {"input": input}, key=tenant.key)
    assert "errors" not in body, body
    made = body["data"]["createApiKey"]
    return made["apiKey"]["id"], made["secret"]


async def _closed_code(ws: TransportWS) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await ws.receive(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _subscribed(ws: TransportWS, device: Any) -> None:
    assert (await ws.receive())["type"] == "connection_ack"
    await ws.subscribe(SUB, {"ids": [str(device)]})
    assert (await ws.next_event())["kind"] == "SNAPSHOT"


async def test_revoking_a_key_closes_its_sockets_on_every_replica(
    gateway: Gateway, replica: str, tenant: Tenant, fleet: Fleet
) -> None:
    key_id, secret = await _key(gateway, tenant, name="dashboard", role="VIEWER")
    device = fleet.devices[1]
    async with TransportWS.connect(replica, secret) as revoked, \
            TransportWS.connect(replica, tenant.key) as kept:
        await _subscribed(revoked, device)
        await _subscribed(kept, device)
        body = await gateway.query(REVOKE, {"id": key_id}, key=tenant.key)
        assert "errors" not in body, body
        assert await _closed_code(revoked) == (4403, "Credential revoked")
        # Another key's socket on the same replica keeps its subscription.
        await gateway.query("""mutation($d: ID!) { updateShadow(deviceId: $d,
            reported: {n: 1}) { version } }""", {"d": str(device)}, key=tenant.key)
        assert (await kept.next_event())["kind"] == "UPDATED"


async def test_decommissioning_a_device_closes_the_sockets_it_opened(
    gateway: Gateway, replica: str, tenant: Tenant, fleet: Fleet
) -> None:
    device = fleet.devices[1]
    _, secret = await _key(gateway, tenant, name="the device", role="DEVICE",
                           deviceId=str(device))
    async with TransportWS.connect(replica, secret) as as_device:
        await _subscribed(as_device, device)
        body = await gateway.query(DECOMMISSION, {"id": str(device)}, key=tenant.key)
        assert "errors" not in body, body
        assert await _closed_code(as_device) == (4403, "Credential revoked")


def test_a_revoked_key_loses_its_registry_outage_grace() -> None:
    keys = VerifiedKeys(grace=60.0, clock=lambda: 0.0)
    keys.remember(b"h1", {"id": "k1"})
    keys.remember(b"h2", {"id": "k2"})
    keys.forget_ids(["k1"])  # type: ignore[list-item]
    assert keys.recent(b"h1") is None and keys.recent(b"h2") == {"id": "k2"}
