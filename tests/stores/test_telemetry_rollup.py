"""The 5-minute rollup: kept exact by both write paths (duplicates skipped, late data
merged), read for buckets that are multiples of 5 minutes with raw edges, equal to the
aggregation over readings on random data with gaps and readings on bucket edges, and
dropped with its days by retention."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from gateway.stores import Stores
from gateway.stores.telemetry import (
    BUCKET_ORIGIN,
    ROLLUP_WIDTH,
    SeriesQuery,
    SeriesRows,
    rolled_span,
)
from tests.conftest import Tenant
from tests.support.telemetry_mode import corrupt_rollup, materialize_rollup, stored_days

T0 = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)  # the data crosses midnight: two partitions
Reading = tuple[UUID, datetime, float]
COMBINE: dict[str, Callable[[list[float]], float]] = {
    "AVG": lambda vs: math.fsum(vs) / len(vs), "MIN": min, "MAX": max, "SUM": math.fsum,
    "COUNT": lambda vs: float(len(vs)), "FIRST": lambda vs: vs[0], "LAST": lambda vs: vs[-1],
}


def _random_readings(devices: list[UUID], rng: random.Random) -> list[Reading]:
    """Four hours per device: random times (microseconds included), readings exactly on
    5-minute boundaries, and gaps of whole 5-, 10- and 60-minute stretches."""
    out: list[Reading] = []
    for device in devices:
        gaps = {rng.randrange(48) for _ in range(8)}  # empty 5-minute buckets
        gaps |= set(range(12, 24)) if device == devices[0] else set()  # an empty hour
        for k in range(48):
            if k in gaps:
                continue
            start = T0 + k * ROLLUP_WIDTH
            offsets = {timedelta(microseconds=rng.randrange(300_000_000))
                       for _ in range(rng.randrange(1, 12))}
            if rng.random() < 0.3:
                offsets.add(timedelta(0))  # on the boundary
            out += [(device, start + o, round(rng.uniform(-50, 50), 3)) for o in offsets]
    return out


def _expected(readings: list[Reading], device: UUID, q: SeriesQuery) -> SeriesRows:
    """The bucketed series computed in Python from the readings themselves."""
    assert q.bucket is not None
    rows = sorted((t, v) for d, t, v in readings if d == device and q.start <= t < q.end)
    if not rows:
        return SeriesRows(0, None, None, None, None, None, None, [], [])
    buckets: dict[datetime, list[float]] = defaultdict(list)
    for t, v in rows:
        buckets[BUCKET_ORIGIN + ((t - BUCKET_ORIGIN) // q.bucket) * q.bucket].append(v)
    combine = COMBINE[q.aggregate]
    values = [v for _, v in rows]
    mean = math.fsum(values) / len(values)
    stddev = (math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
              if len(values) > 1 else None)
    return SeriesRows(len(values), min(values), max(values), mean, stddev, values[0],
                      values[-1], sorted(buckets), [combine(buckets[b]) for b in sorted(buckets)])


def _assert_same(got: SeriesRows, want: SeriesRows, label: str) -> None:
    assert got.count == want.count, label
    assert got.times == want.times, label
    assert got.values == pytest.approx(want.values, rel=1e-9, abs=1e-9), label
    for stat in ("min", "max", "avg", "stddev", "first", "last"):
        assert getattr(got, stat) == pytest.approx(
            getattr(want, stat), rel=1e-9, abs=1e-9), f"{label}: {stat}"


async def _store(stores: Stores, tenant: UUID, readings: list[Reading],
                 rng: random.Random) -> None:
    """Half through the ingestTelemetry statement, half through the COPY path, in shuffled
    batches (late data), each batch carrying duplicates with different values."""
    shuffled = readings[:]
    rng.shuffle(shuffled)
    for n, first in enumerate(range(0, len(shuffled), 700)):
        batch = shuffled[first:first + 700]
        again = [(d, t, v + 1000) for d, t, v in rng.sample(readings, 20)]
        if n % 2:
            rows = batch + again
            await stores.telemetry.ingest(tenant, [r[0] for r in rows], ["m"] * len(rows),
                                          [r[1] for r in rows], [r[2] for r in rows])
        else:
            await stores.telemetry.insert_readings(
                [(tenant, d, "m", t, v) for d, t, v in batch + again])


async def test_rollup_path_equals_readings_on_random_data(
    stores: Stores, tenant: Tenant
) -> None:
    rng = random.Random(5)
    devices = [uuid4() for _ in range(3)]
    readings = _random_readings(devices, rng)
    # A duplicate that precedes its original in time order keeps the first value seen.
    await _store(stores, tenant.id, readings, rng)
    stored = {(r["device_id"], r["time"]): r["value"] for r in await stores.telemetry.pool.fetch(
        "SELECT device_id, time, value FROM readings")}
    readings = [(d, t, stored[d, t]) for d, t, _ in readings]
    assert len(stored) == len(readings)

    ranges = [
        (T0, T0 + timedelta(hours=4)),  # aligned
        (T0 - timedelta(minutes=7), T0 + timedelta(hours=5)),  # beyond the data
        (T0 + timedelta(minutes=2, seconds=31), T0 + timedelta(hours=3, minutes=58)),
        (T0 + timedelta(minutes=61, microseconds=1), T0 + timedelta(minutes=200)),
    ]
    for start, end in ranges:
        for bucket in (5, 10, 15, 60):
            for aggregate in ("AVG", "MIN", "MAX", "SUM", "COUNT", "FIRST", "LAST"):
                q = SeriesQuery(metric="m", start=start, end=end,
                                bucket=timedelta(minutes=bucket), aggregate=aggregate)
                assert rolled_span(q) is not None
                got = await stores.telemetry.series(tenant.id, devices, q)
                for device, series in zip(devices, got, strict=True):
                    _assert_same(series, _expected(readings, device, q),
                                 f"{start}..{end} {bucket}m {aggregate}")


async def test_finer_buckets_and_short_ranges_read_readings(
    stores: Stores, tenant: Tenant
) -> None:
    rng = random.Random(7)
    devices = [uuid4()]
    readings = _random_readings(devices, rng)
    await stores.telemetry.insert_readings([(tenant.id, d, "m", t, v) for d, t, v in readings])
    # Corrupt the rollup: a query that reads it would now be visibly wrong.
    await corrupt_rollup(stores)
    for q in (
        SeriesQuery(metric="m", start=T0, end=T0 + timedelta(hours=4),
                    bucket=timedelta(minutes=1), aggregate="SUM"),
        SeriesQuery(metric="m", start=T0, end=T0 + timedelta(hours=4),
                    bucket=timedelta(minutes=7), aggregate="SUM"),
        SeriesQuery(metric="m", start=T0 + timedelta(minutes=1),  # no whole rollup bucket
                    end=T0 + timedelta(minutes=9), bucket=timedelta(minutes=5),
                    aggregate="SUM"),
    ):
        assert rolled_span(q) is None
        [got] = await stores.telemetry.series(tenant.id, devices, q)
        _assert_same(got, _expected(readings, devices[0], q), str(q))
    # ... and the 1-hour series reads it (hence the corrupted sums).
    hourly = SeriesQuery(metric="m", start=T0, end=T0 + timedelta(hours=4),
                         bucket=timedelta(hours=1), aggregate="SUM")
    [got] = await stores.telemetry.series(tenant.id, devices, hourly)
    assert got.values[0] > 1e6


async def test_rollup_table_equals_a_fresh_aggregate_of_readings(
    stores: Stores, tenant: Tenant
) -> None:
    rng = random.Random(11)
    await _store(stores, tenant.id, _random_readings([uuid4(), uuid4()], rng), rng)
    differences = await stores.telemetry.pool.fetch("""
        WITH fresh AS (
            SELECT device_id, metric,
                   date_bin('5 minutes', time, '2000-01-01 00:00:00+00') AS bucket,
                   count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi,
                   min(time) AS first_time, max(time) AS last_time,
                   (array_agg(value ORDER BY time))[1] AS first_value,
                   (array_agg(value ORDER BY time DESC))[1] AS last_value
            FROM readings GROUP BY 1, 2, 3)
        SELECT * FROM fresh f FULL JOIN readings_5m r USING (device_id, metric, bucket)
        WHERE f.n IS DISTINCT FROM r.n OR abs(f.total - r.total) > 1e-6
           OR f.lo IS DISTINCT FROM r.lo OR f.hi IS DISTINCT FROM r.hi
           OR f.first_time IS DISTINCT FROM r.first_time
           OR f.first_value IS DISTINCT FROM r.first_value
           OR f.last_time IS DISTINCT FROM r.last_time
           OR f.last_value IS DISTINCT FROM r.last_value""")
    assert differences == []
    assert await stores.telemetry.pool.fetchval("SELECT count(*) FROM readings_5m") > 50


async def test_asset_rollup_reads_the_rollup_and_equals_readings(
    stores: Stores, tenant: Tenant
) -> None:
    rng = random.Random(13)
    devices = [uuid4() for _ in range(3)]
    readings = _random_readings(devices, rng)
    await _store(stores, tenant.id, readings, rng)
    site, line = uuid4(), uuid4()
    pairs = [(site, d) for d in devices] + [(line, devices[1])]
    q = SeriesQuery(metric="m", start=T0 + timedelta(minutes=3), end=T0 + timedelta(hours=3),
                    bucket=timedelta(minutes=15), aggregate="AVG")
    assert rolled_span(q) is not None
    groups = await stores.telemetry.rollup(tenant.id, pairs, q)
    # The site's series is the aggregation of all its devices' readings as one series.
    merged = [(site, t, v) for _, t, v in readings]
    _assert_same(groups[site][0], _expected(merged, site, q), "site")
    assert groups[site][1] == 3
    line_only = [(line, t, v) for d, t, v in readings if d == devices[1]]
    _assert_same(groups[line][0], _expected(line_only, line, q), "line")
    assert groups[line][1] == 1


async def test_other_tenants_rollup_rows_stay_out(stores: Stores, tenant: Tenant) -> None:
    device = uuid4()
    await stores.telemetry.insert_readings([(tenant.id, device, "m", T0, 1.0)])
    q = SeriesQuery(metric="m", start=T0, end=T0 + timedelta(hours=1),
                    bucket=timedelta(minutes=5))
    [mine] = await stores.telemetry.series(tenant.id, [device], q)
    [theirs] = await stores.telemetry.series(uuid4(), [device], q)
    assert (mine.count, theirs.count) == (1, 0)


async def test_retention_drops_the_rollup_with_its_days(stores: Stores, tenant: Tenant) -> None:
    device = uuid4()
    old, recent = T0 - timedelta(days=3), T0
    await stores.telemetry.insert_readings(
        [(tenant.id, device, "m", old, 1.0), (tenant.id, device, "m", recent, 2.0)])
    await materialize_rollup(stores)  # TimescaleDB: the aggregate has the old day too
    assert old.date() in await stored_days(stores, "readings_5m")
    assert await stores.telemetry.drop_before(T0 - timedelta(days=1)) >= 1
    buckets = await stores.telemetry.pool.fetch("SELECT bucket FROM readings_5m")
    assert [r["bucket"] for r in buckets] == [recent]
    assert old.date() not in await stored_days(stores, "readings_5m")
