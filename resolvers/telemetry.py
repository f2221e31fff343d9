"""Telemetry types and the range/bucket rules shared by every telemetry field."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import strawberry

from gateway.context import Info
from gateway.errors import BadUserInput, LimitExceeded
from gateway.loaders import capabilities_of
from gateway.stores.telemetry import (
    SeriesQuery,
    SeriesRows,
    Trend,
    bucket_start,
    bucket_times,
)
from gateway.writes import validate
from resolvers.execution.batch_fields import batched, load_settled, one
from resolvers.scalars import Interval

DEFAULT_RANGE = timedelta(hours=1)


@strawberry.enum
class Aggregate(Enum):
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"
    SUM = "SUM"
    COUNT = "COUNT"
    FIRST = "FIRST"
    LAST = "LAST"


@strawberry.enum
class TimeOrder(Enum):
    OLDEST_FIRST = "OLDEST_FIRST"
    NEWEST_FIRST = "NEWEST_FIRST"


@strawberry.type
class Reading:
    metric: str
    time: datetime
    value: float


@strawberry.type
class TelemetryPoint:
    time: datetime
    value: float | None = strawberry.field(description="Null for a bucket that holds no readings.")


@strawberry.type
class SeriesStats:
    count: int
    min: float | None
    max: float | None
    avg: float | None
    stddev: float | None
    first: float | None
    last: float | None


@strawberry.type
class TelemetrySeries:
    device_id: strawberry.ID
    metric: str
    from_: datetime = strawberry.field(name="from")
    to: datetime
    bucket: Interval | None
    aggregate: Aggregate | None
    points: list[TelemetryPoint]
    stats: SeriesStats
    device_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def unit(self, info: Info) -> str | None:
        return one(await series_units([self], info))  # type: ignore[no-any-return]


@batched("TelemetrySeries", "unit")
async def series_units(series: list[TelemetrySeries], info: Info) -> list[Any]:
    """TelemetrySeries.unit for a whole level of series (resolvers.execution.batch_fields):
    the unit the device's profile declares for the series' metric."""
    loader = info.context.loaders.profile
    profiles = await load_settled(loader, [s.device_uuid for s in series])
    values: list[Any] = []
    for one_series, profile in zip(series, profiles, strict=True):
        if isinstance(profile, Exception):
            values.append(profile)
            continue
        unit = None
        for capability in capabilities_of(profile):
            if capability.get("metric") == one_series.metric:
                unit = capability.get("unit")
                break
        values.append(unit)
    return values


@strawberry.type
class Forecast:
    metric: str
    threshold: float
    slope_per_hour: float | None
    crosses_at: datetime | None
    r2: float | None
    sample_count: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def series_query(
    info: Info, metric: str, start: datetime | None, end: datetime | None,
    bucket: timedelta | None, aggregate: Aggregate | None, limit: int | None,
) -> SeriesQuery:
    """Validates one telemetry request and returns the loader parameters for it."""
    max_points = info.context.settings.max_points
    if not metric:
        raise BadUserInput("metric must not be empty", argument="metric")
    validate.metric(metric, "metric")  # the rule ingest applies: nothing else was stored
    end = _utc(end) if end else info.context.now
    try:
        start = _utc(start) if start else end - DEFAULT_RANGE
        if bucket is not None:
            # Gap filling walks from the bucket holding `start` to the first boundary past
            # `end`: both must be dates Python can represent, or this raises OverflowError.
            bucket_start(start, bucket)
            bucket_start(end, bucket) + bucket
    except OverflowError:
        raise BadUserInput(
            "The time range (widened to whole buckets) reaches beyond years 1 to 9999",
            argument="from",
        ) from None
    if start >= end:
        raise BadUserInput(
            f"Inverted time range: from ({start.isoformat()}) must be before to "
            f"({end.isoformat()})", argument="from",
        )
    if bucket is not None and (end - start) / bucket > max_points:
        raise LimitExceeded(
            f"bucket {bucket} over this range yields {int((end - start) / bucket)} points; "
            f"the maximum is {max_points}", limit="maxPoints", maximum=max_points,
        )
    if limit is not None and limit < 1:
        raise BadUserInput(f"limit must be between 1 and {max_points}, got {limit}",
                           argument="limit")
    if limit is not None and limit > max_points:
        raise LimitExceeded(
            f"limit must be between 1 and {max_points}, got {limit}",
            limit="maxPoints", maximum=max_points,
        )
    return SeriesQuery(
        metric=metric, start=start, end=end, bucket=bucket,
        # Without a limit, one row past the maximum tells a range that holds too many.
        aggregate=(aggregate or Aggregate.AVG).value, limit=limit or max_points + 1,
        limit_is_probe=limit is None,
    )


async def unknown_metric_error(
    info: Info, device_ids: list[UUID], metric: str
) -> BadUserInput | None:
    """When every series of a selection came back empty: an error naming the devices'
    metrics if ``metric`` is none of them (a typo answered empty points before). Their
    metrics are those they have readings of and those their capabilities declare. Devices
    with no metric at all (new ones) get no error, nor does a fleet where some device has
    the metric (a dashboard over mixed devices). Two batched loads, only when all is empty."""
    loaders = info.context.loaders
    latest = await loaders.latest(None).load_many(device_ids)
    profiles = await loaders.profile.load_many(device_ids)
    known = {r["metric"] for readings in latest for r in readings or ()}
    for profile in profiles:
        known |= {c.get("metric") for c in capabilities_of(profile)
                  if isinstance(c, dict) and isinstance(c.get("metric"), str)}
    if not known or metric in known:
        return None
    close = difflib.get_close_matches(metric, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    who, whose = ((f"Device {device_ids[0]} has", "its") if len(device_ids) == 1
                  else ("None of these devices has", "their"))
    return BadUserInput(f"{who} no metric {metric!r}{hint}; {whose} metrics: "
                        f"{', '.join(sorted(known))}", argument="metric")


class _Point(TelemetryPoint):
    """A TelemetryPoint made from positional arguments, by ``map`` over a series' columns:
    the dataclass's keyword-only __init__ called from a comprehension took ~40% longer per
    point, and a gap-filled series makes one per bucket of its range."""

    def __init__(self, time: datetime, value: float | None) -> None:  # noqa: D107
        self.time = time
        self.value = value


def series_points(q: SeriesQuery, rows: SeriesRows) -> list[TelemetryPoint]:
    """Raw points as stored, or every bucket of the range with empty ones as nulls."""
    times, values = point_columns(q, rows)
    return list(map(_Point, times, values))


def point_columns(q: SeriesQuery, rows: SeriesRows) -> tuple[Sequence[datetime],
                                                             Sequence[float | None]]:
    """The points' times and values: raw, or every bucket that overlaps the range with
    empty ones as nulls (gap filling)."""
    if q.bucket is None:
        return rows.times, rows.values
    times = bucket_times(q.start, q.end, q.bucket)
    if rows.grid_values is not None:
        return times, rows.grid_values  # the store answered on this grid
    values = rows.values
    if len(values) == len(times):
        # Every bucket holds readings: the rows' buckets (distinct, in order, each inside
        # the range) are the range's, and their values need no placing.
        return times, values
    by_time = dict(zip(rows.times, values, strict=True))
    return times, list(map(by_time.get, times))


class _Stats(SeriesStats):
    """A SeriesStats copied from a series' rows: the dataclass's keyword-only __init__ took
    7 keyword arguments once per device of a dashboard."""

    def __init__(self, rows: SeriesRows) -> None:  # noqa: D107
        self.count = rows.count
        self.min = rows.min
        self.max = rows.max
        self.avg = rows.avg
        self.stddev = rows.stddev
        self.first = rows.first
        self.last = rows.last


def series_stats(rows: SeriesRows) -> SeriesStats:
    return _Stats(rows)


class _Memo:
    """A field of a stored series made from its rows on first read, then kept in the
    instance (a non-data descriptor): a selection that does not read it makes none."""

    def __init__(self, make: Callable[[_StoredSeries], Any]) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, series: Any, owner: type | None = None) -> Any:
        if series is None:
            return self
        value = series.__dict__[self.name] = self.make(series)
        return value


def _points(series: _StoredSeries) -> list[TelemetryPoint]:
    # Gap filling made a point per bucket of the range for every device, about half of a
    # stats-only telemetry field's CPU (cProfile, 100 devices).
    return series_points(series.query, series.rows)


def _stats(series: _StoredSeries) -> SeriesStats:
    return series_stats(series.rows)


def _device_id(series: _StoredSeries) -> strawberry.ID:
    # str(UUID) is Python code in the uuid module; a dashboard rarely selects deviceId.
    return strawberry.ID(str(series.device_uuid))


class _StoredSeries(TelemetrySeries):
    """A device's TelemetrySeries answered from the store's rows (``to_series``). Points,
    stats and the device's ID are made when read (``_Memo``)."""

    points = _Memo(_points)  # type: ignore[assignment]
    stats = _Memo(_stats)  # type: ignore[assignment]
    device_id = _Memo(_device_id)  # type: ignore[assignment]

    def plain_columns(self, name: str) -> dict[str, Sequence[Any]] | None:
        """The points as columns, for the planned executor to build the response from
        without a point object each (resolvers.execution.build_compiler)."""
        if name != "points":
            return None
        times, values = point_columns(self.query, self.rows)
        return {"time": times, "value": values}

    def __init__(self, device_id: UUID, q: SeriesQuery, rows: SeriesRows) -> None:  # noqa: D107
        # The dataclass __init__ is not called: it would need the points now.
        self.device_uuid = device_id
        self.metric = q.metric
        self.from_ = q.start
        self.to = q.end
        bucket = q.bucket
        self.bucket = Interval(bucket) if bucket else None
        self.aggregate = _AGGREGATES[q.aggregate] if bucket else None
        self.query = q
        self.rows = rows


_AGGREGATES = {a.value: a for a in Aggregate}


def to_series(device_id: UUID, q: SeriesQuery, rows: SeriesRows) -> TelemetrySeries:
    if q.bucket is None and q.limit_is_probe and len(rows.times) >= q.limit:
        maximum = q.limit - 1
        raise LimitExceeded(
            f"{q.metric} holds more than {maximum} readings in this range; give a limit, a "
            "bucket or a shorter range", limit="maxPoints", maximum=maximum,
        )
    return _StoredSeries(device_id, q, rows)


MAX_FORECAST_WINDOW = timedelta(days=366)


def to_forecast(
    metric: str, threshold: float, trend: Trend, now: datetime
) -> Forecast:
    """The trend and when it will reach ``threshold``: a crossing in the past (the trend
    moves away from the threshold) or a flat line is no crossing."""
    if trend.count < 3 or trend.slope is None or trend.intercept is None:
        return Forecast(metric=metric, threshold=threshold, slope_per_hour=None,
                        crosses_at=None, r2=None, sample_count=trend.count)
    crosses_at = None
    if trend.slope != 0:
        seconds = (threshold - trend.intercept) / trend.slope
        try:
            when = trend.origin + timedelta(seconds=seconds)
        except OverflowError:
            when = None  # beyond year 9999: never, for any purpose
        crosses_at = when if when is not None and when >= now else None
    return Forecast(
        metric=metric, threshold=threshold, slope_per_hour=trend.slope * 3600,
        crosses_at=crosses_at, r2=trend.r2, sample_count=trend.count,
    )
