"""The whole gateway on a local 3-primary Valkey Cluster (each primary with a replica):
shadows, rate limits and the hub, which listens on every primary."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.shadows import shadow_key
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, serve
from tests.support.valkey_cluster import LocalCluster, local_cluster

SUB = "subscription { shadowChanged { kind deviceId version } }"
UPDATE = """mutation($d: ID!, $n: Int!) { updateShadow(deviceId: $d, reported: {n: $n})
    { version } }"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(replicas=True) as started:
        yield started


@pytest.fixture
async def on_cluster(settings: Settings, cluster: LocalCluster
                     ) -> AsyncIterator[tuple[Settings, Stores]]:
    for node in cluster.primaries:
        node.client().flushall()
    clustered = dataclasses.replace(settings, redis_url=cluster.url, rate_limit=1000.0,
                                    rate_burst=1000)
    async with open_stores(clustered) as stores:
        yield clustered, stores


async def _fleet(stores: Stores, tenant: Tenant, cluster: LocalCluster) -> Fleet:
    fleet = await seed_fleet(stores, tenant.id, devices=12, hours=0.02, sites=1, lines=1,
                             machines=1)
    holders = {stores.shadows.client.get_node_from_key(  # type: ignore[union-attr]
        shadow_key(tenant.id, d)).name for d in fleet.active}
    assert len(holders) == 3  # the tenant's shadows sit on every primary
    return fleet


async def _update(address: str, key: str, device: Any, n: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
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
