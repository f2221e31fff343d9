"""The TimescaleDB storage mode, where a TimescaleDB server is reachable:
``IOTSPHERE_TEST_TIMESCALE_DSN`` (a superuser DSN), else ``IOTSPHERE_TEST_PG_DSN`` when that
server preloads TimescaleDB (then the whole suite runs in TimescaleDB mode too), else
testcontainers with a Docker engine. Elsewhere these tests are skipped, saying why:
TimescaleDB cannot be installed from the package registries this project builds from, so
the embedded stack (and CI) runs plain PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.stores.migrations import choose_telemetry_mode, migrate, telemetry_variant
from gateway.stores.telemetry import BUCKET_ORIGIN, SeriesQuery, TelemetryStore, rolled_span
from tests.conftest import _docker_available

pytestmark = pytest.mark.timescale

NO_TIMESCALE = (
    "no TimescaleDB: set IOTSPHERE_TEST_TIMESCALE_DSN (or IOTSPHERE_TEST_PG_DSN to a server "
    "that preloads timescaledb), or provide a Docker engine; TimescaleDB is not installable "
    "from the package registries")


async def _preloads_timescale(dsn: str) -> str | None:
    """None when the server at ``dsn`` runs TimescaleDB, else why not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        mode, why = await choose_telemetry_mode(conn)
    finally:
        await conn.close()
    return None if mode == "timescale" else why


@pytest.fixture(scope="module")
async def timescale_dsn() -> AsyncIterator[str]:
    dsn = os.environ.get("IOTSPHERE_TEST_TIMESCALE_DSN")
    if dsn:
        yield dsn
        return
    pg = os.environ.get("IOTSPHERE_TEST_PG_DSN")
    reason = NO_TIMESCALE
    if pg:
        why_not = await _preloads_timescale(pg)
        if why_not is None:
            yield pg
            return
        reason += f" (IOTSPHERE_TEST_PG_DSN: {why_not})"
    if not _docker_available():
        pytest.skip(reason)
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
            "WHERE view_name = 'readings_5m_cagg' AND materialized_only") == 1
        jobs = {r["proc_name"]: r["config"] for r in await conn.fetch(
            "SELECT proc_name, config FROM timescaledb_information.jobs")}
        assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= set(jobs)
        # Unbounded start: a reading of any age reaches the aggregate by the next run.
        assert '"start_offset": null' in jobs["policy_refresh_continuous_aggregate"]
        assert await migrate(conn, "telemetry") == []  # idempotent
    finally:
        await conn.close()

    store = TelemetryStore(database)
    await store.connect()
    assert store.mode == "timescale" and store.refresher is not None
    store.refresher.delay = 3600.0  # this test refreshes itself, below
    try:
        tenant, device = uuid.uuid4(), uuid.uuid4()
        # An hour of whole 30-minute buckets (they are aligned to BUCKET_ORIGIN).
        half = timedelta(minutes=30)
        start = BUCKET_ORIGIN + (datetime.now(UTC) - BUCKET_ORIGIN) // half * half - 2 * half
        times = [start + timedelta(minutes=m) for m in range(60)]
        assert await store.ingest(tenant, [device] * 60, ["t"] * 60, times,
                                  [float(m) for m in range(60)]) == 60
        assert await store.ingest(tenant, [device], ["t"], [times[0]], [0.0]) == 0
        [series] = await store.series(tenant, [device], SeriesQuery(
            metric="t", start=start, end=start + timedelta(hours=1),
            bucket=timedelta(minutes=30), aggregate="SUM"))
        assert series.count == 60 and series.values == [sum(range(30)), sum(range(30, 60))]
        # Buckets of whole 5 minutes read readings_5m, before the aggregate's refresh (from
        # readings) and after; from an unaligned start the edge comes from readings.
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
        await store.execute(
            "CALL refresh_continuous_aggregate('readings_5m_cagg', NULL, NULL)")
        [series] = await store.series(tenant, [device], hourly)
        assert series.count == 59 and series.values == expected
        [latest] = await store.latest(tenant, [device], None)
        assert latest[0]["value"] == 59.0
    finally:
        await store.aclose()
