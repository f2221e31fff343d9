"""The demo simulator writes as a user's updateShadow does: through the atomic
read-modify-write path (a concurrent update is never lost) and with its readings moving
lastSeenAt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.runtime import demo
from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from gateway.writes.shadows import update_shadow
from tests.conftest import Tenant


async def test_a_simulator_step_never_loses_a_concurrent_update_and_moves_last_seen(
    stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = fleet.active[0]
    before = datetime.now(UTC)
    user_wrote = False

    async def user_update() -> None:
        nonlocal user_wrote
        user_wrote = True
        await update_shadow(stores, tenant.id, device, desired=None,
                            reported={"mode": "stop"}, expected_version=None)

    # A user's updateShadow lands while the simulator holds a shadow it has read (the
    # window of a read-then-put); an atomic update never reads through get_many.
    real_get_many = stores.shadows.get_many

    async def get_many_then_user_writes(tenant_id: Any, ids: Any) -> Any:
        docs = await real_get_many(tenant_id, ids)
        if not user_wrote:
            await user_update()
        return docs

    monkeypatch.setattr(stores.shadows, "get_many", get_many_then_user_writes)
    await demo.simulate_step(stores, tenant.id, [device], random.Random(1))
    if not user_wrote:
        await user_update()
    monkeypatch.undo()

    [doc] = await stores.shadows.get_many(tenant.id, [device])
    assert doc is not None
    assert doc.version == 3  # seeded, then one write each
    assert doc.reported["mode"] == "stop" and "temperature" in doc.reported
    [row] = await stores.registry.devices_by_ids(tenant.id, [device])
    assert row is not None and row["last_seen_at"] >= before - timedelta(seconds=1)


async def test_seeding_retries_partition_creation_that_lost_a_deadlock(
    stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Demo seeding racing the start-up partition task once lost a deadlock: a
    StoreConflict (nothing written, safe to repeat) is retried, not fatal."""
    from gateway.errors import StoreConflict

    real = stores.telemetry.ensure_partitions
    calls: list[int] = []

    async def loses_first(start: datetime, end: datetime) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreConflict("telemetry")
        return await real(start, end)

    monkeypatch.setattr(stores.telemetry, "ensure_partitions", loses_first)
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    assert len(calls) == 2 and len(fleet.devices) == 2
