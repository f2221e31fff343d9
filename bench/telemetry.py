"""Telemetry reads as history grows: a 24 h range in 5-minute buckets for 100 devices, and
``latest`` for 100 devices, with 1 M and then 10 M stored readings. Each is timed at the
store (the SQL alone) and through the gateway's HTTP API (SQL plus GraphQL execution).

    python bench/telemetry.py [--sizes 1000000,10000000] [--requests 30] [--write]
    python bench/telemetry.py --timescale DSN [--sizes ...] [--requests N] [--write]

With ``--timescale``, the partitioned and the TimescaleDB mode side by side on that
TimescaleDB server instead (bench/telemetry_modes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (  # noqa: E402
    Server,
    append_results,
    machine,
    stack_up,
    tenant_with_devices,
)
from gateway.stores import open_stores  # noqa: E402
from gateway.stores.telemetry import AGGREGATES, BUCKET_ORIGIN, SeriesQuery  # noqa: E402

DEVICES = 100
STEP = timedelta(seconds=10)  # one reading per device every 10 s: 864,000 a day for 100
SERIES = """query($ids: [ID!]!, $from: DateTime!, $to: DateTime!) {
  telemetry(deviceIds: $ids, metric: "temperature", from: $from, to: $to, bucket: "5m") {
    deviceId points { time value } stats { avg max } } }"""
LATEST = """{ devices(first: 100) { edges { node { id latest { metric value time } } } } }"""


async def load(dsn: str, tenant: UUID, devices: list[UUID], end: datetime, have: int,
               want: int) -> None:
    """Adds readings going back in time from ``end`` until ``want`` are stored."""
    conn = await asyncpg.connect(dsn)
    try:
        per_device_have, per_device_want = have // DEVICES, want // DEVICES
        oldest = end - per_device_want * STEP
        await conn.execute("SELECT readings_ensure_partitions($1, $2)", oldest, end)
        for first in range(per_device_have, per_device_want, 20_000):
            steps = range(first, min(first + 20_000, per_device_want))
            records = [(tenant, d, "temperature", end - (k + 1) * STEP, 50.0 + (k % 600) / 60)
                       for k in steps for d in devices]
            await conn.copy_records_to_table(
                "readings", records=records,
                columns=["tenant_id", "device_id", "metric", "time", "value"])
        await conn.execute("""INSERT INTO latest_readings
            SELECT DISTINCT ON (device_id, metric) tenant_id, device_id, metric, time, value
            FROM readings WHERE time > $1 ORDER BY device_id, metric, time DESC
            ON CONFLICT (device_id, metric) DO UPDATE SET time = EXCLUDED.time,
            value = EXCLUDED.value""", end - timedelta(minutes=5))
        await conn.execute("VACUUM ANALYZE readings")
        await conn.execute("VACUUM ANALYZE readings_5m")
    finally:
        await conn.close()


async def timed(requests: int, call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    for _ in range(3):
        await call()
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * .99))]


async def run(args: argparse.Namespace) -> str:
    rows = []
    loads = [os.getloadavg()]
    load_times: dict[int, float] = {}
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    with stack_up() as stack, tempfile.NamedTemporaryFile(suffix=".log") as log:
        tenant, key, devices = await tenant_with_devices(stack.settings, DEVICES)
        assert stack.settings.telemetry_dsn
        have = 0
        with Server(stack, Path(log.name)) as server:
            async with open_stores(stack.settings) as stores, httpx.AsyncClient(
                    base_url=server.url, timeout=60,
                    headers={"Authorization": f"Bearer {key}"}) as http:
                for size in args.sizes:
                    began = time.perf_counter()
                    await load(stack.settings.telemetry_dsn, tenant, devices, end, have, size)
                    loaded = load_times[size] = time.perf_counter() - began
                    have = size
                    day = SeriesQuery(metric="temperature", start=end - timedelta(hours=24),
                                      end=end, bucket=timedelta(minutes=5))
                    variables = {"ids": [str(d) for d in devices],
                                 "from": day.start.isoformat(), "to": end.isoformat()}

                    async def api(query: str, variables: dict[str, object]) -> None:
                        body = (await http.post("/graphql", json={
                            "query": query, "variables": variables})).json()
                        assert "errors" not in body, body["errors"]

                    hourly = dataclasses.replace(day, bucket=timedelta(hours=1))
                    raw_sql = stores.telemetry.sql["series_bucketed"].replace(
                        "{agg}", AGGREGATES["AVG"])
                    asset = uuid4()  # one asset above all the devices
                    pairs = [(asset, d) for d in devices]

                    async def over_readings(q: SeriesQuery = day, sql: str = raw_sql) -> object:
                        return await stores.telemetry.fetch(
                            sql, tenant, devices, q.metric, q.start, q.end, q.bucket,
                            BUCKET_ORIGIN)

                    async def asset_rollup(q: SeriesQuery = day,
                                           p: list[tuple[UUID, UUID]] = pairs) -> object:
                        return await stores.telemetry.rollup(tenant, p, q)

                    measured = {
                        "24 h, 5 min buckets, SQL": await timed(args.requests, lambda q=day: (
                            stores.telemetry.series(tenant, devices, q))),
                        "24 h, 5 min buckets, SQL over readings (the path before the rollup)":
                            await timed(args.requests, over_readings),
                        "24 h, 1 h buckets, SQL": await timed(args.requests, lambda q=hourly: (
                            stores.telemetry.series(tenant, devices, q))),
                        "24 h, 5 min buckets, one asset over the 100 devices, SQL":
                            await timed(args.requests, asset_rollup),
                        "24 h, 5 min buckets, API": await timed(args.requests, lambda v=variables: (
                            api(SERIES, v))),
                        "latest, SQL": await timed(args.requests, lambda: (
                            stores.telemetry.latest(tenant, devices, None))),
                        "latest, API": await timed(args.requests, lambda: api(LATEST, {})),
                    }
                    rows += [(size, name, p50, p99, loaded)
                             for name, (p50, p99) in measured.items()]
    loads.append(os.getloadavg())
    lines = [
        f"## Telemetry reads ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, bench/telemetry.py)", "",
        f"Machine: {machine()}. Load average (1/5/15 min) {_load(loads[0])} at the start, "
        f"{_load(loads[1])} at the end. {DEVICES} devices, one reading every 10 s each, plain "
        "PostgreSQL with daily partitions and the 5-minute rollup (maintained by trigger "
        "while loading: " + ", ".join(f"{n:,} readings in {t:.0f} s"
                                      for n, t in load_times.items()) + "). The range ends "
        "on a whole minute, not on a 5-minute boundary: the rollup path reads its edges "
        "from readings. SQL = the store adapter's one query; API = the "
        f"same data through HTTP and GraphQL. {args.requests} requests per row, after 3 "
        "warm-ups.", "",
        "| stored readings | query | p50 ms | p99 ms |", "| ---: | --- | ---: | ---: |",
        *(f"| {size:,} | {name} | {p50:.1f} | {p99:.1f} |"
          for size, name, p50, p99, _ in rows),
    ]
    return "\n".join(lines)


async def run_modes(args: argparse.Namespace) -> str:
    from bench.telemetry_modes import compare

    before = os.getloadavg()
    rows, notes = await compare(args.timescale, args.sizes, args.requests)
    after = os.getloadavg()
    return "\n".join([
        f"## Telemetry modes side by side ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        "bench/telemetry.py --timescale)", "",
        f"Machine: {machine()}. Load average (1/5/15 min) {_load(before)} at the start, "
        f"{_load(after)} at the end. One PostgreSQL server with TimescaleDB preloaded, two "
        "databases: one migrated as the partitioned mode, one as the TimescaleDB mode; the "
        "same readings bulk-loaded into both; the store adapter's query (SQL) timed in "
        f"alternating rounds, median of {args.requests} per mode. Read the ratio "
        "(TimescaleDB / partitioned), not the milliseconds: the machine is shared.", "",
        "| stored readings | when | query (100 devices) | partitioned ms | TimescaleDB ms "
        "| ratio |", "| ---: | --- | --- | ---: | ---: | ---: |", *rows, "",
        *(f"- {note}" for note in notes),
    ])


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1_000_000, 10_000_000])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--timescale", metavar="DSN",
                        help="compare both modes on this TimescaleDB server (superuser DSN)")
    args = parser.parse_args()
    section = asyncio.run(run_modes(args) if args.timescale else run(args))
    print(section)
    if args.write:
        append_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
