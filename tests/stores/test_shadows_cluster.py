"""The shadow store on a 3-primary Valkey Cluster: a tenant's devices spread over every
node, a tenant-wide read is one script call per node, one-device writes stay in a slot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from gateway.runtime.valkey_cluster import LocalCluster, local_cluster
from gateway.stores.shadow_layout import move_old_layout
from gateway.stores.shadows import ShadowDoc, ShadowStore


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster() as started:
        yield started


@pytest.fixture
async def shadows(cluster: LocalCluster) -> AsyncIterator[ShadowStore]:
    for node in cluster.primaries:
        node.client().flushall()
    store = ShadowStore(cluster.url)
    await store.connect()
    yield store
    await store.aclose()


def _doc(device: object, version: int) -> ShadowDoc:
    return ShadowDoc(device, version, {}, {"v": version}, {},  # type: ignore[arg-type]
                     datetime(2026, 1, 1, tzinfo=UTC))


def _script_calls(cluster: LocalCluster) -> list[int]:
    calls = []
    for node in cluster.primaries:
        stats = node.client().info("commandstats")
        calls.append(sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
                         for c in ("evalsha", "eval")))
    return calls


async def test_a_tenant_spreads_and_is_read_with_one_call_per_node(
        cluster: LocalCluster, shadows: ShadowStore) -> None:
    tenant = uuid4()
    devices = [uuid4() for _ in range(60)]
    for n, device in enumerate(devices):
        await shadows.put(tenant, _doc(device, n + 1))
    sizes = [node.client().dbsize() for node in cluster.primaries]
    assert all(size > 0 for size in sizes) and sum(sizes) == 60  # type: ignore[operator]

    await shadows.get_many(tenant, devices)  # loads the script on each node (NOSCRIPT once)
    await shadows.get_with_versions(tenant, devices)
    for node in cluster.primaries:
        node.client().config_resetstat()
    missing = uuid4()
    docs = await shadows.get_many(tenant, [*devices, missing])
    assert [d.version if d else None for d in docs] == [*range(1, 61), None]
    assert _script_calls(cluster) == [1, 1, 1]

    for node in cluster.primaries:
        node.client().config_resetstat()
    rows = await shadows.get_with_versions(tenant, devices)
    assert [version for _, version in rows] == list(range(1, 61))
    assert _script_calls(cluster) == [1, 1, 1]


async def test_writes_of_one_device_stay_in_its_slot(shadows: ShadowStore) -> None:
    tenant, device, other = uuid4(), uuid4(), uuid4()
    await shadows.put(tenant, _doc(device, 1))
    updated = await shadows.update(tenant, device, lambda cur, last: _doc(device, last + 1))
    assert updated.version == 2
    assert await shadows.delete(tenant, device)
    assert await shadows.get_with_versions(tenant, [device, other]) == [(None, 2), (None, None)]
    again = await shadows.update(tenant, device, lambda cur, last: _doc(device, last + 1))
    assert again.version == 3  # continues the deleted shadow's version

    await shadows.put(tenant, _doc(other, 1))
    assert await shadows.delete_many([(tenant, device), (tenant, other)]) == 2
    assert await shadows.get_many(tenant, [device, other]) == [None, None]


async def test_old_layout_keys_move_on_a_cluster(shadows: ShadowStore) -> None:
    tenant, device = uuid4(), uuid4()
    old = f"iot:{{{tenant}}}:shadow:{device}"
    await shadows.client.hset(old, mapping={  # type: ignore[arg-type]
        "desired": b"{}", "reported": b'{"a": 1}', "metadata": b"{}", "version": 4,
        "updatedAt": datetime(2026, 1, 1, tzinfo=UTC).isoformat()})
    assert await move_old_layout(shadows.client) == 1
    [doc] = await shadows.get_many(tenant, [device])
    assert doc is not None and doc.version == 4 and doc.reported == {"a": 1}
    assert not await shadows.client.exists(old)
