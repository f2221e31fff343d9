"""After a batch of readings commits, one Redis message tells every replica's hub the
newest reading of each (device, metric) it stored: ``telemetryChanged`` subscribers see
both ingest paths (``ingestTelemetry`` and ``POST /ingest``) wherever they are connected.

One publish per committed batch, never per reading. The readings are already committed
when this runs: a Redis failure costs the live update (subscribers catch up at their next
SNAPSHOT), never the write, so it is logged and not raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from gateway.errors import StoreUnavailable
from gateway.stores import Stores

log = logging.getLogger("gateway.writes.reading_announcements")

Latest = Mapping[tuple[UUID, str], tuple[datetime, float]]


def newest(devices: list[UUID], metrics: list[str], times: list[datetime],
           values: list[float]) -> dict[tuple[UUID, str], tuple[datetime, float]]:
    """The newest reading per (device, metric) of parallel columns."""
    latest: dict[tuple[UUID, str], tuple[datetime, float]] = {}
    for key, time, value in zip(zip(devices, metrics, strict=True), times, values,
                                strict=True):
        held = latest.get(key)
        if held is None or held[0] < time:
            latest[key] = (time, value)
    return latest


async def announce(stores: Stores, tenant_id: UUID, latest: Latest) -> None:
    if not latest:
        return
    try:
        await stores.shadows.publish_readings(tenant_id, latest)
    except StoreUnavailable as exc:
        log.warning("readings of %d series committed but not announced: %s", len(latest), exc)
