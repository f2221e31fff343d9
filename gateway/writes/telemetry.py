"""Telemetry ingest through GraphQL: per-reading validation, one store call for the batch."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from gateway.errors import LimitExceeded, StoreUnavailable
from gateway.metrics import INGESTED
from gateway.stores import Stores
from gateway.writes.validate import MAX_READING, METRIC

log = logging.getLogger("gateway.writes")

MAX_READINGS = 10_000
MAX_FUTURE = timedelta(minutes=5)


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
    ids = {r.device_id: _device_uuid(r.device_id) for r in readings}
    known = [u for u in set(ids.values()) if u is not None]
    rows = await stores.registry.devices_by_ids(tenant_id, known) if known else []
    status = {u: row["status"] for u, row in zip(known, rows, strict=True) if row is not None}
    now = datetime.now(UTC)
    devices: list[UUID] = []
    metrics: list[str] = []
    times: list[datetime] = []
    values: list[float] = []
    for index, r in enumerate(readings):
        device = ids[r.device_id]
        time = r.time if r.time.tzinfo else r.time.replace(tzinfo=UTC)
        reason = (
            "unknown device" if device is None or device not in status
            else "device is decommissioned" if status[device] == "DECOMMISSIONED"
            else f"metric {r.metric!r} is not a metric name" if not METRIC.match(r.metric)
            else "value is not a finite number" if not math.isfinite(r.value)
            else f"value is beyond {MAX_READING:g} in magnitude" if abs(r.value) > MAX_READING
            else "time is more than 5 minutes in the future" if time > now + MAX_FUTURE
            else None
        )
        if reason:
            outcome.rejected.append((index, reason))
            continue
        assert device is not None
        devices.append(device)
        metrics.append(r.metric)
        times.append(time)
        values.append(r.value)
    inserted = await stores.telemetry.ingest(tenant_id, devices, metrics, times, values)
    outcome.accepted = inserted
    outcome.duplicates = len(devices) - inserted
    count_ingest(outcome.accepted, outcome.duplicates, len(outcome.rejected))
    await _touch_last_seen(stores, tenant_id, devices, times)
    return outcome


async def _touch_last_seen(
    stores: Stores, tenant_id: UUID, devices: list[UUID], times: list[datetime]
) -> None:
    seen: dict[UUID, datetime] = {}
    for device, time in zip(devices, times, strict=True):
        if device not in seen or seen[device] < time:
            seen[device] = time
    if not seen:
        return
    try:
        await stores.registry.touch_last_seen(tenant_id, seen)
    except StoreUnavailable:
        # The readings are stored; the reconciler moves lastSeenAt forward from them.
        log.warning("lastSeenAt of %d devices left for the reconciler", len(seen))
