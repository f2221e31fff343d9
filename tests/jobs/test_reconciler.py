"""The reconciler on its own (no app runs here, so no background pass interferes): what it
repairs, what it leaves alone, paging through batches, idempotence, surviving an outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.errors import StoreConflict, StoreUnavailable
from gateway.jobs import reconciler
from gateway.jobs.leader import JobLeader
from gateway.jobs.reconciler import Repairs, reconcile
from gateway.stores import Stores
from gateway.stores.shadows import ShadowDoc, version_key
from tests.conftest import Tenant

NOW = datetime.now(UTC).replace(microsecond=0)


async def device(stores: Stores, tenant: Tenant, status: str = "ACTIVE") -> UUID:
    row = await stores.registry.insert_device(
        tenant.id, serial=f"SN-{uuid4().hex[:8]}", name="d", type="t", status=status
    )
    await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=None, metadata={"m": 1},
                                       capabilities=[])
    device_id: UUID = row["id"]
    return device_id


async def shadow(stores: Stores, tenant: Tenant, device_id: UUID, version: int = 3) -> None:
    await stores.shadows.put(tenant.id, ShadowDoc(device_id, version, {"a": 1}, {}, {}, NOW))


async def orphan(stores: Stores, tenant: Tenant) -> UUID:
    device_id = uuid4()
    await stores.assets.upsert_profile(tenant.id, device_id, asset_id=None, metadata={},
                                       capabilities=[])
    return device_id


async def last_seen(stores: Stores, tenant: Tenant, ids: list[UUID]) -> list[datetime | None]:
    rows = await stores.registry.devices_by_ids(tenant.id, ids)
    return [r["last_seen_at"] if r else None for r in rows]


async def test_repairs_every_kind_of_leftover_across_tenants_and_batches(
    stores: Stores, tenant: Tenant, other_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciler, "BATCH", 2)
    orphans, retired, stale, live = [], [], [], []
    for owner in (tenant, other_tenant, tenant, other_tenant, tenant):
        orphans.append((owner, await orphan(stores, owner)))
        gone = await device(stores, owner, status="DECOMMISSIONED")
        await shadow(stores, owner, gone)
        retired.append((owner, gone))
        behind = await device(stores, owner)
        await stores.telemetry.insert_readings([
            (owner.id, behind, "temp", NOW - timedelta(minutes=9), 1.0),
            (owner.id, behind, "power", NOW - timedelta(minutes=3), 1.0),
        ])
        stale.append((owner, behind))
        alive = await device(stores, owner)
        await shadow(stores, owner, alive)
        live.append((owner, alive))

    assert await reconcile(stores, grace=timedelta(0)) == Repairs(
        orphan_profiles=5, shadows=5, last_seen=5)

    for owner, device_id in orphans:
        assert await stores.assets.profiles_by_device(owner.id, [device_id]) == [None]
    for owner, device_id in retired:
        assert await stores.shadows.get_many(owner.id, [device_id]) == [None]
        assert await stores.shadows.client.get(version_key(owner.id, device_id)) == b"3"
        # A registered device keeps its profile, decommissioned or not.
        assert (await stores.assets.profiles_by_device(owner.id, [device_id]))[0] is not None
    for owner, device_id in stale:
        assert await last_seen(stores, owner, [device_id]) == [NOW - timedelta(minutes=3)]
    for owner, device_id in live:
        assert (await stores.shadows.get_many(owner.id, [device_id]))[0] is not None
        assert (await stores.assets.profiles_by_device(owner.id, [device_id]))[0] is not None
        assert await last_seen(stores, owner, [device_id]) == [None]

    assert await reconcile(stores, grace=timedelta(0)) == Repairs()


async def test_young_orphans_and_newer_last_seen_are_left_alone(
    stores: Stores, tenant: Tenant
) -> None:
    young = await orphan(stores, tenant)
    ahead = await device(stores, tenant)
    # lastSeenAt already past the newest stored reading (e.g. set by another path).
    await stores.registry.touch_last_seen(tenant.id, {ahead: NOW})
    await stores.telemetry.insert_readings(
        [(tenant.id, ahead, "temp", NOW - timedelta(minutes=1), 1.0)])

    assert await reconcile(stores) == Repairs()
    assert (await stores.assets.profiles_by_device(tenant.id, [young]))[0] is not None
    assert await last_seen(stores, tenant, [ahead]) == [NOW]
    # A profile touched after the cut-off is not deleted even when listed as an orphan.
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    await stores.assets.delete_orphan_profiles([young], cutoff)
    assert (await stores.assets.profiles_by_device(tenant.id, [young]))[0] is not None


class Stop(BaseException):
    """Ends a loop that catches every Exception, as cancellation does."""


# Every error class a store call can end in: an outage, a deadlock or serialization
# failure (StoreConflict ended the loop for good before), and anything unexpected.
FAULTS = [StoreUnavailable("assets"), StoreConflict("assets"), RuntimeError("assets broke")]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: type(f).__name__)
async def test_periodic_runs_survive_every_store_error(
    stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, fault: Exception, leader: JobLeader,
) -> None:
    gone = await device(stores, tenant, status="DECOMMISSIONED")
    await shadow(stores, tenant, gone)
    real, calls = reconciler.reconcile, []

    async def flaky(opened: Stores, **kwargs: Any) -> Repairs:
        calls.append(opened)
        if len(calls) == 1:
            raise fault
        if len(calls) == 2:
            return await real(opened, **kwargs)
        raise Stop

    monkeypatch.setattr(reconciler, "reconcile", flaky)
    with pytest.raises(Stop):
        await reconciler.run_periodically(stores, 0, leader)
    assert len(calls) == 3
    assert "reconciliation" in caplog.text and "assets" in caplog.text
    assert await stores.shadows.get_many(tenant.id, [gone]) == [None]
