"""Telemetry ingest through GraphQL: the shared reading check (``gateway.writes.readings``)
per reading, one store call for the batch, then one last-seen update.

The batch is checked and put in the canonical lock order (``gateway.writes.bulk_ingest``)
in one pass, and the newest reading per series is taken from the sorted batch: the store
COPYs the records as they are (``TelemetryStore.ingest_sorted``), the last values and the
live announcement use that newest, and last-seen times come from it."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import NamedTuple
from uuid import UUID

from gateway.errors import LimitExceeded
from gateway.metrics import INGESTED
from gateway.stores import Stores
from gateway.stores.telemetry import Record
from gateway.writes.reading_announcements import announce
from gateway.writes.readings import UNKNOWN_DEVICE, LastSeen, ReadingCheck, device_problem

MAX_READINGS = 10_000


class RawReading(NamedTuple):
    """A reading as a request gave it (a tuple: a 10,000-reading batch builds 10,000 of
    them, and a frozen dataclass cost ~5 us each)."""

    device_id: str
    metric: str
    time: datetime
    value: float


# What ``ingest`` takes: RawReading, or a plain tuple of the same four.
Reading = tuple[str, str, datetime, float]


@dataclass
class IngestOutcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def count_ingest(accepted: int, duplicates: int, rejected: int) -> None:
    INGESTED.labels("accepted").inc(accepted)
    INGESTED.labels("duplicate").inc(duplicates)
    INGESTED.labels("rejected").inc(rejected)


def _device_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


async def ingest(
    stores: Stores, tenant_id: UUID, readings: Sequence[Reading], *,
    max_readings: int = MAX_READINGS,
) -> IngestOutcome:
    if len(readings) > max_readings:
        raise LimitExceeded(
            f"{len(readings)} readings in one call; the limit is {max_readings}",
            limit="maxReadings", maximum=max_readings,
        )
    outcome = IngestOutcome()
    problem = ReadingCheck().problem
    rejected = outcome.rejected
    # Per device id text, not per reading: a batch names few devices many times (a UUID
    # parse and UUID hashing per reading were a third of this loop's time).
    # A GraphQL ID that is not a UUID names no device: it reads like an unknown one.
    ids = {text: _device_uuid(text) for text in {r[0] for r in readings}}
    # The batch's devices in the canonical lock order (a uuid's bytes, as PostgreSQL
    # orders uuid): a usable device is named by its rank there, so ordering series
    # compares ints, never UUID objects; a refused one by why (a str).
    known = sorted({u for u in ids.values() if u is not None}, key=attrgetter("bytes"))
    rows = await stores.registry.devices_by_ids(tenant_id, known) if known else []
    usable: dict[UUID, int | str] = {
        device: device_problem(row, device) or n
        for n, (device, row) in enumerate(zip(known, rows, strict=True))}
    rank = {text: UNKNOWN_DEVICE if u is None else usable[u] for text, u in ids.items()}
    # One pass: the check, then each reading into its series (device rank, metric) as
    # (time, index, value); index keeps equal times (a reading given twice) in request
    # order. Sorting series by series, not the batch by whole keys: a series usually comes
    # in time order, which the sort passes through in one comparison a reading (a sort
    # of the whole batch cost ~3 us a reading, more than the check).
    series: dict[tuple[int, str], list[tuple[datetime, int, float]]] = {}
    for index, (text, metric, time, value) in enumerate(readings):
        if time.tzinfo is None:  # as_utc, inline: once per reading
            time = time.replace(tzinfo=UTC)
        device_rank = rank[text]
        reason = problem(metric, time, value)
        if reason is None:
            if isinstance(device_rank, str):
                reason = device_rank
            else:
                key = (device_rank, metric)
                found = series.get(key)
                if found is None:
                    found = series[key] = []
                found.append((time, index, value))
                continue
        rejected.append((index, reason))
    records: list[Record] = []
    # The newest per series, the first given of equal times.
    latest: dict[tuple[UUID, str], tuple[datetime, float]] = {}
    for key in sorted(series):  # device rank, then metric by code point ("C" order)
        found = series[key]
        found.sort()
        device, metric = known[key[0]], key[1]
        records += [(tenant_id, device, metric, time, value) for time, _, value in found]
        newest = found[bisect_left(found, (found[-1][0],))]
        latest[device, metric] = (newest[0], newest[2])
    last_seen = LastSeen()
    for (device, _), (time, _) in latest.items():
        last_seen.saw(device, time)
    inserted = await stores.telemetry.ingest_sorted(records, latest)
    outcome.accepted = inserted
    outcome.duplicates = len(records) - inserted
    count_ingest(outcome.accepted, outcome.duplicates, len(outcome.rejected))
    # Both after the commit and both independent of each other, so side by side: the
    # registry update of 100 devices took ~30 ms and the publish ~6 ms on a loaded
    # machine, one after the other a third of a 1,000-reading request. Neither raises
    # for its store being unavailable (the readings are committed).
    # The announcement: the batch's newest per series (a duplicate's value may differ from
    # the stored one; the next SNAPSHOT reads the store).
    await asyncio.gather(last_seen.record(stores, tenant_id),
                         announce(stores, tenant_id, latest if inserted else {}))
    return outcome
