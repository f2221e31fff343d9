"""shadowChanged over WebSockets against a real server, Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest

from gateway.app import create_app
from gateway.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.shadows import shadow_key
from tests.conftest import Gateway, Tenant
from tests.live import TransportWS, serve

SUB = """subscription($ids: [ID!], $asset: ID) {
  shadowChanged(deviceIds: $ids, assetId: $asset) {
    kind deviceId version shadow { version reported desired delta }
  }
}"""


@pytest.fixture
async def address(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    async with serve(create_app(settings, stores=stores)) as addr:
        yield addr


async def test_snapshot_then_updates_from_gateway_and_from_redis(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.1, sites=1, lines=1,
                             machines=1)
    device = str(fleet.active[0])
    async with TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [device]})
        snap = await ws.next_event()
        assert snap["kind"] == "SNAPSHOT" and snap["deviceId"] == device
        assert snap["version"] == 1

        body = await gateway.query(
            'mutation($d: ID!) { updateShadow(deviceId: $d, reported: {mode: "idle"}) '
            '{ version } }', {"d": device}, key=tenant.key)
        assert body["data"]["updateShadow"]["version"] == 2
        event = await ws.next_event()
        assert (event["kind"], event["version"]) == ("UPDATED", 2)
        assert event["shadow"]["reported"]["mode"] == "idle"

        # Another Redis client writes the shadow directly: the notification comes from Redis.
        await stores.shadows.client.hset(shadow_key(tenant.id, fleet.active[0]), mapping={
            "desired": b"{}", "reported": orjson.dumps({"mode": "external"}),
            "metadata": b"{}", "version": 3, "updatedAt": datetime.now(UTC).isoformat(),
        })
        event = await ws.next_event()
        assert (event["kind"], event["version"]) == ("UPDATED", 3)
        assert event["shadow"]["reported"] == {"mode": "external"}
