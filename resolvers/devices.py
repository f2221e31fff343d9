"""Device types (Device Registry) and the devices connection shared by Query and Asset."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types.lazy_type import LazyType

from gateway.context import Info
from gateway.errors import BadUserInput, LimitExceeded
from gateway.stores.registry import DeviceQuery
from gateway.writes import validate
from resolvers.pagination import PageInfo, check_page_size, decode_cursor, encode_cursor, page_info
from resolvers.permissions import TENANT_READERS, allow
from resolvers.scalars import Interval, parse_id
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


@strawberry.enum
class DeviceStatus(Enum):
    PROVISIONED = "PROVISIONED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DECOMMISSIONED = "DECOMMISSIONED"


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


@strawberry.input
class DeviceFilter:
    status: list[DeviceStatus] | None = None
    types: list[str] | None = None
    labels: list[str] | None = strawberry.field(
        default=None, description="Devices carrying all of these labels."
    )
    asset_id: strawberry.ID | None = strawberry.field(
        default=None, description="Devices installed on this asset or any asset below it."
    )
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive match on name or serial."
    )
    metadata: JSON | None = strawberry.field(
        default=None,
        description='JSONB containment on Device.metadata, e.g. {"manufacturer": "Acme"}.',
    )


def _metadata(f: DeviceFilter) -> dict[str, Any] | None:
    """The metadata containment filter; ``_device_query`` has checked it is an object."""
    return f.metadata if isinstance(f.metadata, dict) else None


def _device_query(
    info: Info, first: int | None, after: str | None, f: DeviceFilter
) -> DeviceQuery:
    """The registry half of a devices page request, validated."""
    if f.metadata is not None and not isinstance(f.metadata, dict):
        raise BadUserInput("filter.metadata must be a JSON object", argument="filter.metadata")
    return DeviceQuery(
        first=check_page_size(first, info.context.settings.max_page_size),
        after=decode_cursor(after),
        status=tuple(s.value for s in f.status) if f.status is not None else None,
        types=tuple(f.types) if f.types is not None else None,
        labels=tuple(f.labels) if f.labels is not None else None, search=f.search,
    )


def device_connection(
    rows: list[Any], total: int, q: DeviceQuery, after: str | None
) -> DeviceConnection:
    edges = [
        DeviceEdge(cursor=encode_cursor(r["created_at"], r["id"]), node=Device.from_row(r))
        for r in rows[: q.first]
    ]
    return DeviceConnection(
        edges=edges, total_count=total,
        page_info=page_info([e.cursor for e in edges], len(rows) > q.first, after),
    )


async def resolve_devices(
    info: Info, first: int | None, after: str | None, filter: DeviceFilter | None
) -> DeviceConnection:
    """A page of the caller's devices; asset-side filters are resolved in the asset store
    first and narrow the registry query to the matching ids."""
    ctx = info.context
    f = filter or DeviceFilter()
    q = _device_query(info, first, after, f)
    if f.asset_id is not None or f.metadata is not None:
        asset_id = parse_id(f.asset_id, "filter.assetId") if f.asset_id is not None else None
        ids = await ctx.stores.assets.device_ids_matching(
            ctx.tenant_id, asset_id=asset_id, metadata=_metadata(f))
        q = replace(q, ids=tuple(sorted(ids)))
    rows, total = await ctx.stores.registry.page_devices(ctx.tenant_id, q)
    return device_connection(rows, total, q, after)


async def resolve_asset_devices(
    info: Info, asset_id: UUID, first: int | None, after: str | None,
    filter: DeviceFilter | None,
) -> DeviceConnection:
    """Asset.devices: batched across every asset of the response (two round trips)."""
    f = filter or DeviceFilter()
    q = _device_query(info, first, after, f)
    if f.asset_id is not None:
        # A second subtree to intersect with: rare enough to resolve on its own.
        other = parse_id(f.asset_id, "filter.assetId")
        ctx = info.context
        mine = await ctx.stores.assets.device_ids_matching(
            ctx.tenant_id, asset_id=asset_id, metadata=_metadata(f))
        theirs = await ctx.stores.assets.device_ids_matching(
            ctx.tenant_id, asset_id=other, metadata=_metadata(f))
        rows, total = await ctx.stores.registry.page_devices(
            ctx.tenant_id, replace(q, ids=tuple(sorted(set(mine) & set(theirs)))))
        return device_connection(rows, total, q, after)
    metadata = json.dumps(f.metadata, sort_keys=True) if f.metadata is not None else None
    rows, total = await info.context.loaders.asset_devices(q, metadata).load(asset_id)
    return device_connection(rows, total, q, after)
