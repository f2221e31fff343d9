"""Partitions ahead of the data and retention by whole days (plain PostgreSQL mode)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from gateway.retention import maintain
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant


async def _partitions(stores: Stores) -> set[str]:
    rows = await stores.telemetry.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass")
    return {r["relname"] for r in rows}


async def test_partitions_ahead_and_retention_by_day(
    stores: Stores, settings: Settings, tenant: Tenant
) -> None:
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    row = await stores.registry.insert_device(tenant.id, serial="R", name="r", type="s")
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    await stores.telemetry.insert_readings([
        (tenant.id, row["id"], "t", old, 1.0), (tenant.id, row["id"], "t", recent, 2.0)])

    kept = dataclasses.replace(settings, telemetry_retention_days=0)
    assert await maintain(stores, kept, now) == 0
    parts = await _partitions(stores)
    assert {f"readings_{(now + timedelta(days=d)):%Y%m%d}" for d in range(-1, 8)} <= parts
    assert f"readings_{old:%Y%m%d}" in parts

    month = dataclasses.replace(settings, telemetry_retention_days=30)
    assert await maintain(stores, month, now) >= 1
    parts = await _partitions(stores)
    assert f"readings_{old:%Y%m%d}" not in parts
    assert f"readings_{recent:%Y%m%d}" in parts
    values = await stores.telemetry.pool.fetch("SELECT value FROM readings ORDER BY time")
    assert [v["value"] for v in values] == [2.0]
    # Late data for a dropped day is still accepted: the partition comes back.
    assert await stores.telemetry.ingest(tenant.id, [row["id"]], ["t"], [old], [3.0]) == 1
