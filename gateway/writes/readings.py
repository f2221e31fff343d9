"""The one check of a telemetry reading and the one last-seen update, used by both ingest
routes (``POST /ingest`` in ``gateway.http.ingest`` and ``ingestTelemetry`` in
``gateway.writes.telemetry``), so a reading is refused for the same reasons whichever way
it came.

A reading is checked first on its own (``ReadingCheck``: a metric name, a time at most
``MAX_FUTURE`` ahead, a finite value within ``MAX_READING``), then against its device's
registry row (``device_problem``: known in the caller's tenant, the caller's own when the
caller is a device, not decommissioned). Each route parses its own input first: what
cannot be parsed (a line that is not JSON, a device id that is not an ID) is the route's
to report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from gateway.errors import StoreUnavailable
from gateway.stores import Stores
from gateway.writes.validate import MAX_READING, METRIC, storable_time

log = logging.getLogger("gateway.writes")

# Clocks of devices drift; a reading further ahead is a bad clock, and it would sit as
# the device's latest value until real time caught up with it.
MAX_FUTURE = timedelta(minutes=5)
UNKNOWN_DEVICE = "unknown device"


class ReadingCheck:
    """Checks readings of one request against one notion of now. Per reading this is one
    call and a few comparisons: ``POST /ingest`` runs it a million times a request."""

    def __init__(self, now: datetime | None = None) -> None:
        self._latest_allowed = (now or datetime.now(UTC)) + MAX_FUTURE
        self._metrics: dict[str, bool] = {}  # metric -> is a metric name

    def problem(self, metric: Any, time: datetime | None, value: float | None) -> str | None:
        """Why the reading is refused, or None. ``time`` None: not a date-time; ``value``
        None: not a number."""
        good_metric = self._metrics.get(metric) if type(metric) is str else False
        if good_metric is None:
            good_metric = self._metrics[metric] = METRIC.match(metric) is not None
        if not good_metric:
            return f"metric {metric!r} is not a metric name"
        if time is None:
            return "time is not an RFC 3339 date-time"
        if time > self._latest_allowed:
            return "time is more than 5 minutes in the future"
        if time.year == 1 and not storable_time(time):
            return "time is not after 0001-01-01T00:00:00Z"
        if value is None or not math.isfinite(value):
            return "value is not a finite number"
        if abs(value) > MAX_READING:
            return f"value is beyond {MAX_READING:g} in magnitude"
        return None


def device_problem(row: Mapping[str, Any] | None, device: UUID,
                   own: UUID | None = None) -> str | None:
    """Why readings of ``device`` are refused, given its registry row in the caller's
    tenant (None: no such device there, which reads like another tenant's) and the
    caller's own device when the caller is one."""
    if row is None:
        return UNKNOWN_DEVICE
    if own is not None and device != own:
        return "a device may only write its own readings"
    if row["status"] == "DECOMMISSIONED":
        return "device is decommissioned"
    return None


def as_utc(time: datetime) -> datetime:
    """A time without an offset is taken as UTC."""
    return time if time.tzinfo else time.replace(tzinfo=UTC)


class LastSeen:
    """The newest reading time per device of a request, moved forward in the registry
    once, after the readings are stored."""

    def __init__(self) -> None:
        self.times: dict[UUID, datetime] = {}

    def saw(self, device: UUID, time: datetime) -> None:
        if device not in self.times or self.times[device] < time:
            self.times[device] = time

    async def record(self, stores: Stores, tenant_id: UUID) -> None:
        if not self.times:
            return
        try:
            await stores.registry.touch_last_seen(tenant_id, self.times)
        except StoreUnavailable:
            # The readings are stored; the reconciler moves lastSeenAt forward from them.
            log.warning("lastSeenAt of %d devices left for the reconciler", len(self.times))
