"""Writes ``POST /ingest`` batches into ``readings`` inside the request's transaction.

Each checked batch is binary-COPY'd straight into ``readings`` under a savepoint, in the
background while the next batch is parsed (the database inserts while Python parses).
A batch that holds a duplicate (same device, metric, time) fails that COPY as a whole; it
is rolled back to its savepoint and stored again through a staging table with
``INSERT .. ON CONFLICT DO NOTHING``, which skips the duplicates. Measured on 300k
readings: ``INSERT .. ON CONFLICT`` from staging runs at about half the rate of COPY into
readings, so fresh data (the common case) takes the COPY and retries pay for the staging.

The 5-minute rollup is kept by the readings trigger, deferred: each batch's partial
aggregates are collected in the transaction, and merged into ``readings_5m`` once at the
end in key order (``readings_rollup_merge``, telemetry migration 008). Upserted batch by
batch, two requests over the same devices and minutes locked rollup rows in their bodies'
orders and deadlocked. The last values are upserted once at the end, before the rollup
(the order ``ingestTelemetry``'s one statement locks them in), from what the batches
actually inserted.

Partitions: a day is created before the first write of the request from a separate
connection (committed at once, shared by everyone); a day first reached after the
request has written readings is created in the request's own transaction, by
CREATE TABLE + ATTACH PARTITION, whose lock does not conflict with readers and writers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from gateway.stores.telemetry import TelemetryStore

COLUMNS = ["tenant_id", "device_id", "metric", "time", "value"]
Record = tuple[UUID, UUID, str, datetime, float]
Latest = dict[tuple[UUID, str], tuple[datetime, float]]
# Spelled out rather than LIKE readings: LIKE would lock readings for the whole request.
STAGING = """CREATE TEMP TABLE ingest_staging (
    tenant_id uuid NOT NULL, device_id uuid NOT NULL, metric text NOT NULL,
    time timestamptz NOT NULL, value double precision NOT NULL
) ON COMMIT DROP"""


class Writer:
    """One request's writes on one connection in a transaction; one batch in flight."""

    def __init__(self, conn: asyncpg.Connection, telemetry: TelemetryStore,
                 tenant_id: UUID) -> None:
        self._conn = conn
        self._telemetry = telemetry
        self._tenant = tenant_id
        self._task: asyncio.Task[None] | None = None
        self._wrote = False  # readings written in this transaction (their lock is held)
        self._staging = False
        self._deferred = False  # the rollup collects until finish() merges it
        self.accepted = 0
        self.latest: Latest = {}
        self.span: tuple[datetime, datetime] | None = None  # of the batches written

    async def submit(self, records: list[Record], first: datetime, last: datetime,
                     latest: Latest) -> None:
        """Waits for the batch in flight, then starts writing this one."""
        await self.wait()
        self._task = asyncio.create_task(self._write(records, first, last, latest))

    async def wait(self) -> None:
        """Waits for the batch in flight; its failure is raised here."""
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def finish(self) -> None:
        """Waits for the last batch and moves the last values forward."""
        await self.wait()
        if self.latest:
            keys = list(self.latest)
            await self._conn.execute(
                self._telemetry.sql["upsert_latest_many"], self._tenant,
                [k[0] for k in keys], [k[1] for k in keys],
                [self.latest[k][0] for k in keys], [self.latest[k][1] for k in keys])
        if self._deferred:
            await self._conn.execute(self._telemetry.sql["rollup_merge"])

    async def abandon(self) -> None:
        """On a failed request: stop the batch in flight before the rollback."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _write(self, records: list[Record], first: datetime, last: datetime,
                     latest: Latest) -> None:
        await self._ensure_days(first, last)
        if not self._deferred:
            # Outside any savepoint: its setting must last to the end of the transaction.
            await self._conn.execute(self._telemetry.sql["rollup_defer"])
            self._deferred = True
        self.span = (first, last) if self.span is None else (
            min(first, self.span[0]), max(last, self.span[1]))
        try:
            async with self._conn.transaction():  # a savepoint
                self._wrote = True
                status = await self._conn.copy_records_to_table(
                    "readings", records=records, columns=COLUMNS)
        except asyncpg.UniqueViolationError:
            await self._write_skipping_duplicates(records)
            return
        self.accepted += int(status.rsplit(" ", 1)[1])
        _merge(self.latest, latest)

    async def _write_skipping_duplicates(self, records: Sequence[Record]) -> None:
        if self._staging:
            await self._conn.execute("TRUNCATE ingest_staging")
        else:
            await self._conn.execute(STAGING)
            self._staging = True
        await self._conn.copy_records_to_table("ingest_staging", records=records,
                                               columns=COLUMNS)
        rows = await self._conn.fetch(self._telemetry.sql["insert_staged_returning"])
        self.accepted += len(rows)
        inserted: Latest = {}
        for row in rows:
            key = (row["device_id"], row["metric"])
            if key not in inserted or inserted[key][0] < row["time"]:
                inserted[key] = (row["time"], row["value"])
        _merge(self.latest, inserted)

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
