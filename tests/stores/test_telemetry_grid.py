"""5-minute series answered on the range's bucket grid (series_rolled_5m): one value or
None per bucket from the one holding the range's start, equal to what gap filling the
store's sparse buckets gave, in the keys' order, for ranges whose edges are not on
5-minute boundaries, empty buckets inside and at the ends, and devices without readings."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from gateway.stores import Stores
from gateway.stores.telemetry import (
    EMPTY_SERIES,
    ROLLUP_WIDTH,
    SeriesQuery,
    bucket_start,
    bucket_times,
    rolled_span,
)
from resolvers.telemetry import point_columns
from tests.conftest import Tenant
from tests.support.telemetry_mode import materialize_rollup

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # on the 5-minute grid
COMBINE: dict[str, Callable[[list[float]], float]] = {
    "AVG": lambda vs: math.fsum(vs) / len(vs), "MIN": min, "MAX": max, "SUM": math.fsum,
    "COUNT": lambda vs: float(len(vs)), "FIRST": lambda vs: vs[0], "LAST": lambda vs: vs[-1],
}
# Seconds after T0 -> value. Values are small binary fractions, so every aggregate is
# exact and compared with ==. Buckets 12:10 and 12:20 hold nothing.
ALONG = {90: 4.0, 120: 6.0, 299: 1.5, 300: 7.0, 905: 3.0, 1080: 1.0, 1799: 2.5,
         1800: 8.0, 1999: -2.0, 2100: 0.5, 2400: 5.0}
ENDS = {10: 2.0, 2990: 9.0}  # the first and the tenth bucket only
RANGES = [
    (T0 + timedelta(seconds=105), T0 + timedelta(minutes=33)),  # both edges inside buckets
    (T0 + timedelta(seconds=300), T0 + timedelta(seconds=2400)),  # on boundaries: 2400 out
    (T0 + timedelta(seconds=299), T0 + timedelta(seconds=2400, microseconds=1)),
    (T0 - timedelta(minutes=20), T0 + timedelta(hours=2)),  # empty buckets at both ends
    (T0 + timedelta(minutes=10), T0 + timedelta(minutes=25)),  # starts on an empty bucket
]


def _expected(readings: dict[int, float], q: SeriesQuery
              ) -> tuple[list[datetime], list[float | None], list[float]]:
    """The grid, its gap-filled values and the range's values in time order, from the
    readings themselves."""
    assert q.bucket is not None
    inside = [(T0 + timedelta(seconds=s), v) for s, v in sorted(readings.items())
              if q.start <= T0 + timedelta(seconds=s) < q.end]
    buckets: dict[datetime, list[float]] = defaultdict(list)
    for t, v in inside:
        buckets[bucket_start(t, q.bucket)].append(v)
    grid = list(bucket_times(q.start, q.end, q.bucket))
    values = [COMBINE[q.aggregate](buckets[t]) if t in buckets else None for t in grid]
    return grid, values, [v for _, v in inside]


async def test_series_on_the_bucket_grid_equal_gap_filled_readings(
    stores: Stores, tenant: Tenant
) -> None:
    along, ends, bare = uuid4(), uuid4(), uuid4()
    readings = [(tenant.id, along, "m", T0 + timedelta(seconds=s), v) for s, v in ALONG.items()]
    readings += [(tenant.id, ends, "m", T0 + timedelta(seconds=s), v) for s, v in ENDS.items()]
    readings.append((tenant.id, bare, "other", T0 + timedelta(seconds=10), 1.0))
    await stores.telemetry.insert_readings(readings)
    await materialize_rollup(stores)
    keys = [ends, bare, along, ends]  # the keys' order, a key twice, a device without "m"
    data: dict[UUID, dict[int, float]] = {along: ALONG, ends: ENDS, bare: {}}

    for start, end in RANGES:
        for aggregate in COMBINE:
            q = SeriesQuery(metric="m", start=start, end=end, bucket=ROLLUP_WIDTH,
                            aggregate=aggregate)
            assert rolled_span(q) is not None  # series_rolled_5m answers it
            got = await stores.telemetry.series(tenant.id, keys, q)
            assert len(got) == len(keys)
            for key, series in zip(keys, got, strict=True):
                label = f"{start}..{end} {aggregate} {key}"
                grid, values, inside = _expected(data[key], q)
                if not inside:
                    assert series is EMPTY_SERIES, label
                    assert point_columns(q, series) == (tuple(grid), [None] * len(grid))
                    continue
                assert point_columns(q, series) == (tuple(grid), values), label
                # The sparse view reads as the store's other series do.
                assert series.times == [t for t, v in zip(grid, values, strict=True)
                                        if v is not None], label
                assert series.values == [v for v in values if v is not None], label
                mean = math.fsum(inside) / len(inside)
                assert (series.count, series.min, series.max, series.first, series.last) == (
                    len(inside), min(inside), max(inside), inside[0], inside[-1]), label
                assert series.avg == mean, label
                if len(inside) > 1:
                    assert math.isclose(series.stddev or 0.0, math.sqrt(math.fsum(
                        (v - mean) ** 2 for v in inside) / (len(inside) - 1)),
                        rel_tol=1e-12), label
                else:
                    assert series.stddev is None, label
