"""The events of the telemetryChanged subscription (served by the hub's telemetry feed,
``gateway.live.telemetry_feed``)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from resolvers.telemetry import Reading


@strawberry.enum
class TelemetryEventKind(Enum):
    SNAPSHOT = strawberry.enum_value(
        "SNAPSHOT", description="The device's last values from the store, sent first on "
        "every (re)subscription.")
    UPDATED = strawberry.enum_value(
        "UPDATED", description="A committed batch moved one of the chosen metrics.")


@strawberry.type(description="A device's newest readings of the chosen metrics.")
class TelemetryEvent:
    kind: TelemetryEventKind
    device_id: strawberry.ID
    readings: list[Reading] = strawberry.field(description=(
        "The newest reading of each chosen metric the device has, by metric name (empty in "
        "a SNAPSHOT of a device without readings). Events are rate-bounded per "
        "subscription (TELEMETRY_EVENTS_PER_SECOND): readings committed faster coalesce to "
        "the newest, so a chart reads its history with Query.telemetry and appends these."))
    at: datetime = strawberry.field(description="When the gateway observed the change.")
