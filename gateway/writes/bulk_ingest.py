"""Writes ``POST /ingest`` batches into ``readings`` inside the request's transaction.

Lock order. A request takes the row locks of its readings (the unique index on device,
metric, time: an insert of a key another transaction inserted and has not committed waits
for it) in one statement, in one canonical order, (device_id, metric in byte order,
time), the order ``ingestTelemetry``'s statement uses as well. Two requests writing the
same readings in opposite orders then wait for each other at most one way, never in a
cycle (before, each locked its readings in body order and they deadlocked: one answered
STORE_UNAVAILABLE). So a request's readings go to the database once:
- a request of one batch (up to ``gateway.http.ingest.BATCH`` readings): that batch,
  sorted, is binary-COPY'd straight into ``readings`` under a savepoint; if it holds a
  duplicate the COPY fails as a whole, is rolled back to its savepoint and the batch goes
  through the staging table below;
- a request of several batches: each batch is COPY'd, while the next one is parsed, into
  a temporary staging table (no index, no WAL, no lock anyone else wants), and at the end
  one ``INSERT .. SELECT .. ORDER BY .. ON CONFLICT DO NOTHING`` moves them all into
  ``readings`` in key order, skipping duplicates. Written batch by batch into
  ``readings``, a request held its first batches' locks while locking the next ones,
  which no per-batch order can make safe. The price is the staging insert's rate, about
  half of COPY into ``readings`` (measured on 300k readings).

The 5-minute rollup is kept by the readings trigger, deferred: the partial aggregates
are collected in the transaction and merged into ``readings_5m`` once at the end in key
order (``readings_rollup_merge``, telemetry migration 008). The last values are upserted
once at the end, after the rollup (the order ``ingestTelemetry``'s COPY and then its
last values lock them in, ``TelemetryStore.ingest_sorted``), from what was actually
inserted. Every table is locked in key order and the tables in the same order
(readings, rollup, last values) by every writer.

Partitions: the days of every batch are created before the readings are written, from
a separate connection (committed at once, shared by everyone); a day first reached after
the request has written readings is created in the request's own transaction, by
CREATE TABLE + ATTACH PARTITION, whose lock does not conflict with readers and writers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from gateway.stores.telemetry import TelemetryStore, day_runs

COLUMNS = ["tenant_id", "device_id", "metric", "time", "value"]
Record = tuple[UUID, UUID, str, datetime, float]
Latest = dict[tuple[UUID, str], tuple[datetime, float]]
# Spelled out rather than LIKE readings: LIKE would lock readings for the whole request.
STAGING = """CREATE TEMP TABLE ingest_staging (
    tenant_id uuid NOT NULL, device_id uuid NOT NULL, metric text NOT NULL,
    time timestamptz NOT NULL, value double precision NOT NULL
) ON COMMIT DROP"""


def _key(record: Record) -> tuple[UUID, str, datetime]:
    # UUIDs compare as PostgreSQL's uuid does (bytes, big-endian); str by code point, as
    # text COLLATE "C" does for UTF-8.
    return (record[1], record[2], record[3])


class Writer:
    """One request's writes on one connection in a transaction; one batch in flight."""

    def __init__(self, conn: asyncpg.Connection, telemetry: TelemetryStore,
                 tenant_id: UUID) -> None:
        self._conn = conn
        self._telemetry = telemetry
        self._tenant = tenant_id
        self._task: asyncio.Task[None] | None = None
        # The first batch waits here until we know whether another follows.
        self._first: tuple[list[Record], Latest] | None = None
        self._staged = False  # batches go to the staging table (several, or duplicates)
        self._staging = False  # the staging table exists
        self._wrote = False  # readings written in this transaction (their lock is held)
        self._deferred = False  # the rollup collects until finish() merges it
        self.accepted = 0
        self.latest: Latest = {}
        self.span: tuple[datetime, datetime] | None = None  # of the batches written

    async def submit(self, records: list[Record], first: datetime, last: datetime,
                     latest: Latest) -> None:
        """Waits for the batch in flight, then starts staging this one (the first batch
        is kept until a second one comes or ``finish`` writes it alone)."""
        await self.wait()
        for start, end in day_runs(first, last, (r[3] for r in records)):
            await self._ensure_days(start, end)
        self.span = (first, last) if self.span is None else (
            min(first, self.span[0]), max(last, self.span[1]))
        if self._first is None and not self._staged:
            self._first = (records, latest)
            return
        self._staged = True
        held, self._first = self._first, None
        self._task = asyncio.create_task(
            self._stage([*held[0], *records] if held is not None else records))

    async def wait(self) -> None:
        """Waits for the batch in flight; its failure is raised here."""
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def finish(self) -> None:
        """Writes the readings (one statement, key order), then merges the rollup and
        moves the last values forward."""
        await self.wait()
        if self._first is not None:
            records, latest = self._first
            self._first = None
            await self._write_one_batch(records, latest)
        elif self._staged:
            await self._insert_staged()
        if self._deferred:
            await self._conn.execute(self._telemetry.sql["rollup_merge"])
        if self.latest:
            keys = list(self.latest)
            await self._conn.execute(
                self._telemetry.sql["upsert_latest_many"], self._tenant,
                [k[0] for k in keys], [k[1] for k in keys],
                [self.latest[k][0] for k in keys], [self.latest[k][1] for k in keys])

    async def abandon(self) -> None:
        """On a failed request: stop the batch in flight before the rollback."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _defer_rollup(self) -> None:
        if not self._deferred:
            # Outside any savepoint: its setting must last to the end of the transaction.
            await self._conn.execute(self._telemetry.sql["rollup_defer"])
            self._deferred = True

    async def _write_one_batch(self, records: list[Record], latest: Latest) -> None:
        await self._defer_rollup()
        records.sort(key=_key)
        try:
            async with self._conn.transaction():  # a savepoint
                self._wrote = True
                status = await self._conn.copy_records_to_table(
                    "readings", records=records, columns=COLUMNS)
        except asyncpg.UniqueViolationError:
            await self._stage(records)
            await self._insert_staged()
            return
        self.accepted += int(status.rsplit(" ", 1)[1])
        _merge(self.latest, latest)

    async def _stage(self, records: Sequence[Record]) -> None:
        if not self._staging:
            await self._conn.execute(STAGING)
            self._staging = True
        await self._conn.copy_records_to_table("ingest_staging", records=records,
                                               columns=COLUMNS)

    async def _insert_staged(self) -> None:
        """Every staged reading into ``readings`` in key order, duplicates skipped; the
        newest inserted reading per series comes back for the last values."""
        await self._defer_rollup()
        self._wrote = True
        rows = await self._conn.fetch(self._telemetry.sql["insert_staged_in_order"])
        if rows:
            self.accepted += int(rows[0]["inserted"])
        _merge(self.latest, {(r["device_id"], r["metric"]): (r["time"], r["value"])
                             for r in rows})

    async def _ensure_days(self, first: datetime, last: datetime) -> None:
        if self._telemetry.days_ensured(first, last):
            return
        if not self._wrote:
            await self._telemetry.ensure_days(first, last)
        else:
            # Rolled back with the request if it fails: not remembered as ensured.
            await self._conn.execute(self._telemetry.sql["ensure_partitions"], first, last)


def _merge(into: Latest, batch: Latest) -> None:
    for key, (time, value) in batch.items():
        if key not in into or into[key][0] < time:
            into[key] = (time, value)
