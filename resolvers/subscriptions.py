"""The subscription fields (shadowChanged, telemetryChanged). Their events come from the
subscription hub through ``resolvers.live.GatewaySchema``, which serves every subscription
of these fields from a shared cohort; these resolvers only run if the schema is used
without the hub."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gateway.errors import GatewayError
from resolvers.permissions import TENANT_READERS, OwnDevice, allow
from resolvers.shadows import ShadowEvent
from resolvers.telemetry_events import TelemetryEvent


@strawberry.type
class Subscription:
    # A device may watch only its own shadow: deviceIds naming itself, no assetId.
    @strawberry.subscription(
        description="Shadow changes of the given devices, or of every device installed under "
        "assetId, or of the whole tenant when both are omitted.",
        extensions=[allow(*TENANT_READERS, device=OwnDevice("device_ids", refused=("asset_id",)))],
    )
    async def shadow_changed(
        self, device_ids: list[strawberry.ID] | None = None, asset_id: strawberry.ID | None = None
    ) -> AsyncGenerator[ShadowEvent, None]:
        raise GatewayError("shadowChanged is served over WebSocket by the gateway's hub")
        yield  # pragma: no cover  (makes this an async generator)

    @strawberry.subscription(
        description="The newest readings of the given devices (of the given metrics, or of "
        "all), as ingest batches commit (ingestTelemetry and POST /ingest): a SNAPSHOT of "
        "each device's last values first, then UPDATED events, at most "
        "TELEMETRY_EVENTS_PER_SECOND per subscription.",
        extensions=[allow(*TENANT_READERS, device=OwnDevice("device_ids"))],
    )
    async def telemetry_changed(
        self, device_ids: list[strawberry.ID], metrics: list[str] | None = None
    ) -> AsyncGenerator[TelemetryEvent, None]:
        raise GatewayError("telemetryChanged is served by the gateway's hub")
        yield  # pragma: no cover  (makes this an async generator)
