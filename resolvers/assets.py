"""Asset types (Asset DB): the site > line > machine tree and its devices."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from gateway.context import Info
from gateway.errors import BadUserInput
from gateway.stores.assets import AssetQuery
from gateway.stores.telemetry import EMPTY_SERIES
from resolvers.devices import DeviceConnection, DeviceFilter, resolve_asset_devices
from resolvers.pagination import PageInfo, check_page_size, decode_cursor, encode_cursor, page_info
from resolvers.scalars import Interval, parse_id
from resolvers.telemetry import (
    Aggregate,
    SeriesStats,
    TelemetryPoint,
    series_points,
    series_query,
    series_stats,
)


@strawberry.type
class RollupSeries:
    asset_id: strawberry.ID
    metric: str
    from_: datetime = strawberry.field(name="from")
    to: datetime
    bucket: Interval
    aggregate: Aggregate
    device_count: int = strawberry.field(
        description="Devices that contributed at least one reading."
    )
    points: list[TelemetryPoint]
    stats: SeriesStats


@strawberry.type
class Asset:
    id: strawberry.ID
    name: str
    kind: str
    attributes: JSON
    created_at: datetime
    updated_at: datetime
    uuid: strawberry.Private[UUID]
    parent_id: strawberry.Private[UUID | None]
    path: strawberry.Private[list[UUID]]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Asset:
        return cls(
            id=strawberry.ID(str(row["id"])), name=row["name"], kind=row["kind"],
            attributes=row["attributes"], created_at=row["created_at"],
            updated_at=row["updated_at"], uuid=row["id"], parent_id=row["parent_id"],
            path=list(row["path"]),
        )

    @strawberry.field
    async def parent(self, info: Info) -> Asset | None:
        if self.parent_id is None:
            return None
        row = await info.context.loaders.asset.load(self.parent_id)
        return Asset.from_row(row) if row else None

    @strawberry.field
    async def children(self, info: Info) -> list[Asset]:
        rows = await info.context.loaders.children.load(self.uuid)
        return [Asset.from_row(r) for r in rows]

    @strawberry.field(description="From the root down to the parent.")
    async def ancestors(self, info: Info) -> list[Asset]:
        rows = await info.context.loaders.asset.load_many(self.path[:-1])
        return [Asset.from_row(r) for r in rows if r is not None]

    @strawberry.field(description="Devices installed on this asset or any asset below it.")
    async def devices(
        self, info: Info, first: int | None = 50, after: str | None = None,
        filter: DeviceFilter | None = None,
    ) -> DeviceConnection | None:
        return await resolve_asset_devices(info, self.uuid, first, after, filter)

    @strawberry.field(
        description="One metric aggregated across every device installed on this asset or "
        "below it."
    )
    async def telemetry(
        self, info: Info, metric: str, bucket: Interval,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None, aggregate: Aggregate | None = Aggregate.AVG,
    ) -> RollupSeries | None:
        q = series_query(info, metric, from_, to, bucket, aggregate, None)
        found = await info.context.loaders.rollup(q).load(self.uuid)
        rows, devices = found if found is not None else (EMPTY_SERIES, 0)
        assert q.bucket is not None
        return RollupSeries(
            asset_id=self.id, metric=q.metric, from_=q.start, to=q.end,
            bucket=Interval(q.bucket), aggregate=Aggregate(q.aggregate), device_count=devices,
            points=series_points(q, rows), stats=series_stats(rows),
        )


@strawberry.type
class AssetEdge:
    cursor: str
    node: Asset


@strawberry.type
class AssetConnection:
    edges: list[AssetEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input
class AssetFilter:
    kind: str | None = None
    parent_id: strawberry.ID | None = None
    roots: bool | None = strawberry.field(default=None, description="Only assets without a parent.")
    search: str | None = None
    attributes: JSON | None = strawberry.field(
        default=None, description="JSONB containment on Asset.attributes."
    )


async def resolve_assets(
    info: Info, first: int | None, after: str | None, filter: AssetFilter | None
) -> AssetConnection:
    ctx = info.context
    size = check_page_size(first, ctx.settings.max_page_size)
    f = filter or AssetFilter()
    if f.attributes is not None and not isinstance(f.attributes, dict):
        raise BadUserInput(
            "filter.attributes must be a JSON object", argument="filter.attributes"
        )
    rows, total = await ctx.stores.assets.page_assets(ctx.tenant_id, AssetQuery(
        first=size, after=decode_cursor(after), kind=f.kind,
        parent_id=parse_id(f.parent_id, "filter.parentId") if f.parent_id else None,
        roots=f.roots, search=f.search, attributes=f.attributes,
    ))
    edges = [
        AssetEdge(cursor=encode_cursor(r["created_at"], r["id"]), node=Asset.from_row(r))
        for r in rows[:size]
    ]
    return AssetConnection(
        edges=edges, total_count=total,
        page_info=page_info([e.cursor for e in edges], len(rows) > size, after),
    )
