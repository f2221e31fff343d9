"""Retention by whole days in both telemetry modes, and partitions ahead of the data
(partitioned mode; TimescaleDB creates its chunks itself)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.jobs import retention
from gateway.jobs.leader import JobLeader
from gateway.jobs.retention import maintain
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.jobs.test_reconciler import FAULTS, Stop
from tests.support.telemetry_mode import PARTITIONED, stored_days, telemetry_mode


async def _partitions(stores: Stores) -> set[str]:
    rows = await stores.telemetry.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass")
    return {r["relname"] for r in rows}


async def _partitioned_only(stores: Stores) -> None:
    if (mode := await telemetry_mode(stores)) != PARTITIONED:
        pytest.skip(f"partitioned mode only (this server runs {mode}): "
                    "readings_ensure_partitions creates no chunk on TimescaleDB")


async def test_retention_by_day_and_partitions_ahead(
    stores: Stores, settings: Settings, tenant: Tenant
) -> None:
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    row = await stores.registry.insert_device(tenant.id, serial="R", name="r", type="s")
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    await stores.telemetry.insert_readings([
        (tenant.id, row["id"], "t", old, 1.0), (tenant.id, row["id"], "t", recent, 2.0)])

    kept = dataclasses.replace(settings, telemetry_retention_days=0)
    assert await maintain(stores, kept, now) == 0
    days = await stored_days(stores)
    if await telemetry_mode(stores) == PARTITIONED:  # a week ahead, made by maintain
        assert {(now + timedelta(days=d)).date() for d in range(-1, 8)} <= days
    assert old.date() in days

    month = dataclasses.replace(settings, telemetry_retention_days=30)
    assert await maintain(stores, month, now) >= 1
    days = await stored_days(stores)
    assert old.date() not in days
    assert recent.date() in days
    values = await stores.telemetry.pool.fetch("SELECT value FROM readings ORDER BY time")
    assert [v["value"] for v in values] == [2.0]
    # Late data for a dropped day is still accepted: the partition comes back.
    assert await stores.telemetry.ingest(tenant.id, [row["id"]], ["t"], [old], [3.0]) == 1
    assert old.date() in await stored_days(stores)


async def test_sessions_creating_the_same_days_at_once_all_succeed(stores: Stores) -> None:
    """Partition housekeeping, seeding and ingest may all reach a new day together: the
    losers of the race must find the winner's partition, not fail. CI once saw "type
    readings_YYYYMMDD already exists" (caught since); this race does not
    reproduce it on demand, but any error of the kind fails it."""
    await _partitioned_only(stores)
    for round_ in range(3):
        start = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=10 * round_)
        sessions = [asyncpg.connect(stores.telemetry.dsn) for _ in range(6)]
        conns = await asyncio.gather(*sessions)
        try:
            created = await asyncio.gather(*(
                c.fetchval("SELECT readings_ensure_partitions($1, $2)", start,
                           start + timedelta(days=2)) for c in conns))
        finally:
            await asyncio.gather(*(c.close() for c in conns))
        assert sum(created) == 3  # each of the three days created once, by someone
    parts = await _partitions(stores)
    assert {"readings_20310101", "readings_20310103", "readings_20310123"} <= parts


async def test_creators_of_offset_day_ranges_never_deadlock(stores: Stores) -> None:
    """Housekeeping ensures yesterday..a week ahead while seeding and ingests ensure
    today..two days ahead: with offset ranges, one creator holding readings' ATTACH lock
    and another holding an uncommitted day deadlocked in 5-6 of 12 rounds before the
    creators were serialised (migration 009). Each session runs in its own transaction,
    as ingest's in-request creation does, so locks are held until commit."""
    await _partitioned_only(stores)
    conns = await asyncio.gather(*(asyncpg.connect(stores.telemetry.dsn) for _ in range(6)))
    try:
        for round_ in range(12):
            start = datetime(2032, 1, 1, tzinfo=UTC) + timedelta(days=20 * round_)

            async def create(conn: asyncpg.Connection, offset: int, start: datetime) -> int:
                first = start + timedelta(days=offset)
                async with conn.transaction():
                    created = await conn.fetchval(
                        "SELECT readings_ensure_partitions($1, $2)", first,
                        first + timedelta(days=2 + offset % 3))
                    await asyncio.sleep(0.01)  # hold the locks a little, as ingest does
                return int(created)

            created = await asyncio.gather(*(
                create(conn, offset, start)
                for offset, conn in zip([3, 0, 2, 1, 4, 0], conns, strict=True)))
            # Days start+0 .. start+7 (offset 4 reaches 4 + 2 + 1): each created once.
            assert sum(created) == 8, (round_, created)
            parts = await _partitions(stores)
            assert {f"readings_{start + timedelta(days=d):%Y%m%d}" for d in range(8)} <= parts
    finally:
        await asyncio.gather(*(c.close() for c in conns))


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: type(f).__name__)
async def test_periodic_upkeep_survives_every_store_error(
    stores: Stores, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, fault: Exception, leader: JobLeader,
) -> None:
    calls: list[int] = []

    async def flaky(opened: Stores, given: Settings, now: datetime | None = None) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise fault
        if len(calls) == 2:
            return await maintain(opened, given)
        raise Stop

    monkeypatch.setattr(retention, "maintain", flaky)
    monkeypatch.setattr(retention, "INTERVAL", 0)
    with pytest.raises(Stop):
        await retention.run_periodically(stores, settings, leader)
    assert len(calls) == 3
    assert "telemetry maintenance" in caplog.text and "assets" in caplog.text
