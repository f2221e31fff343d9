"""shadowChanged over WebSockets against a real server, Redis and PostgreSQL: what a
subscriber receives (SNAPSHOT first, then UPDATED/DELETED in version order) and which
devices it receives them for (device ids, asset subtree, whole tenant, never another
tenant's)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.shadows import shadow_key, topology_channel
from tests.conftest import Gateway, Tenant
from tests.support.live_server import TransportWS, serve

SUB = """subscription($ids: [ID!], $asset: ID) {
  shadowChanged(deviceIds: $ids, assetId: $asset) {
    kind deviceId version shadow { version reported desired delta }
  }
}"""
UPDATE = """mutation($d: ID!, $r: JSON!) {
  updateShadow(deviceId: $d, reported: $r) { version } }"""


@pytest.fixture
async def address(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    async with serve(create_app(settings, stores=stores)) as addr:
        yield addr


async def plant(stores: Stores, tenant: Tenant) -> Fleet:
    """Two sites, one machine each. Devices 0 and 2 sit under Site 1, 1 and 3 under
    Site 2; device 0 is PROVISIONED without a shadow, the others ACTIVE at version 1."""
    return await seed_fleet(stores, tenant.id, devices=4, hours=0.05, sites=2, lines=1,
                            machines=1)


async def report(gateway: Gateway, tenant: Tenant, device: Any, value: Any) -> int:
    body = await gateway.query(UPDATE, {"d": str(device), "r": {"n": value}}, key=tenant.key)
    assert "errors" not in body, body
    version: int = body["data"]["updateShadow"]["version"]
    return version


async def subscribe(ws: TransportWS, variables: dict[str, Any]) -> str:
    assert (await ws.receive())["type"] == "connection_ack"
    return await ws.subscribe(SUB, variables)


async def snapshots(ws: TransportWS, count: int) -> dict[str, dict[str, Any]]:
    events = [await ws.next_event() for _ in range(count)]
    assert [e["kind"] for e in events] == ["SNAPSHOT"] * count, events
    return {e["deviceId"]: e for e in events}


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


async def test_device_filter_receives_only_its_devices(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    fleet = await plant(stores, tenant)
    watched, other = fleet.devices[2], fleet.devices[1]
    async with TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {"ids": [str(watched)]})
        assert set(await snapshots(ws, 1)) == {str(watched)}
        for n in (2, 3):
            # The other device changes first: were it delivered, it would come first.
            await report(gateway, tenant, other, n)
            assert await report(gateway, tenant, watched, n) == n
            event = await ws.next_event()
            assert (event["deviceId"], event["kind"], event["version"]) == (
                str(watched), "UPDATED", n)


async def test_asset_filter_follows_attach_and_detach(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    fleet = await plant(stores, tenant)
    site, machine = fleet.assets["Site 1"], fleet.assets["Machine 1.1.1"]
    unshadowed, outside, inside, moved = (str(d) for d in fleet.devices)
    async with TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {"asset": str(site)})
        snaps = await snapshots(ws, 2)
        assert set(snaps) == {unshadowed, inside}
        assert (snaps[unshadowed]["shadow"], snaps[unshadowed]["version"]) == (None, None)
        assert snaps[inside]["version"] == 1

        await report(gateway, tenant, outside, 1)
        await report(gateway, tenant, inside, 1)
        event = await ws.next_event()
        assert (event["deviceId"], event["kind"], event["version"]) == (inside, "UPDATED", 2)

        body = await gateway.query(
            "mutation($d: ID!, $a: ID!) { attachDevice(deviceId: $d, assetId: $a) { id } }",
            {"d": moved, "a": str(machine)}, key=tenant.key)
        assert "errors" not in body, body
        event = await ws.next_event()
        assert (event["deviceId"], event["kind"], event["version"]) == (moved, "SNAPSHOT", 1)
        await report(gateway, tenant, moved, 2)
        event = await ws.next_event()
        assert (event["deviceId"], event["kind"], event["version"]) == (moved, "UPDATED", 2)

        body = await gateway.query(
            "mutation($d: ID!) { detachDevice(deviceId: $d) { id } }", {"d": moved},
            key=tenant.key)
        assert "errors" not in body, body
        for version in (3, 4):
            await report(gateway, tenant, moved, version)
            await report(gateway, tenant, inside, version)
            event = await ws.next_event()
            assert (event["deviceId"], event["version"]) == (inside, version), event


async def test_whole_tenant_includes_devices_registered_later(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    fleet = await plant(stores, tenant)
    async with TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {})
        snaps = await snapshots(ws, 4)
        assert set(snaps) == {str(d) for d in fleet.devices}
        assert snaps[str(fleet.devices[0])]["shadow"] is None

        await report(gateway, tenant, fleet.devices[3], 1)
        event = await ws.next_event()
        assert (event["deviceId"], event["kind"], event["version"]) == (
            str(fleet.devices[3]), "UPDATED", 2)

        body = await gateway.query(
            'mutation { registerDevice(input: {serial: "NEW-1", name: "new", type: "t"}) '
            "{ device { id } } }", key=tenant.key)
        new = body["data"]["registerDevice"]["device"]["id"]
        await report(gateway, tenant, new, 1)
        event = await ws.next_event()
        # Its first delivery: the subscriber never had a SNAPSHOT of it.
        assert (event["deviceId"], event["kind"], event["version"]) == (new, "SNAPSHOT", 1)


async def test_tenants_are_isolated(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await plant(stores, tenant)
    theirs = await seed_fleet(stores, other_tenant.id, devices=2, hours=0.05, sites=1,
                              lines=1, machines=1)
    async with TransportWS.connect(address, other_tenant.key) as ws:
        await subscribe(ws, {})
        assert set(await snapshots(ws, 2)) == {str(d) for d in theirs.devices}
        for n in (2, 3):
            await report(gateway, tenant, mine.devices[1], n)
            await report(gateway, other_tenant, theirs.devices[1], n)
            event = await ws.next_event()
            assert (event["deviceId"], event["version"]) == (str(theirs.devices[1]), n)

        for variables in ({"ids": [str(mine.devices[1])]}, {"asset": str(mine.assets["Site 1"])}):
            op = await ws.subscribe(SUB, variables)
            message = await ws.receive()
            assert (message["type"], message["id"]) == ("error", op), message
            assert [e["extensions"]["code"] for e in message["payload"]] == ["NOT_FOUND"]


async def test_versions_snapshot_delete_and_recreate(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    fleet = await plant(stores, tenant)
    fresh, device = str(fleet.devices[0]), str(fleet.devices[2])
    async with TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {"ids": [fresh, device]})
        snaps = await snapshots(ws, 2)
        assert (snaps[fresh]["version"], snaps[fresh]["shadow"]) == (None, None)
        assert snaps[device]["version"] == snaps[device]["shadow"]["version"] == 1
        wire = list(snaps.values())

        await report(gateway, tenant, fresh, 1)
        wire.append(event := await ws.next_event())
        assert (event["deviceId"], event["kind"], event["version"]) == (fresh, "UPDATED", 1)

        body = await gateway.query("mutation($d: ID!) { deleteShadow(deviceId: $d) }",
                                   {"d": device}, key=tenant.key)
        assert body["data"]["deleteShadow"] is True
        wire.append(event := await ws.next_event())
        assert (event["kind"], event["version"], event["shadow"]) == ("DELETED", 1, None)

        assert await report(gateway, tenant, device, "back") == 2  # continues the version
        wire.append(event := await ws.next_event())
        assert (event["kind"], event["version"]) == ("UPDATED", 2)
        assert event["shadow"]["reported"] == {"n": "back"}

        # Concurrent writers: whatever is coalesced, the wire only moves forward.
        await asyncio.gather(*(report(gateway, tenant, device, n) for n in range(20)))
        while wire[-1]["deviceId"] != device or wire[-1]["version"] != 22:
            wire.append(await ws.next_event())

    ranks: dict[str, list[int]] = {}
    for event in wire[2:]:
        rank = 2 * event["version"] + (event["kind"] == "DELETED")
        ranks.setdefault(event["deviceId"], []).append(rank)
    for device_ranks in ranks.values():
        assert device_ranks == sorted(set(device_ranks)), ranks


async def test_change_right_after_a_detach_is_not_delivered(
    address: str, stores: Stores, tenant: Tenant
) -> None:
    """The topology message and the device's change arrive together (one pipeline, as from
    another replica): the hub applies the topology first."""
    fleet = await plant(stores, tenant)
    moved, inside = fleet.devices[0], fleet.devices[2]
    async with TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {"asset": str(fleet.assets["Site 1"])})
        await snapshots(ws, 2)
        await stores.assets.set_device_asset(tenant.id, moved, None)
        for n in (1, 2):
            async with stores.shadows.client.pipeline(transaction=False) as pipe:
                pipe.publish(topology_channel(tenant.id), b"1")
                for device in (moved, inside):
                    pipe.hset(shadow_key(tenant.id, device), mapping={
                        "reported": b"{}", "version": 1 + n,
                        "updatedAt": datetime.now(UTC).isoformat()})
                await pipe.execute()
            event = await ws.next_event()
            assert (event["deviceId"], event["version"]) == (str(inside), 1 + n), event


def _live(type_name: str) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == type_name)


async def test_a_long_subscription_keeps_nothing_per_event(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    """Each event's execution memo (graphql-core's collected sub-fields) was shared with
    the subscription's executor and kept for the subscription's life: a soak's memory
    grew with every event delivered."""
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.1, sites=1, lines=1,
                             machines=1)
    device = str(fleet.active[0])

    async def updates(values: range) -> None:
        for value in values:
            await report(gateway, tenant, device, value)
            event = await ws.next_event()
            assert (event["kind"], event["shadow"]["reported"]["n"]) == ("UPDATED", value)

    async with TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {"ids": [device]})
        assert (await ws.next_event())["kind"] == "SNAPSHOT"
        await updates(range(5))
        before = _live("CollectedFields")
        await updates(range(5, 35))
        after = _live("CollectedFields")
    assert after - before < 10, (before, after)  # 30 events
