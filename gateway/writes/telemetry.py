"""Telemetry ingest through GraphQL: the shared reading check (``gateway.writes.readings``)
per reading, one store call for the batch, then one last-seen update."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple
from uuid import UUID

from gateway.errors import LimitExceeded
from gateway.metrics import INGESTED
from gateway.stores import Stores
from gateway.writes.reading_announcements import announce, newest
from gateway.writes.readings import UNKNOWN_DEVICE, LastSeen, ReadingCheck, device_problem

MAX_READINGS = 10_000


class RawReading(NamedTuple):
    """A reading as a request gave it (a tuple: a 10,000-reading batch builds 10,000 of
    them, and a frozen dataclass cost ~5 us each)."""

    device_id: str
    metric: str
    time: datetime
    value: float


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
    stores: Stores, tenant_id: UUID, readings: Sequence[RawReading], *,
    max_readings: int = MAX_READINGS,
) -> IngestOutcome:
    if len(readings) > max_readings:
        raise LimitExceeded(
            f"{len(readings)} readings in one call; the limit is {max_readings}",
            limit="maxReadings", maximum=max_readings,
        )
    outcome = IngestOutcome()
    check = ReadingCheck()
    # Per device id text, not per reading: a batch names few devices many times (a UUID
    # parse and UUID hashing per reading were a third of this loop's time).
    # A GraphQL ID that is not a UUID names no device: it reads like an unknown one.
    ids = {text: _device_uuid(text) for text in {r.device_id for r in readings}}
    known = list({u for u in ids.values() if u is not None})
    rows = await stores.registry.devices_by_ids(tenant_id, known) if known else []
    why_not_by_uuid = {u: device_problem(row, u) for u, row in zip(known, rows, strict=True)}
    why_not = {text: UNKNOWN_DEVICE if u is None else why_not_by_uuid[u]
               for text, u in ids.items()}
    devices: list[UUID] = []
    metrics: list[str] = []
    times: list[datetime] = []
    values: list[float] = []
    seen_last: dict[str, datetime] = {}  # device id text -> its newest accepted time
    for index, (text, metric, time, value) in enumerate(readings):
        if time.tzinfo is None:  # as_utc, inline: once per reading
            time = time.replace(tzinfo=UTC)
        reason = check.problem(metric, time, value) or why_not[text]
        if reason:
            outcome.rejected.append((index, reason))
            continue
        devices.append(ids[text])  # type: ignore[arg-type]  # known: no reason given
        metrics.append(metric)
        times.append(time)
        values.append(value)
        seen = seen_last.get(text)
        if seen is None or seen < time:
            seen_last[text] = time
    last_seen = LastSeen()
    for text, time in seen_last.items():
        device = ids[text]
        assert device is not None
        last_seen.saw(device, time)
    inserted = await stores.telemetry.ingest(tenant_id, devices, metrics, times, values)
    outcome.accepted = inserted
    outcome.duplicates = len(devices) - inserted
    count_ingest(outcome.accepted, outcome.duplicates, len(outcome.rejected))
    await last_seen.record(stores, tenant_id)
    if inserted:
        # The batch's newest per series (a duplicate's value may differ from the stored
        # one; the next SNAPSHOT reads the store).
        await announce(stores, tenant_id, newest(devices, metrics, times, values))
    return outcome
