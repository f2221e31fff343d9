"""TimescaleDB: the gateway's refresh of what late writes touched, when another refresh of
the aggregate is running (the policy's, another worker's). TimescaleDB 2.27 and later
refuse it: the window is kept and refreshed later, and then the late reading is
materialized. Earlier releases serialise refreshes on a lock of the aggregate's
materialization hypertable: the refresh waits for the running one, then materializes the
late reading."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.telemetry_mode import TIMESCALE, materialize_rollup, telemetry_mode

pytestmark = pytest.mark.timescale


async def _stale_covers(stores: Stores, t: datetime) -> bool:
    return bool(await stores.telemetry.pool.fetchval(
        "SELECT EXISTS (SELECT FROM readings_5m_ranges() WHERE stale AND lo <= $1 AND $1 < hi)",
        t))


async def test_a_refresh_refused_for_a_concurrent_one_is_kept_and_done_later(
    stores: Stores, tenant: Tenant
) -> None:
    if (mode := await telemetry_mode(stores)) != TIMESCALE:
        pytest.skip(f"TimescaleDB mode only (this server runs {mode}): no aggregate to refresh")
    refresher = stores.telemetry.refresher
    assert refresher is not None
    refresher.delay = 3600.0  # flushed by the test
    device, now = uuid4(), datetime.now(UTC).replace(second=0, microsecond=0)
    await stores.telemetry.insert_readings(
        [(tenant.id, device, "t", now - timedelta(hours=h), 1.0) for h in range(1, 30)])
    await materialize_rollup(stores)
    late = now - timedelta(hours=20, seconds=3)
    assert await stores.telemetry.ingest(tenant.id, [device], ["t"], [late], [2.0]) == 1
    assert await _stale_covers(stores, late)

    other = await asyncpg.connect(stores.telemetry.dsn)
    try:
        if await other.fetchval("SELECT to_regclass("
                                "'_timescaledb_catalog.continuous_aggs_jobs_refresh_ranges')"
                                " IS NOT NULL"):
            # TimescaleDB 2.27 and later: what it registers for a running refresh, a window
            # of the aggregate and the live backend running it (here a session of the
            # test's), and it refuses an overlapping one.
            await other.execute(
                "INSERT INTO _timescaledb_catalog.continuous_aggs_jobs_refresh_ranges"
                " SELECT mat_hypertable_id, -9223372036854775808, 9223372036854775807,"
                "        pg_backend_pid(), 0, now()"
                " FROM _timescaledb_catalog.continuous_agg"
                " WHERE user_view_name = 'readings_5m_cagg'")
            assert not await refresher.flush()
            assert refresher.pending is not None  # kept for the next attempt
            assert await _stale_covers(stores, late)
            await other.execute(
                "DELETE FROM _timescaledb_catalog.continuous_aggs_jobs_refresh_ranges"
                " WHERE pid = pg_backend_pid()")
        else:
            # Before 2.27 there is no such catalog: a running refresh holds an
            # ExclusiveLock on the aggregate's materialization hypertable, and a second one
            # waits for it rather than being refused; it then refreshes the window.
            materialization = await other.fetchval(
                "SELECT format('%I.%I', materialization_hypertable_schema,"
                "              materialization_hypertable_name)"
                " FROM timescaledb_information.continuous_aggregates"
                " WHERE view_name = 'readings_5m_cagg'")
            running = other.transaction()
            await running.start()
            await other.execute(f"LOCK TABLE {materialization} IN EXCLUSIVE MODE")
            waiting = asyncio.create_task(refresher.flush())
            await asyncio.sleep(1.0)
            assert not waiting.done()  # waits for the running refresh
            assert await _stale_covers(stores, late)
            await running.rollback()
            assert await asyncio.wait_for(waiting, 60)
            assert refresher.pending is None
            assert not await _stale_covers(stores, late)
            return
    finally:
        await other.close()
    assert await refresher.flush()
    assert refresher.pending is None
    assert not await _stale_covers(stores, late)
