"""The TimescaleDB storage mode, where a TimescaleDB server is reachable:
``IOTSPHERE_TEST_TIMESCALE_DSN`` (a superuser DSN), or testcontainers with a Docker engine.
Elsewhere these tests are skipped, saying why: TimescaleDB cannot be installed from the
package registries this project builds from, so the embedded stack runs plain PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.stores.migrations import migrate, telemetry_variant
from gateway.stores.telemetry import BUCKET_ORIGIN, SeriesQuery, TelemetryStore, rolled_span
from tests.conftest import _docker_available


@pytest.fixture(scope="module")
def timescale_dsn() -> Iterator[str]:
    dsn = os.environ.get("IOTSPHERE_TEST_TIMESCALE_DSN")
    if dsn:
        yield dsn
        return
    if not _docker_available():
        pytest.skip("no TimescaleDB: set IOTSPHERE_TEST_TIMESCALE_DSN or provide a Docker "
                    "engine (TimescaleDB is not installable from the package registries)")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("timescale/timescaledb:latest-pg17", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture
async def database(timescale_dsn: str) -> AsyncIterator[str]:
    name = f"ts_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(timescale_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = urlunsplit(urlsplit(timescale_dsn)._replace(path="/" + name))
    try:
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_hypertable_policies_and_queries(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        assert await telemetry_variant(conn) == "timescale"
        await migrate(conn, "telemetry")
        assert await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'readings'") == 1
        assert await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.continuous_aggregates "
            "WHERE view_name = 'readings_5m' AND NOT materialized_only") == 1
        jobs = {r["proc_name"] for r in await conn.fetch(
            "SELECT proc_name FROM timescaledb_information.jobs")}
        assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= jobs
        assert await migrate(conn, "telemetry") == []  # idempotent
    finally:
        await conn.close()

    store = TelemetryStore(database)
    await store.connect()
    try:
        tenant, device = uuid.uuid4(), uuid.uuid4()
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        times = [start + timedelta(minutes=m) for m in range(60)]
        assert await store.ingest(tenant, [device] * 60, ["t"] * 60, times,
                                  [float(m) for m in range(60)]) == 60
        assert await store.ingest(tenant, [device], ["t"], [times[0]], [0.0]) == 0
        [series] = await store.series(tenant, [device], SeriesQuery(
            metric="t", start=start, end=start + timedelta(hours=1),
            bucket=timedelta(minutes=30), aggregate="SUM"))
        assert series.count == 60 and series.values == [sum(range(30)), sum(range(30, 60))]
        # Buckets of whole 5 minutes read the continuous aggregate readings_5m, before its
        # refresh (real-time aggregation) and after; from an unaligned start the edge comes
        # from readings.
        quarter = timedelta(minutes=15)
        hourly = SeriesQuery(metric="t", start=start + timedelta(seconds=30),
                             end=start + timedelta(hours=1), bucket=quarter,
                             aggregate="SUM")
        assert rolled_span(hourly) is not None
        sums: dict[datetime, float] = {}
        for m, t in enumerate(times[1:], start=1):  # the first reading is before `from`
            b = BUCKET_ORIGIN + (t - BUCKET_ORIGIN) // quarter * quarter
            sums[b] = sums.get(b, 0.0) + m
        expected = [sums[b] for b in sorted(sums)]
        [series] = await store.series(tenant, [device], hourly)
        assert series.count == 59 and series.values == expected
        await store.execute("CALL refresh_continuous_aggregate('readings_5m', NULL, NULL)")
        [series] = await store.series(tenant, [device], hourly)
        assert series.count == 59 and series.values == expected
        [latest] = await store.latest(tenant, [device], None)
        assert latest[0]["value"] == 59.0
    finally:
        await store.aclose()
