"""The two telemetry modes side by side on one server: ``bench/telemetry.py --timescale DSN``.

Two databases on the TimescaleDB server at DSN (a superuser DSN): one migrated as the
partitioned mode, one as the TimescaleDB mode, so both run on the same PostgreSQL with
the same settings. The same readings are bulk-loaded into both (binary COPY, 100 devices,
one reading every 10 s each, going back from now), and each query is timed in
alternating rounds (partitioned, timescale, partitioned, ...) so both see the same
machine load; the ratio is what to read, not the milliseconds.

Phases per size: right after the bulk load (TimescaleDB has materialized nothing: its
view aggregates readings), after the gateway's refresh of what the load touched (timed:
the cost of making reads fast again), and right after late readings (one per device,
12 hours late, in the queried range; before the refresh that follows them, then after).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from gateway.stores.sqlfiles import migrations
from gateway.stores.telemetry import SeriesQuery, TelemetryStore

DEVICES = 100
STEP = timedelta(seconds=10)
MODES = ("partitioned", "timescale")


def _dsn(server: str, database: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + database


async def _create(server: str, name: str, mode: str) -> str:
    """A database migrated as ``mode`` whatever the server would choose. TimescaleDB's
    refresh policy is paused: it would materialize a long load while it runs (the 10 M run
    of 2026-12-07 04:23 measured "right after the bulk load" after it had), and the
    benchmark decides when the aggregate is refreshed."""
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(_dsn(server, name))
    try:
        await conn.execute("""CREATE TABLE schema_migrations (version text PRIMARY KEY,
            name text NOT NULL, variant text, applied_at timestamptz NOT NULL DEFAULT now())""")
        for m in migrations("telemetry", mode):
            await conn.execute(m.sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                               m.version, m.name, mode)
        if mode == "timescale":
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_refresh_continuous_aggregate'")
    finally:
        await conn.close()
    return _dsn(server, name)


async def _drop(server: str, names: list[str]) -> None:
    admin = await asyncpg.connect(server)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _load(dsn: str, tenant: UUID, devices: list[UUID], end: datetime, have: int,
                want: int) -> float:
    """COPYs readings going back from ``end`` until ``want`` are stored; seconds taken."""
    began = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        first_step, last_step = have // DEVICES, want // DEVICES
        await conn.execute("SELECT readings_ensure_partitions($1, $2)",
                           end - last_step * STEP, end)
        for first in range(first_step, last_step, 10_000):
            records = [(tenant, d, "temperature", end - (k + 1) * STEP, 50.0 + (k % 600) / 60)
                       for k in range(first, min(first + 10_000, last_step)) for d in devices]
            await conn.copy_records_to_table(
                "readings", records=records,
                columns=["tenant_id", "device_id", "metric", "time", "value"])
        await conn.execute("ANALYZE readings")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def _alternating(rounds: int, calls: dict[str, Callable[[], Awaitable[object]]]
                       ) -> dict[str, float]:
    """Median ms per call, the calls taking turns round after round (after 2 warm-ups)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for n in range(rounds + 2):
        for name, call in calls.items():
            began = time.perf_counter()
            await call()
            if n >= 2:
                samples[name].append((time.perf_counter() - began) * 1000)
    return {name: statistics.median(s) for name, s in samples.items()}


async def compare(server: str, sizes: list[int], rounds: int) -> tuple[list[str], list[str]]:
    """Markdown table rows and notes."""
    names = [f"bench_modes_{mode}" for mode in MODES]
    stores: dict[str, TelemetryStore] = {}
    rows: list[str] = []
    notes: list[str] = []
    tenant, devices = uuid4(), [uuid4() for _ in range(DEVICES)]
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    day = SeriesQuery(metric="temperature", start=end - timedelta(hours=24), end=end,
                      bucket=timedelta(minutes=5))
    hourly = SeriesQuery(metric="temperature", start=day.start, end=end,
                         bucket=timedelta(hours=1))
    admin = await asyncpg.connect(server)
    try:
        versions = await admin.fetchrow(
            "SELECT current_setting('server_version') AS pg, (SELECT default_version FROM"
            " pg_available_extensions WHERE name = 'timescaledb') AS tsdb")
    finally:
        await admin.close()
    assert versions is not None
    notes.append(f"server: PostgreSQL {versions['pg']}, TimescaleDB {versions['tsdb']} "
                 "(not the embedded PostgreSQL named in the machine line)")
    try:
        for mode, name in zip(MODES, names, strict=True):
            # A generous timeout: before its first refresh, TimescaleDB aggregates readings.
            stores[mode] = TelemetryStore(await _create(server, name, mode), max_size=2,
                                          timeout=300.0)
            await stores[mode].connect()
        ts = stores["timescale"].refresher
        assert ts is not None
        ts.delay = 3600.0  # refreshed when this benchmark says so
        have = 0

        async def measure(size: int, phase: str, rounds: int = rounds) -> None:
            for label, q in (("24 h x 5 min", day), ("24 h x 1 h", hourly)):
                got = await _alternating(rounds, {
                    mode: (lambda s=store, q=q: s.series(tenant, devices, q))
                    for mode, store in stores.items()})
                ratio = got["timescale"] / got["partitioned"]
                rows.append(f"| {size:,} | {phase} | {label} | {got['partitioned']:.1f} | "
                            f"{got['timescale']:.1f} | {ratio:.2f} |")

        for size in sizes:
            loads = {mode: await _load(store.dsn, tenant, devices, end, have, size)
                     for mode, store in stores.items()}
            notes.append(f"{size:,} readings: bulk load (COPY) {loads['partitioned']:.0f} s "
                         f"partitioned (rollup trigger), {loads['timescale']:.0f} s TimescaleDB")
            oldest = end - (size // DEVICES) * STEP
            await measure(size, "right after the bulk load", rounds=min(rounds, 5))
            stores["timescale"].wrote(oldest, end)  # what the gateway's ingest paths do
            began = time.perf_counter()
            assert await ts.flush()
            notes.append(f"{size:,} readings: TimescaleDB refresh of what the load touched "
                         f"{time.perf_counter() - began:.1f} s (off the request path)")
            await measure(size, "after the gateway's refresh")
            late = end - timedelta(hours=12, seconds=5)
            for mode, store in stores.items():
                began = time.perf_counter()
                await store.ingest(tenant, devices, ["temperature"] * DEVICES,
                                   [late] * DEVICES, [99.0] * DEVICES)
                notes.append(f"{size:,} readings: {DEVICES} readings 12 h late, one "
                             f"statement, {mode}: {(time.perf_counter() - began) * 1000:.0f} ms")
            await measure(size, "right after 100 readings 12 h late")
            began = time.perf_counter()
            assert await ts.flush()
            notes.append(f"{size:,} readings: TimescaleDB refresh after them "
                         f"{(time.perf_counter() - began) * 1000:.0f} ms")
            await measure(size, "after that refresh")
            [a], [b] = [await s.series(tenant, devices[:1], day) for s in stores.values()]
            assert a.count == b.count and len(a.values) == len(b.values) and all(
                math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a.values, b.values,
                                                                 strict=True)), "modes differ"
            have = size
    finally:
        for store in stores.values():
            await store.aclose()
        await _drop(server, names)
    return rows, notes
