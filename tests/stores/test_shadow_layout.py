"""Shadows of the old per-tenant key layout move to one slot per device, losing nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.shadow_layout import LAYOUT, LAYOUT_KEY, move_old_layout
from gateway.stores.shadows import ShadowDoc, shadow_key, shadow_keys, version_key
from tests.support.lifespan import Lifespan


def _old_shadow(tenant: UUID, device: UUID) -> str:
    return f"iot:{{{tenant}}}:shadow:{device}"


def _old_version(tenant: UUID, device: UUID) -> str:
    return f"iot:{{{tenant}}}:shadowver:{device}"


def _fields(version: int, reported: bytes = b'{"t": 1}') -> dict[str, object]:
    return {"desired": b"{}", "reported": reported, "metadata": b"{}", "version": version,
            "updatedAt": datetime(2026, 1, 1, tzinfo=UTC).isoformat()}


def test_each_device_has_its_own_slot() -> None:
    tenant, a, b = uuid4(), uuid4(), uuid4()
    assert shadow_key(tenant, a) == f"iot:{{{tenant}:{a}}}:shadow"
    # A device's shadow and version key share a tag (one slot); two devices do not.
    assert version_key(tenant, a).startswith(f"iot:{{{tenant}:{a}}}")
    assert shadow_key(tenant, a).split("}")[0] != shadow_key(tenant, b).split("}")[0]
    # The batch form (reads of many devices) names the very same keys.
    assert shadow_keys(tenant, [a, b]) == [shadow_key(tenant, a), shadow_key(tenant, b)]


async def test_old_keys_move_and_nothing_goes_backwards(stores: Stores) -> None:
    client = stores.shadows.client
    tenant = uuid4()
    plain, deleted, newer, recreated_lower = uuid4(), uuid4(), uuid4(), uuid4()
    await client.hset(_old_shadow(tenant, plain), mapping=_fields(5))  # type: ignore[arg-type]
    await client.set(_old_version(tenant, deleted), 7)
    # Already written at a higher version under the new layout: the old copy is stale.
    await client.hset(_old_shadow(tenant, newer), mapping=_fields(2))  # type: ignore[arg-type]
    await stores.shadows.put(tenant, ShadowDoc(newer, 9, {}, {"t": 9}, {},
                                               datetime(2026, 1, 2, tzinfo=UTC)))
    # Deleted under the new layout at version 4: an old version-3 shadow must not return.
    await client.hset(_old_shadow(tenant, recreated_lower), mapping=_fields(3))  # type: ignore[arg-type]
    await client.set(version_key(tenant, recreated_lower), 4)
    await client.set(f"iot:{{{tenant}}}:shadow:not-a-device", "foreign")

    assert await move_old_layout(client) == 2  # plain's shadow, deleted's version

    moved, tomb, kept, gone = await stores.shadows.get_with_versions(
        tenant, [plain, deleted, newer, recreated_lower])
    assert moved[0] is not None and moved[0].version == 5 and moved[0].reported == {"t": 1}
    assert tomb == (None, 7)
    assert kept[0] is not None and kept[0].version == 9
    assert gone == (None, 4)
    left = sorted([k async for k in client.scan_iter(match="iot:{*}:shadow*:*")])
    assert left == [f"iot:{{{tenant}}}:shadow:not-a-device".encode()]
    assert await client.get(LAYOUT_KEY) == LAYOUT
    assert await move_old_layout(client) == 0  # idempotent


async def test_an_old_key_newer_than_the_new_layout_wins(stores: Stores) -> None:
    """An old-release replica wrote after a first copy: the higher version is kept."""
    client = stores.shadows.client
    tenant, device = uuid4(), uuid4()
    await client.hset(_old_shadow(tenant, device), mapping=_fields(5))  # type: ignore[arg-type]
    await client.hset(shadow_key(tenant, device), mapping=_fields(5))  # type: ignore[arg-type]
    await client.hset(_old_shadow(tenant, device), mapping=_fields(6))  # type: ignore[arg-type]
    assert await move_old_layout(client) == 1
    [doc] = await stores.shadows.get_many(tenant, [device])
    assert doc is not None and doc.version == 6
    assert not await client.exists(_old_shadow(tenant, device))


async def test_the_gateway_moves_old_keys_at_start(settings: Settings, stores: Stores) -> None:
    client = stores.shadows.client
    tenant, device = uuid4(), uuid4()
    await client.hset(_old_shadow(tenant, device), mapping=_fields(3))  # type: ignore[arg-type]
    app = create_app(settings)  # opens its own stores, as a deployment does
    async with Lifespan(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/healthz")).status_code == 200
        [doc] = await stores.shadows.get_many(tenant, [device])
        assert doc is not None and doc.version == 3
    assert await client.get(LAYOUT_KEY) == LAYOUT
