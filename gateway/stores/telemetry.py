"""Telemetry adapter (TimescaleDB or partitioned PostgreSQL): series, stats, latest values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import repeat
from typing import Any
from uuid import UUID

import asyncpg

from gateway.metrics import TELEMETRY_MODE
from gateway.stores.base import PgStore, align, record_round_trip
from gateway.stores.rollup_refresh import RollupRefresher

# Every bucket boundary is origin + k * width: equal ranges bucket identically everywhere.
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

AGGREGATES = {
    "AVG": "avg(value)",
    "MIN": "min(value)",
    "MAX": "max(value)",
    "SUM": "sum(value)",
    "COUNT": "count(*)::float8",
    # date_part gives float8 directly; extract() gives numeric, several times slower.
    "FIRST": "(min(ARRAY[date_part('epoch', time), value]))[2]",
    "LAST": "(max(ARRAY[date_part('epoch', time), value]))[2]",
}
# The same aggregates combined from 5-minute partials (readings_5m rows): avg from sums
# and counts, min of minimums, the first of the bucket's firsts, and so on.
ROLLED_AGGREGATES = {
    "AVG": "sum(total) / sum(n)::float8",
    "MIN": "min(lo)",
    "MAX": "max(hi)",
    "SUM": "sum(total)",
    "COUNT": "sum(n)::float8",
    "FIRST": "(min(ARRAY[date_part('epoch', first_time), first_value]))[2]",
    "LAST": "(max(ARRAY[date_part('epoch', last_time), last_value]))[2]",
}
# ... and of one part, when a bucket is exactly one rollup bucket.
PART_AGGREGATES = {
    "AVG": "total / n", "MIN": "lo", "MAX": "hi", "SUM": "total", "COUNT": "n::float8",
    "FIRST": "first_value", "LAST": "last_value",
}
ROLLUP_WIDTH = timedelta(minutes=5)
READING_COLUMNS = ["tenant_id", "device_id", "metric", "time", "value"]
# A reading as written: (tenant, device, metric, time, value); the newest per series.
Record = tuple[UUID, UUID, str, datetime, float]
Latest = Mapping[tuple[UUID, str], tuple[datetime, float]]


def rolled_span(q: SeriesQuery) -> tuple[datetime, datetime] | None:
    """The whole 5-minute rollup buckets inside the range, when the query can read them:
    its bucket is a multiple of 5 minutes (so every rollup bucket lies in exactly one of
    its buckets) and the range holds at least one whole rollup bucket. The edges outside
    the span are read from readings. None: read readings only."""
    if q.bucket is None or q.bucket % ROLLUP_WIDTH:
        return None
    first = BUCKET_ORIGIN - ((BUCKET_ORIGIN - q.start) // ROLLUP_WIDTH) * ROLLUP_WIDTH
    last = BUCKET_ORIGIN + ((q.end - BUCKET_ORIGIN) // ROLLUP_WIDTH) * ROLLUP_WIDTH
    return (first, last) if first < last else None


@dataclass(frozen=True)
class SeriesQuery:
    """The parameters shared by every device of one telemetry batch (the loader's key)."""

    metric: str
    start: datetime
    end: datetime
    bucket: timedelta | None = None
    aggregate: str = "AVG"
    limit: int = 10_000
    newest_first: bool = False
    # True when the caller gave no limit: ``limit`` is then the maximum plus one, and a full
    # page means the range holds more than a response may (LIMIT_EXCEEDED, not truncation).
    limit_is_probe: bool = False


class SeriesRows:
    """One device's series as the store returns it: stats plus sparse points (``times``
    and ``values``: a bucketed series' non-empty buckets only). Read-only by convention:
    loaders share it.

    A plain class with slots, built positionally: the frozen dataclass's __init__ set each
    of its nine fields through ``object.__setattr__``, once per device of a dashboard. A
    bucketed series keeps its bucket starts as the query's epochs and makes ``times`` from
    them on first read; one answered on its range's bucket grid (``grid`` the bucket
    starts, ``grid_values`` a value or None for each) makes both sparse lists on first
    read: the points are answered from the grid itself (resolvers.telemetry.point_columns),
    the values placed by the query's bucket places, no bucket time decoded."""

    __slots__ = ("count", "min", "max", "avg", "stddev", "first", "last", "grid",
                 "grid_values", "_times", "_values", "_epochs")

    def __init__(self, count: int, min: float | None, max: float | None,  # noqa: A002
                 avg: float | None, stddev: float | None, first: float | None,
                 last: float | None, times: list[datetime] | None,
                 values: list[float] | None, epochs: Sequence[float] = (),
                 grid: Sequence[datetime] | None = None,
                 grid_values: list[float | None] | None = None) -> None:
        self.count = count
        self.min = min
        self.max = max
        self.avg = avg
        self.stddev = stddev
        self.first = first
        self.last = last
        self.grid = grid
        self.grid_values = grid_values
        self._times = times  # None: made from ``epochs``, or the grid, when read
        self._values = values  # None: made from the grid when read
        self._epochs = epochs

    @property
    def times(self) -> list[datetime]:
        times = self._times
        if times is None:
            if self.grid is not None and self.grid_values is not None:
                times = [t for t, v in zip(self.grid, self.grid_values, strict=True)
                         if v is not None]
            else:
                get = _BUCKET_TIMES.get
                times = [get(e) or bucket_time(e) for e in self._epochs]
            self._times = times
        return times

    @property
    def values(self) -> list[float]:
        values = self._values
        if values is None:
            values = self._values = [v for v in self.grid_values or () if v is not None]
        return values

    def __repr__(self) -> str:
        return (f"SeriesRows({self.count!r}, {self.min!r}, {self.max!r}, {self.avg!r}, "
                f"{self.stddev!r}, {self.first!r}, {self.last!r}, {self.times!r}, "
                f"{self.values!r})")


class LatestReading:
    """A device's newest reading of one metric. Its columns read as attributes (a GraphQL
    ``Reading`` is filled from it as it is) or by name, as the rows it replaces were read
    (the live telemetry feed, unknown-metric hints)."""

    __slots__ = ("metric", "time", "value")

    def __init__(self, metric: str, time: datetime, value: float) -> None:
        self.metric = metric
        self.time = time
        self.value = value

    def __getitem__(self, column: str) -> Any:
        return getattr(self, column)

    def __repr__(self) -> str:
        return f"LatestReading({self.metric!r}, {self.time!r}, {self.value!r})"


@dataclass(frozen=True)
class Trend:
    """value = intercept + slope * (seconds since origin), fitted over ``count`` readings."""

    origin: datetime
    count: int
    slope: float | None
    intercept: float | None
    r2: float | None


class TelemetryStore(PgStore):
    name = "telemetry"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # UTC days whose partition this process has ensured: most batches need no DDL call.
        self._ensured_days: set[date] = set()
        # "timescale" or "partitioned" once known (the database's migrations chose it);
        # on TimescaleDB, the refresher of the 5-minute aggregate after late writes.
        self.mode: str | None = None
        self.refresher: RollupRefresher | None = None

    async def connect(self) -> None:
        await super().connect()
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                await self._load_mode(conn)

    async def migrated(self, conn: asyncpg.Connection) -> None:
        await self._load_mode(conn)

    async def _load_mode(self, conn: asyncpg.Connection) -> None:
        try:
            mode = await conn.fetchval(
                "SELECT variant FROM schema_migrations WHERE variant IS NOT NULL LIMIT 1")
        except asyncpg.UndefinedTableError:
            return  # not migrated yet: migrated() comes later
        if mode is None or mode == self.mode:
            return
        self.mode = str(mode)
        for known in ("timescale", "partitioned"):
            TELEMETRY_MODE.labels(known).set(1 if known == self.mode else 0)
        if self.mode == "timescale" and self.refresher is None:
            self.refresher = RollupRefresher(self)

    async def aclose(self) -> None:
        if self.refresher is not None:
            await self.refresher.aclose()
        await super().aclose()

    def wrote(self, start: datetime, end: datetime) -> None:
        """Readings in [start, end] were committed; on TimescaleDB what lies behind the
        aggregate is refreshed shortly (see rollup_refresh). No I/O here."""
        if self.refresher is not None:
            self.refresher.touched(start, end)

    async def ingest(
        self, tenant_id: UUID, device_ids: Sequence[UUID], metrics: Sequence[str],
        times: Sequence[datetime], values: Sequence[float],
    ) -> int:
        """Stores one tenant's validated readings, given as columns in any order (tools and
        tests; ``gateway.writes.telemetry`` hands ``ingest_sorted`` its batch directly).
        Returns how many were new; the rest were duplicates."""
        records = sorted(zip(repeat(tenant_id), device_ids, metrics, times, values,
                             strict=False), key=_record_key)
        latest: dict[tuple[UUID, str], tuple[datetime, float]] = {}
        for _, device, metric, time, value in records:
            latest[device, metric] = (time, value)  # ascending time: the last is the newest
        return await self.ingest_sorted(records, latest)

    async def ingest_sorted(self, records: Sequence[Record], latest: Latest) -> int:
        """Stores one tenant's validated readings, ``records`` (tenant, device, metric,
        time, value) in the canonical lock order (device, metric in byte order, time;
        ``gateway.writes.bulk_ingest``) and ``latest`` the newest of each series among
        them. Returns how many were new; the rest were duplicates.

        One transaction: a binary COPY straight into ``readings`` (its rollup trigger runs
        at the COPY's end), then the last values. A batch holding a duplicate (a retry, or
        a reading given twice) makes the COPY fail whole; it is rolled back and the batch
        inserted again skipping duplicates. The COPY costs PostgreSQL about half the CPU
        of the ``INSERT .. SELECT FROM unnest .. ON CONFLICT DO NOTHING`` this replaced
        (8-10 against 16-19 us a reading in batches of 10,000, measured on the embedded
        PostgreSQL 18). Tables are locked readings, rollup, last values, as by every
        writer of readings; a partition call comes first when the batch reaches a day
        this process has not seen."""
        if not records:
            return 0
        first = min(r[3] for r in records)
        last = max(r[3] for r in records)
        runs = day_runs(first, last, (r[3] for r in records))
        for start, end in runs:
            await self.ensure_days(start, end)
        try:
            inserted = await self._write_sorted(records, latest)
        except asyncpg.CheckViolationError:
            # "no partition found for row": a partition this process remembered was dropped
            # (retention, or another tool). Forget, ensure again, retry once.
            self._ensured_days.clear()
            for start, end in runs:
                await self.ensure_days(start, end)
            inserted = await self._write_sorted(records, latest)
        if inserted:
            self.wrote(first, last)
        return inserted

    async def _write_sorted(self, records: Sequence[Record], latest: Latest) -> int:
        try:
            async with self.acquire() as conn, conn.transaction():
                # BEGIN, COPY (its column query is prepared once a connection), last
                # values, COMMIT.
                for _ in range(4):
                    record_round_trip(self.name)
                await conn.copy_records_to_table("readings", records=records,
                                                 columns=READING_COLUMNS)
                await self._upsert_latest(conn, records[0][0], latest)
            return len(records)
        except asyncpg.UniqueViolationError:
            pass
        tenant_id = records[0][0]
        async with self.acquire() as conn, conn.transaction():
            for _ in range(4):  # BEGIN, the insert, last values, COMMIT
                record_round_trip(self.name)
            rows = await conn.fetch(
                self.sql["ingest_skipping_duplicates"], tenant_id, [r[1] for r in records],
                [r[2] for r in records], [r[3] for r in records], [r[4] for r in records])
            await self._upsert_latest(conn, tenant_id, {
                (r["device_id"], r["metric"]): (r["time"], r["value"]) for r in rows})
        return int(rows[0]["inserted"]) if rows else 0

    async def _upsert_latest(self, conn: asyncpg.Connection, tenant_id: UUID,
                             latest: Latest) -> None:
        if latest:
            keys = list(latest)
            await conn.execute(
                self.sql["upsert_latest_many"], tenant_id, [k[0] for k in keys],
                [k[1] for k in keys], [latest[k][0] for k in keys],
                [latest[k][1] for k in keys])

    async def ensure_days(self, start: datetime, end: datetime) -> None:
        if not self.days_ensured(start, end):
            await self.ensure_partitions(start, end)
            self._ensured_days |= _days(start, end)

    def days_ensured(self, start: datetime, end: datetime) -> bool:
        """Whether this process has already ensured the partitions of [start, end]."""
        return _days(start, end) <= self._ensured_days

    async def latest(
        self, tenant_id: UUID, device_ids: Sequence[UUID], metrics: Sequence[str] | None
    ) -> list[list[LatestReading]]:
        """Each device's newest reading of each metric (all metrics when ``metrics`` is
        None) in metric order, aligned with ``device_ids``. The query answers one row of
        arrays, times as epochs: a Record, a UUID and a timestamptz decoded per reading,
        then matched back to the keys, cost twice the instructions (callgrind)."""
        rows = await self.fetch_may_lag(
            self.sql["latest"], tenant_id, list(device_ids),
            list(metrics) if metrics is not None else None,
        )
        found: list[list[LatestReading]] = [[] for _ in device_ids]
        ns, names, epochs, values = rows[0]
        if ns is None:
            return found
        times: dict[float, datetime] = {}  # readings of one batch share their time
        for n, name, epoch, value in zip(ns, names, epochs, values, strict=True):
            at = times.get(epoch)
            if at is None:
                at = times[epoch] = _from_epoch(epoch, UTC)
            found[n - 1].append(LatestReading(name, at, value))
        return found

    async def series(
        self, tenant_id: UUID, device_ids: Sequence[UUID], q: SeriesQuery
    ) -> list[SeriesRows]:
        if q.bucket is None:
            rows = await self.fetch_may_lag(
                self.sql["series_raw"], tenant_id, list(device_ids), q.metric, q.start, q.end,
                q.limit, q.newest_first,
            )
        elif (span := rolled_span(q)) is not None and q.bucket == ROLLUP_WIDTH:
            grid = bucket_times(q.start, q.end, q.bucket)
            sql = self.sql["series_rolled_5m"].replace("{agg}", PART_AGGREGATES[q.aggregate])
            rows = await self.fetch_may_lag(
                sql, tenant_id, list(device_ids), q.metric, q.start, q.end, BUCKET_ORIGIN,
                *span, grid[0],
            )
            return [_grid_series(row, grid)
                    for row in align(list(device_ids), rows, "device_id")]
        elif span is not None:
            sql = self.sql["series_rolled"].replace("{agg}", ROLLED_AGGREGATES[q.aggregate])
            rows = await self.fetch_may_lag(
                sql, tenant_id, list(device_ids), q.metric, q.start, q.end, q.bucket,
                BUCKET_ORIGIN, *span,
            )
        else:
            sql = self.sql["series_bucketed"].replace("{agg}", AGGREGATES[q.aggregate])
            rows = await self.fetch_may_lag(
                sql, tenant_id, list(device_ids), q.metric, q.start, q.end, q.bucket,
                BUCKET_ORIGIN,
            )
        aligned = align(list(device_ids), rows, "device_id")
        return [_series(row) for row in aligned]

    async def insert_readings(
        self, records: Sequence[tuple[UUID, UUID, str, datetime, float]]
    ) -> int:
        """Stores (tenant, device, metric, time, value) rows in one transaction: binary COPY
        into a staging table, then insert skipping duplicates and refresh latest values.
        Returns the number of new readings."""
        if not records:
            return 0
        times = [r[3] for r in records]
        async with self.acquire() as conn, conn.transaction():
            # BEGIN, five statements and COMMIT: seven round trips, counted as such.
            for _ in range(7):
                record_round_trip(self.name)
            await conn.execute(self.sql["ensure_partitions"], min(times), max(times))
            await conn.execute(
                "CREATE TEMP TABLE tmp_readings (LIKE readings) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(
                "tmp_readings", records=records,
                columns=["tenant_id", "device_id", "metric", "time", "value"],
            )
            status = await conn.execute(self.sql["insert_staged"])
            await conn.execute(self.sql["upsert_latest"])
        inserted = int(status.rsplit(" ", 1)[1])
        if inserted:
            self.wrote(min(times), max(times))
        return inserted

    async def rollup(
        self, tenant_id: UUID, pairs: Sequence[tuple[UUID, UUID]], q: SeriesQuery
    ) -> dict[UUID, tuple[SeriesRows, int]]:
        """Per group in ``pairs`` (group, device): the bucketed series across its devices
        and how many devices contributed. Groups without readings are absent."""
        assert q.bucket is not None
        args = (tenant_id, [p[0] for p in pairs], [p[1] for p in pairs], q.metric, q.start,
                q.end, q.bucket, BUCKET_ORIGIN)
        if (span := rolled_span(q)) is not None:
            sql = self.sql["rollup_rolled"].replace("{agg}", ROLLED_AGGREGATES[q.aggregate])
            rows = await self.fetch_may_lag(sql, *args, *span)
        else:
            sql = self.sql["rollup"].replace("{agg}", AGGREGATES[q.aggregate])
            rows = await self.fetch_may_lag(sql, *args)
        return {row["root"]: (_series(row), row["devices"]) for row in rows}

    async def forecast(
        self, tenant_id: UUID, device_ids: Sequence[UUID], metric: str, start: datetime,
        end: datetime,
    ) -> list[Trend]:
        """Least-squares trend per device over [start, end), aligned with ``device_ids``."""
        rows = await self.fetch_may_lag(
            self.sql["forecast"], tenant_id, list(device_ids), metric, start, end
        )
        by_id = {row["device_id"]: row for row in rows}
        return [
            Trend(start, by_id[d]["n"], by_id[d]["slope"], by_id[d]["intercept"], by_id[d]["r2"])
            for d in device_ids
        ]

    async def drop_before(self, cutoff: datetime) -> int:
        """Drops whole partitions (or chunks) holding only readings before ``cutoff``."""
        row = await self.fetchrow(self.sql["drop_before"], cutoff)
        self._ensured_days.clear()  # a dropped day must be created again if data comes
        return int(row[0]) if row else 0

    async def last_seen_after(self, after: UUID, limit: int) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["last_seen_after"], after, limit)

    async def ensure_partitions(self, start: datetime, end: datetime) -> None:
        await self.execute(self.sql["ensure_partitions"], start, end)


def _record_key(record: Record) -> tuple[bytes, str, datetime]:
    # The canonical lock order: a uuid's bytes compare as PostgreSQL's uuid does, str by
    # code point as text COLLATE "C" does for UTF-8.
    return (record[1].bytes, record[2], record[3])


def _days(start: datetime, end: datetime) -> set[date]:
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


# A batch of readings spanning at most this much asks for every day between its first and
# last reading; a wider one only for the days it holds.
WHOLE_SPAN = timedelta(days=7)


def day_runs(first: datetime, last: datetime, times: Iterable[datetime]
             ) -> list[tuple[datetime, datetime]]:
    """The spans of consecutive UTC days on which ``times`` (first to last) fall: [first,
    last] itself within WHOLE_SPAN, else one span per run of days. Partitions are asked
    for these: a reading of 2000 in a batch of today's asked for 9,800 days of them, two
    tables each, until the store timed out (503 STORE_UNAVAILABLE for the request, and
    a failure counted against the store's breaker)."""
    if last - first <= WHOLE_SPAN:
        return [(first, last)]
    days = sorted({t.astimezone(UTC).date() for t in times})
    runs: list[tuple[datetime, datetime]] = []
    start = previous = days[0]
    for day in days[1:]:
        if day != previous + timedelta(days=1):
            runs.append(_day_span(start, previous))
            start = day
        previous = day
    runs.append(_day_span(start, previous))
    return runs


def _day_span(first: date, last: date) -> tuple[datetime, datetime]:
    return (datetime.combine(first, datetime.min.time(), UTC),
            datetime.combine(last, datetime.min.time(), UTC))


EMPTY_SERIES = SeriesRows(0, None, None, None, None, None, None, [], [])

# Bucket start times by their epoch seconds, shared by every series of the process: the
# bucketed queries return bucket starts as float8 epochs (date_part), since asyncpg's
# timestamptz[] decoding made a datetime per element (~1 us each) that every device of a
# dashboard then repeated; buckets are aligned to BUCKET_ORIGIN, so devices share them.
# An epoch as float8 is within half a microsecond of the instant up to year ~2255 (53
# bits), and timedelta rounds to the microsecond, so the datetime is the instant exactly.
# Cleared when full: a bound, not an eviction policy.
_BUCKET_TIMES: dict[float, datetime] = {}
_BUCKET_TIMES_MAX = 65_536
_from_epoch = datetime.fromtimestamp
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RAW = object()  # a row without epochs: a raw series, timestamptz[] times


def bucket_start(t: datetime, bucket: timedelta) -> datetime:
    """The boundary at or before ``t``: buckets are aligned to the fixed origin."""
    return BUCKET_ORIGIN + ((t - BUCKET_ORIGIN) // bucket) * bucket


@lru_cache(maxsize=256)
def bucket_times(start: datetime, end: datetime, bucket: timedelta) -> tuple[datetime, ...]:
    """Bucket starts covering [start, end): a bucketed series' points, empty buckets
    included. Cached because every device of a request shares them."""
    first = bucket_start(start, bucket)
    return tuple(first + n * bucket for n in range(-(-(end - first) // bucket)))


def bucket_time(epoch: float) -> datetime:
    """The bucket start at ``epoch`` seconds, shared with every other series."""
    found = _BUCKET_TIMES.get(epoch)
    if found is None:
        if len(_BUCKET_TIMES) >= _BUCKET_TIMES_MAX:
            _BUCKET_TIMES.clear()
        found = _BUCKET_TIMES[epoch] = _EPOCH + timedelta(seconds=epoch)
    return found


def _grid_series(row: asyncpg.Record | None, grid: tuple[datetime, ...]) -> SeriesRows:
    """A series_rolled_5m row on ``grid``, the range's bucket starts: its values placed
    by their buckets' places, None in the empty buckets."""
    if row is None:
        return EMPTY_SERIES
    values = row["vals"]
    size = len(grid)
    if len(values) != size:  # equal: every bucket holds readings, in order
        places = row["places"]
        if places[0] < 0 or places[-1] >= size:  # the query's grid is bucket_times'
            raise RuntimeError(f"series_rolled_5m placed buckets {places[0]}..{places[-1]} "
                               f"on a grid of {size}")
        filled: list[float | None] = [None] * size
        for place, value in zip(places, values, strict=True):
            filled[place] = value
        values = filled
    return SeriesRows(row["n"], row["min"], row["max"], row["avg"], row["stddev"],
                      row["first"], row["last"], None, None, grid=grid, grid_values=values)


def _series(row: asyncpg.Record | None) -> SeriesRows:
    """A raw series' row (``times``: timestamptz[]) or a bucketed one's (``epochs``)."""
    if row is None or not row["n"]:
        return EMPTY_SERIES
    epochs = row.get("epochs", _RAW)
    if epochs is _RAW:
        return SeriesRows(row["n"], row["min"], row["max"], row["avg"], row["stddev"],
                          row["first"], row["last"], list(row["times"] or []),
                          list(row["vals"] or []))
    return SeriesRows(row["n"], row["min"], row["max"], row["avg"], row["stddev"],
                      row["first"], row["last"], None, list(row["vals"] or []), epochs or ())
