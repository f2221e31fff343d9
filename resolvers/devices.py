"""Device types (Device Registry) and the devices connection shared by Query and Asset."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from gateway.context import Info
from gateway.errors import BadUserInput, NotImplementedYet
from gateway.stores.registry import DeviceQuery
from resolvers.pagination import PageInfo, check_page_size, decode_cursor, encode_cursor, page_info
from resolvers.scalars import Interval, parse_id
from resolvers.shadows import Shadow
from resolvers.telemetry import (
    Aggregate,
    Forecast,
    Reading,
    TelemetrySeries,
    series_query,
    to_series,
)

if TYPE_CHECKING:
    from resolvers.assets import Asset

DEFAULT_FORECAST_WINDOW = Interval(timedelta(hours=24))
AssetRef = Annotated["Asset", strawberry.lazy("resolvers.assets")]


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

    @strawberry.field(description="The asset this device is installed on (Asset DB).")
    async def asset(self, info: Info) -> AssetRef | None:
        from resolvers.assets import Asset

        profile = await info.context.loaders.profile.load(self.uuid)
        if profile is None or profile["asset_id"] is None:
            return None
        row = await info.context.loaders.asset.load(profile["asset_id"])
        return Asset.from_row(row) if row else None

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
    ) -> TelemetrySeries | None:
        q = series_query(info, metric, from_, to, bucket, aggregate, limit)
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
        raise NotImplementedYet("Device.forecast")

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


async def resolve_devices(
    info: Info, first: int | None, after: str | None, filter: DeviceFilter | None,
    within_asset: UUID | None = None,
) -> DeviceConnection:
    """A page of the caller's devices; asset-side filters are resolved in the asset store
    first and narrow the registry query to the matching ids."""
    ctx = info.context
    size = check_page_size(first, ctx.settings.max_page_size)
    cursor = decode_cursor(after)
    f = filter or DeviceFilter()
    if f.metadata is not None and not isinstance(f.metadata, dict):
        raise BadUserInput("filter.metadata must be a JSON object", argument="filter.metadata")
    ids: list[UUID] | None = None
    asset_ids: list[UUID] = [within_asset] if within_asset is not None else []
    if f.asset_id is not None:
        asset_ids.append(parse_id(f.asset_id, "filter.assetId"))
    if asset_ids or f.metadata is not None:
        matches: set[UUID] | None = None
        scopes: list[UUID | None] = list(asset_ids) or [None]
        for asset_id in scopes:
            found = set(await ctx.stores.assets.device_ids_matching(
                ctx.tenant_id, asset_id=asset_id, metadata=f.metadata))
            matches = found if matches is None else matches & found
        ids = sorted(matches or ())
    rows, total = await ctx.stores.registry.page_devices(ctx.tenant_id, DeviceQuery(
        first=size, after=cursor,
        status=[s.value for s in f.status] if f.status is not None else None,
        types=f.types, labels=f.labels, search=f.search, ids=ids,
    ))
    edges = [
        DeviceEdge(cursor=encode_cursor(r["created_at"], r["id"]), node=Device.from_row(r))
        for r in rows[:size]
    ]
    return DeviceConnection(
        edges=edges, total_count=total,
        page_info=page_info([e.cursor for e in edges], len(rows) > size, after),
    )
