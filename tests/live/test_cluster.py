"""The whole gateway on a local 3-primary Valkey Cluster (each primary with a replica):
shadows, rate limits and the hub, which listens on every primary."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.runtime.valkey_cluster import LocalCluster, local_cluster
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.shadows import shadow_key
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, serve

SUB = "subscription { shadowChanged { kind deviceId version } }"
UPDATE = """mutation($d: ID!, $n: Int!) { updateShadow(deviceId: $d, reported: {n: $n})
    { version } }"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(replicas=True) as started:
        yield started


@pytest.fixture
def doomed_cluster() -> Iterator[LocalCluster]:
    """A cluster of the test's own: it loses a primary."""
    with local_cluster(replicas=True) as started:
        yield started


@asynccontextmanager
async def _on(settings: Settings, cluster: LocalCluster
              ) -> AsyncIterator[tuple[Settings, Stores]]:
    for node in cluster.primaries:
        node.client().flushall()
    clustered = dataclasses.replace(settings, redis_url=cluster.url, rate_limit=1000.0,
                                    rate_burst=1000)
    async with open_stores(clustered) as stores:
        yield clustered, stores


@pytest.fixture
async def on_cluster(settings: Settings, cluster: LocalCluster
                     ) -> AsyncIterator[tuple[Settings, Stores]]:
    async with _on(settings, cluster) as opened:
        yield opened


@pytest.fixture
async def on_doomed_cluster(settings: Settings, doomed_cluster: LocalCluster
                            ) -> AsyncIterator[tuple[Settings, Stores]]:
    async with _on(settings, doomed_cluster) as opened:
        yield opened


async def _fleet(stores: Stores, tenant: Tenant, cluster: LocalCluster) -> Fleet:
    # Device ids are random, so where their slots fall is too: with 12 devices all three
    # primaries held one in ~98% of runs (CI met the other 2%); 36 leave ~1 in 100,000.
    fleet = await seed_fleet(stores, tenant.id, devices=36, hours=0.02, sites=1, lines=1,
                             machines=1)
    holders = {stores.shadows.client.get_node_from_key(  # type: ignore[union-attr]
        shadow_key(tenant.id, d)).name for d in fleet.active}
    assert len(holders) == 3, holders  # the tenant's shadows sit on every primary
    return fleet


async def _update(address: str, key: str, device: Any, n: int) -> dict[str, Any]:
    # The gateway answers within its own store and request timeouts (STORE_UNAVAILABLE
    # while a node is down); httpx's 5 s default timed out first on a busy machine.
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
        response = await http.post("/graphql", headers={"Authorization": f"Bearer {key}"},
                                   json={"query": UPDATE, "variables": {"d": str(device),
                                                                         "n": n}})
    body: dict[str, Any] = response.json()
    return body


async def test_subscriptions_see_changes_on_every_node(
        on_cluster: tuple[Settings, Stores], cluster: LocalCluster, tenant: Tenant) -> None:
    settings, stores = on_cluster
    fleet = await _fleet(stores, tenant, cluster)
    async with serve(create_app(settings)) as address, \
            TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB)
        snapshots = [await ws.next_event() for _ in fleet.devices]  # with or without shadow
        assert {e["deviceId"] for e in snapshots} == {str(d) for d in fleet.devices}
        for device in fleet.active:
            body = await _update(address, tenant.key, device, 1)
            assert body["data"]["updateShadow"]["version"] == 2, body
        events = [await ws.next_event() for _ in fleet.active]
        assert {(e["kind"], e["deviceId"], e["version"]) for e in events} == {
            ("UPDATED", str(d), 2) for d in fleet.active}


async def test_a_slot_moved_live_keeps_updates_flowing(
        on_cluster: tuple[Settings, Stores], cluster: LocalCluster, tenant: Tenant) -> None:
    """The slot of a watched device moves to another primary (IMPORTING/MIGRATING, MIGRATE,
    SETSLOT NODE) between writes: the writes and the subscriber follow it."""
    settings, stores = on_cluster
    fleet = await _fleet(stores, tenant, cluster)
    device = fleet.active[0]
    key = shadow_key(tenant.id, device)
    client = stores.shadows.client
    slot = client.keyslot(key)  # type: ignore[union-attr]
    source_name = client.get_node_from_key(key).name  # type: ignore[union-attr]
    [source] = [n for n in cluster.primaries if f"127.0.0.1:{n.port}" == source_name]
    target = next(n for n in cluster.primaries if n is not source)
    async with serve(create_app(settings)) as address, \
            TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe("subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) "
                           "{ kind deviceId version } }", {"ids": [str(device)]})
        assert (await ws.next_event())["version"] == 1
        assert (await _update(address, tenant.key, device, 1))["data"]["updateShadow"][
            "version"] == 2
        assert (await ws.next_event())["version"] == 2

        src, dst = source.client(), target.client()
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id())
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id())
        keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in cluster.primaries:
            node.client().execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id())
        assert dst.exists(key)

        versions = []
        for n in range(2, 5):
            body = await _update(address, tenant.key, device, n)
            assert "errors" not in body, body
            versions.append(body["data"]["updateShadow"]["version"])
        assert versions == [3, 4, 5]
        seen = []
        while not seen or seen[-1] != 5:
            seen.append((await ws.next_event(timeout=30))["version"])
        assert seen == sorted(seen) and seen[-1] == 5
    [doc] = await stores.shadows.get_many(tenant.id, [device])
    assert doc is not None and doc.version == 5


async def test_a_primary_killed_under_load_fails_over_losing_no_version(
        on_doomed_cluster: tuple[Settings, Stores], doomed_cluster: LocalCluster,
        tenant: Tenant) -> None:
    """Writes keep coming while the primary holding some devices is SIGKILLed; its replica
    takes over. No acknowledged version is lost, none goes backwards for a subscriber, and
    the subscriber ends on every device's final version."""
    settings, stores = on_doomed_cluster
    cluster = doomed_cluster
    fleet = await _fleet(stores, tenant, cluster)
    victim_name = stores.shadows.client.get_node_from_key(  # type: ignore[union-attr]
        shadow_key(tenant.id, fleet.active[0])).name
    [victim] = [n for n in cluster.primaries if f"127.0.0.1:{n.port}" == victim_name]
    [heir] = [n for n in cluster.replicas if n.client().execute_command("ROLE")[2] == victim.port]
    acked = {str(d): 1 for d in fleet.active}
    seen: dict[str, list[int]] = {str(d): [] for d in fleet.devices}
    async with serve(create_app(settings)) as address, \
            TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB)

        def converged() -> bool:
            return all(seen[d] and seen[d][-1] == v for d, v in acked.items())

        done = asyncio.Event()

        async def listen() -> None:
            while True:
                event = await ws.next_event(timeout=60)
                if event["version"] is not None:
                    seen[event["deviceId"]].append(event["version"])
                    if converged():
                        done.set()

        listener = asyncio.create_task(listen())

        async def write(device: str, n: int) -> None:
            async with asyncio.timeout(60):
                while True:  # refused while the node is down: retried, as a client would
                    body = await _update(address, tenant.key, device, n)
                    if "errors" not in body:
                        acked[device] = body["data"]["updateShadow"]["version"]
                        return
                    await asyncio.sleep(0.1)

        for n in range(8):
            if n == 3:
                victim.process.kill()
            await asyncio.gather(*(write(str(d), n) for d in fleet.active))
        if not converged():  # else the last event already was every final version
            done.clear()
            await asyncio.wait_for(done.wait(), 60)
        listener.cancel()
    assert heir.client().execute_command("ROLE")[0] == b"master"  # a failover took place
    stored = await stores.shadows.get_many(tenant.id, fleet.active)
    assert {str(d): s.version for d, s in zip(fleet.active, stored, strict=True) if s} == acked
    assert all(v == 9 for v in acked.values())  # 8 updates after the seeded version 1
    for versions in seen.values():
        assert versions == sorted(versions)  # never backwards (SNAPSHOTs may repeat one)
