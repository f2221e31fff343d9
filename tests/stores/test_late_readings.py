"""Late readings are in bucketed answers at once, in both telemetry modes, with the same
numbers: 10 minutes, 1 day and 30 days late, after the rollup has materialized their
buckets (on TimescaleDB: before the aggregate is refreshed again, then after)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from gateway.stores import Stores
from gateway.stores.telemetry import BUCKET_ORIGIN, SeriesQuery, SeriesRows, rolled_span
from tests.conftest import Gateway, Tenant
from tests.support.telemetry_mode import TIMESCALE, materialize_rollup, telemetry_mode

LATE = (timedelta(minutes=10), timedelta(days=1), timedelta(days=30))


def _expected(readings: list[tuple[datetime, float]], q: SeriesQuery) -> tuple[
        int, float, float, float, float, float, list[float]]:
    assert q.bucket is not None
    inside = sorted((t, v) for t, v in readings if q.start <= t < q.end)
    sums: dict[datetime, float] = defaultdict(float)
    for t, v in inside:
        sums[BUCKET_ORIGIN + (t - BUCKET_ORIGIN) // q.bucket * q.bucket] += v
    values = [v for _, v in inside]
    return (len(values), min(values), max(values), math.fsum(values) / len(values),
            inside[0][1], inside[-1][1], [sums[b] for b in sorted(sums)])


def _got(series: SeriesRows) -> tuple[int, float, float, float, float, float, list[float]]:
    assert series.min is not None and series.max is not None and series.avg is not None
    assert series.first is not None and series.last is not None
    return (series.count, series.min, series.max, series.avg, series.first, series.last,
            series.values)


def _close(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    def same(x: object, y: object) -> bool:
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y, strict=True))
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
        return x == y
    return all(same(x, y) for x, y in zip(a, b, strict=True))


async def _stale_covers(stores: Stores, t: datetime) -> bool:
    return bool(await stores.telemetry.pool.fetchval(
        "SELECT EXISTS (SELECT FROM readings_5m_ranges() WHERE stale AND lo <= $1 AND $1 < hi)",
        t))


async def test_late_readings_are_in_series_and_stats_at_once(
    stores: Stores, tenant: Tenant
) -> None:
    mode = await telemetry_mode(stores)
    refresher = stores.telemetry.refresher
    assert (refresher is not None) == (mode == TIMESCALE)
    if refresher is not None:
        refresher.delay = 3600.0  # refreshed below, when the test says so
    device: UUID = uuid4()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    hour = now.replace(minute=0)
    start, end = hour - timedelta(days=31), hour + timedelta(hours=1)
    on_time = [(start + timedelta(minutes=5 * k), float(k % 97))
               for k in range(int((now - timedelta(minutes=20) - start) / timedelta(minutes=5)))]
    await stores.telemetry.insert_readings(
        [(tenant.id, device, "t", t, v) for t, v in on_time])
    await materialize_rollup(stores)  # TimescaleDB: every bucket so far is materialized

    late = [(now - lateness + timedelta(seconds=7), 1000.0 + n)
            for n, lateness in enumerate(LATE)]
    for t, v in late:  # each its own transaction (TimescaleDB logs one range for each)
        assert await stores.telemetry.ingest(tenant.id, [device], ["t"], [t], [v]) == 1
    readings = on_time + late
    queries = [SeriesQuery(metric="t", start=start, end=end, bucket=bucket, aggregate="SUM",
                           limit=100_000)
               for bucket in (timedelta(minutes=5), timedelta(hours=1), timedelta(days=1))]
    assert all(rolled_span(q) is not None for q in queries)  # each reads the rollup

    async def answers_are_exact() -> None:
        for q in queries:
            [series] = await stores.telemetry.series(tenant.id, [device], q)
            assert _close(_got(series), _expected(readings, q)), q.bucket

    if refresher is not None:  # not materialized: read from readings, but only there
        assert all([await _stale_covers(stores, t) for t, _ in late])
        assert not await _stale_covers(stores, now - timedelta(days=15))
    await answers_are_exact()
    if refresher is not None:
        assert refresher.pending is not None
        assert await refresher.flush()
        assert not any([await _stale_covers(stores, t) for t, _ in late])
        await answers_are_exact()


INGEST = "mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r) { accepted } }"
DAILY = """query($id: ID!, $from: DateTime, $to: DateTime) { device(id: $id) {
  telemetry(metric: "t", from: $from, to: $to, bucket: "1d", aggregate: SUM) {
    points { time value } stats { count min max avg first last } } } }"""


async def test_late_readings_posted_to_the_api_are_in_its_answers_at_once(
    stores: Stores, tenant: Tenant, gateway: Gateway
) -> None:
    refresher = stores.telemetry.refresher
    if refresher is not None:
        refresher.delay = 3600.0  # so the answers below cannot come from a refresh
    row = await stores.registry.insert_device(tenant.id, serial="L1", name="late",
                                              type="sensor")
    device: UUID = row["id"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    day = timedelta(days=1)
    start = BUCKET_ORIGIN + (now - BUCKET_ORIGIN) // day * day - 31 * day
    end = start + 32 * day
    on_time = [(start + timedelta(minutes=30 * k), float(k % 13))
               for k in range(int((now - timedelta(minutes=20) - start) / timedelta(minutes=30)))]
    await stores.telemetry.insert_readings(
        [(tenant.id, device, "t", t, v) for t, v in on_time])
    await materialize_rollup(stores)

    late = [(now - lateness + timedelta(seconds=11), 500.0 + n)
            for n, lateness in enumerate(LATE)]
    for t, v in late:
        body = await gateway.query(INGEST, {"r": [
            {"deviceId": str(device), "metric": "t", "time": t.isoformat(), "value": v}]},
            key=tenant.key)
        assert body == {"data": {"ingestTelemetry": {"accepted": 1}}}, body
    body = await gateway.query(DAILY, {"id": str(device), "from": start.isoformat(),
                                       "to": end.isoformat()}, key=tenant.key)
    assert "errors" not in body, body
    series = body["data"]["device"]["telemetry"]
    count, lo, hi, avg, first, last, sums = _expected(on_time + late, SeriesQuery(
        metric="t", start=start, end=end, bucket=day, aggregate="SUM"))
    stats = series["stats"]
    got = (stats["count"], stats["min"], stats["max"], stats["avg"], stats["first"],
           stats["last"], [p["value"] for p in series["points"] if p["value"] is not None])
    assert _close(got, (count, lo, hi, avg, first, last, sums))
    if refresher is not None:  # answered before TimescaleDB materialized the late readings
        assert all([await _stale_covers(stores, t) for t, _ in late])
