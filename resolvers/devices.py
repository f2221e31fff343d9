"""Device types (Device Registry) and the devices connection shared by Query and Asset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types.lazy_type import LazyType

from gateway.context import Info
from gateway.errors import LimitExceeded
from gateway.stores.pages import Page
from gateway.stores.registry import DEVICE_SORT_KEYS, DeviceQuery
from gateway.writes import validate
from resolvers.device_query import (
    DeviceFilter,
    DeviceOrder,
    device_query,
    resolve_asset_side,
)
from resolvers.device_status import DeviceStatus
from resolvers.pagination import PageInfo, encode_position, page_info_of
from resolvers.permissions import TENANT_READERS, allow
from resolvers.scalars import Interval
from resolvers.shadows import Shadow
from resolvers.telemetry import (
    MAX_FORECAST_WINDOW,
    Aggregate,
    Forecast,
    Reading,
    TelemetrySeries,
    TimeOrder,
    series_query,
    to_forecast,
    to_series,
)

if TYPE_CHECKING:
    from resolvers.assets import Asset

DEFAULT_FORECAST_WINDOW = Interval(timedelta(hours=24))
AssetRef = Annotated["Asset", strawberry.lazy("resolvers.assets")]
# Device and Asset refer to each other; resolvers.assets imports this module, so the Asset
# class is reached through strawberry's lazy type at run time, not by an import back.
_ASSET: LazyType[Any, Any] = LazyType("Asset", "resolvers.assets")


@strawberry.type
class Capability:
    metric: str
    unit: str | None
    min: float | None
    max: float | None
    description: str | None


@strawberry.type
class Device:
    id: strawberry.ID
    serial: str
    name: str
    type: str
    status: DeviceStatus
    firmware_version: str | None
    labels: list[str]
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None
    uuid: strawberry.Private[UUID]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Device:
        return cls(
            id=strawberry.ID(str(row["id"])), serial=row["serial"], name=row["name"],
            type=row["type"], status=DeviceStatus(row["status"]),
            firmware_version=row["firmware_version"], labels=list(row["labels"]),
            created_at=row["created_at"], updated_at=row["updated_at"],
            last_seen_at=row["last_seen_at"], uuid=row["id"],
        )

    # The asset tree leads to other devices: not for a device caller.
    @strawberry.field(description="The asset this device is installed on (Asset DB).",
                      extensions=[allow(*TENANT_READERS)])
    async def asset(self, info: Info) -> AssetRef | None:
        profile = await info.context.loaders.profile.load(self.uuid)
        if profile is None or profile["asset_id"] is None:
            return None
        row = await info.context.loaders.asset.load(profile["asset_id"])
        asset: type[Asset] = _ASSET.resolve_type()
        return asset.from_row(row) if row else None

    @strawberry.field(
        description="Rich device metadata: manufacturer, model, specs... (Asset DB, JSONB)."
    )
    async def metadata(self, info: Info) -> JSON | None:
        profile = await info.context.loaders.profile.load(self.uuid)
        return profile["metadata"] if profile else None

    @strawberry.field(description="What the device measures and accepts (Asset DB).")
    async def capabilities(self, info: Info) -> list[Capability] | None:
        profile = await info.context.loaders.profile.load(self.uuid)
        if profile is None:
            return None
        return [
            Capability(metric=c["metric"], unit=c.get("unit"), min=c.get("min"),
                       max=c.get("max"), description=c.get("description"))
            for c in profile["capabilities"]
        ]

    @strawberry.field(
        description="One metric over a time range; raw points, or buckets when `bucket` is "
        "given (Telemetry DB). Defaults: to = now, from = to - 1h."
    )
    async def telemetry(
        self, info: Info, metric: str, from_: Annotated[
            datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None, bucket: Interval | None = None,
        aggregate: Aggregate | None = Aggregate.AVG, limit: int | None = None,
        order: Annotated[TimeOrder, strawberry.argument(
            description="Raw points oldest first (default) or newest first; with `limit`, "
            "which end of the range the points come from.")] = TimeOrder.OLDEST_FIRST,
    ) -> TelemetrySeries | None:
        q = series_query(info, metric, from_, to, bucket, aggregate, limit)
        if order is TimeOrder.NEWEST_FIRST:
            q = replace(q, newest_first=True)
        rows = await info.context.loaders.series(q).load(self.uuid)
        return to_series(self.uuid, q, rows)

    @strawberry.field(
        description="The newest reading of each metric (all metrics when `metrics` is omitted)."
    )
    async def latest(self, info: Info, metrics: list[str] | None = None) -> list[Reading] | None:
        rows = await info.context.loaders.latest(metrics).load(self.uuid)
        return [Reading(metric=r["metric"], time=r["time"], value=r["value"]) for r in rows]

    @strawberry.field(
        description="Linear trend of a metric over `window` and when it will cross "
        "`threshold` (predictive maintenance)."
    )
    async def forecast(
        self, info: Info, metric: str, threshold: float,
        window: Interval | None = DEFAULT_FORECAST_WINDOW,
    ) -> Forecast | None:
        validate.metric(metric, "metric")
        span = window or DEFAULT_FORECAST_WINDOW
        if span > MAX_FORECAST_WINDOW:
            raise LimitExceeded(f"window may be at most {MAX_FORECAST_WINDOW.days} days",
                                argument="window", maximum="366d")
        now = info.context.now
        trend = await info.context.loaders.forecast(metric, now - span, now).load(self.uuid)
        return to_forecast(metric, threshold, trend, now)

    @strawberry.field(
        description="Current reported/desired state (Redis); null when the device has never "
        "had a shadow."
    )
    async def shadow(self, info: Info) -> Shadow | None:
        if self.status is DeviceStatus.DECOMMISSIONED:
            return None  # its shadow is deleted, or about to be by the reconciler
        doc = await info.context.loaders.shadow.load(self.uuid)
        return Shadow.from_doc(doc) if doc else None


@strawberry.type
class DeviceEdge:
    cursor: str
    node: Device


@strawberry.type
class DeviceConnection:
    edges: list[DeviceEdge]
    page_info: PageInfo
    total_count: int


def device_connection(page: Page, q: DeviceQuery) -> DeviceConnection:
    key = DEVICE_SORT_KEYS[q.order.key]
    edges = [
        DeviceEdge(cursor=encode_position(q.order, key, (r[key.column], r["id"])),
                   node=Device.from_row(r))
        for r in page.rows
    ]
    return DeviceConnection(edges=edges, total_count=page.total,
                            page_info=page_info_of(page, [e.cursor for e in edges]))


async def resolve_devices(
    info: Info, first: int | None, after: str | None, filter: DeviceFilter | None,
    last: int | None = None, before: str | None = None, order_by: DeviceOrder | None = None,
) -> DeviceConnection:
    """A page of the caller's devices: asset-side conditions first (one asset-store round
    trip, only when there are any), then one registry round trip."""
    ctx = info.context
    q = device_query(ctx.settings.max_page_size, first, after, last, before, order_by, filter)
    q = await resolve_asset_side(ctx.stores, ctx.tenant_id, q)
    return device_connection(await ctx.stores.registry.page_devices(ctx.tenant_id, q), q)


async def resolve_asset_devices(
    info: Info, asset_id: UUID, first: int | None, after: str | None,
    filter: DeviceFilter | None, last: int | None = None, before: str | None = None,
    order_by: DeviceOrder | None = None,
) -> DeviceConnection:
    """Asset.devices: batched across every asset of the response (two round trips)."""
    ctx = info.context
    q = device_query(ctx.settings.max_page_size, first, after, last, before, order_by, filter)
    return device_connection(await ctx.loaders.asset_devices(q).load(asset_id), q)
