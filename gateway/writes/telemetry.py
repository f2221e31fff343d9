"""Telemetry ingest through GraphQL: the shared reading check (``gateway.writes.readings``)
per reading, one store call for the batch, then one last-seen update."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from gateway.errors import LimitExceeded
from gateway.metrics import INGESTED
from gateway.stores import Stores
from gateway.writes.reading_announcements import announce, newest
from gateway.writes.readings import UNKNOWN_DEVICE, LastSeen, ReadingCheck, as_utc, device_problem

MAX_READINGS = 10_000


@dataclass(frozen=True)
class RawReading:
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
    # A GraphQL ID that is not a UUID names no device: it reads like an unknown one.
    ids = {r.device_id: _device_uuid(r.device_id) for r in readings}
    known = [u for u in set(ids.values()) if u is not None]
    rows = await stores.registry.devices_by_ids(tenant_id, known) if known else []
    why_not = {u: device_problem(row, u) for u, row in zip(known, rows, strict=True)}
    devices: list[UUID] = []
    metrics: list[str] = []
    times: list[datetime] = []
    values: list[float] = []
    last_seen = LastSeen()
    for index, r in enumerate(readings):
        device = ids[r.device_id]
        time = as_utc(r.time)
        reason = check.problem(r.metric, time, r.value) or (
            UNKNOWN_DEVICE if device is None else why_not[device])
        if reason:
            outcome.rejected.append((index, reason))
            continue
        assert device is not None
        devices.append(device)
        metrics.append(r.metric)
        times.append(time)
        values.append(r.value)
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
