"""Asset types (Asset DB): the site > line > machine tree and its devices."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from gateway.context import Info
from gateway.errors import BadUserInput
from gateway.stores.assets import ASSET_SORT_KEYS, AssetQuery
from gateway.stores.pages import CREATED_ASC, Order, SortKey
from gateway.stores.predicates import All, AnyOf, Cmp, JsonCmp, Not, Pred
from gateway.stores.registry import like_pattern
from gateway.stores.telemetry import EMPTY_SERIES
from resolvers.device_query import (
    TimeComparison,
    check_filter_size,
    prefix_pattern,
    time_conditions,
)
from resolvers.devices import DeviceConnection, DeviceFilter, DeviceOrder, resolve_asset_devices
from resolvers.execution.batch_fields import batched, load_settled, one
from resolvers.node import Node
from resolvers.ordering import OrderDirection
from resolvers.pagination import (
    FirstArg,
    LastArg,
    PageInfo,
    RowCursor,
    page_info_of,
    page_window,
)
from resolvers.scalars import Interval, parse_id
from resolvers.telemetry import (
    Aggregate,
    SeriesStats,
    TelemetryPoint,
    series_points,
    series_query,
    series_stats,
)

_new = object.__new__


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
class Asset(Node):
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
        # Attributes set at once, without the dataclass __init__ (as Device.from_row).
        asset = _new(cls)
        asset.__dict__ = {
            "id": str(row["id"]), "name": row["name"], "kind": row["kind"],
            "attributes": row["attributes"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "uuid": row["id"], "parent_id": row["parent_id"],
            "path": list(row["path"]),
        }
        return asset

    @classmethod
    def from_rows(cls, rows: list[Any]) -> list[Any]:
        """Each row as an Asset, a miss as None and an exception kept. A loader hands the
        same row to every device installed on one machine (or every child of one parent),
        so each row's Asset is built once and shared: the objects are read-only."""
        built: dict[int, Asset] = {}
        values: list[Any] = []
        for row in rows:
            if isinstance(row, Exception) or not row:
                values.append(row if isinstance(row, Exception) else None)
                continue
            asset = built.get(id(row))
            if asset is None:
                asset = built[id(row)] = cls.from_row(row)
            values.append(asset)
        return values

    @strawberry.field
    async def parent(self, info: Info) -> Asset | None:
        return one(await asset_parents([self], info))  # type: ignore[no-any-return]

    @strawberry.field
    async def children(self, info: Info) -> list[Asset]:
        return one(await asset_children([self], info))  # type: ignore[no-any-return]

    @strawberry.field(description="From the root down to the parent.")
    async def ancestors(self, info: Info) -> list[Asset]:
        rows = await info.context.loaders.asset.load_many(self.path[:-1])
        return [Asset.from_row(r) for r in rows if r is not None]

    @strawberry.field(description="Devices installed on this asset or any asset below it.")
    async def devices(
        self, info: Info, first: FirstArg = None, after: str | None = None,
        filter: DeviceFilter | None = None, last: LastArg = None,
        before: str | None = None, order_by: DeviceOrder | None = None,
    ) -> DeviceConnection | None:
        return await resolve_asset_devices(info, self.uuid, first, after, filter, last,
                                           before, order_by)

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


# Asset fields for a whole level of assets (resolvers.execution.batch_fields); the fields
# above resolve one asset through the same functions.

@batched("Asset", "parent")
async def asset_parents(assets: list[Asset], info: Info) -> list[Any]:
    # A level holds each asset once per device installed on it (Device.asset shares one
    # object per asset): each distinct asset's parent is loaded and built once.
    distinct = {id(asset): asset for asset in assets}
    wanted = dict.fromkeys(a.parent_id for a in distinct.values() if a.parent_id is not None)
    rows = await load_settled(info.context.loaders.asset, wanted)
    parents = dict(zip(wanted, Asset.from_rows(rows), strict=True))
    of = {key: None if a.parent_id is None else parents[a.parent_id]
          for key, a in distinct.items()}
    return [of[id(asset)] for asset in assets]


@batched("Asset", "children")
async def asset_children(assets: list[Asset], info: Info) -> list[Any]:
    loader = info.context.loaders.children
    found = await load_settled(loader, [a.uuid for a in assets])
    return [rows if isinstance(rows, Exception) else [Asset.from_row(r) for r in rows]
            for rows in found]


@strawberry.type
class AssetEdge:
    cursor: str
    node: Asset


class _PageAssetEdge(AssetEdge):
    """An AssetEdge of an asset-store page: its cursor is encoded from the row when read."""

    cursor = RowCursor()  # type: ignore[assignment]

    def __init__(self, row: Any, order: Order, key: SortKey) -> None:  # noqa: D107
        # The dataclass __init__ is not called: it would need the cursor now.
        self.node = Asset.from_row(row)
        self.row = row
        self.order = order
        self.key = key


@strawberry.type
class AssetConnection:
    edges: list[AssetEdge]
    page_info: PageInfo
    total_count: int


@strawberry.enum(description="What assets can be ordered by.")
class AssetOrderField(Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    KIND = "kind"


@strawberry.input(description="Assets order: one field, then the id (unique tiebreak) in "
                  "the same direction.")
class AssetOrder:
    field: AssetOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Every field given must hold (and `and`, `or`, `not` nest "
                  "filters).")
class AssetFilter:
    kind: str | None = None
    parent_id: strawberry.ID | None = None
    roots: bool | None = strawberry.field(default=None, description="Only assets without a parent.")
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive match on the name.")
    attributes: JSON | None = strawberry.field(
        default=None, description="JSONB containment on Asset.attributes."
    )
    kinds: list[str] | None = strawberry.field(default=None, description="Kind is one of these.")
    kinds_not_in: list[str] | None = strawberry.field(
        default=None, description="Kind is none of these.")
    name_prefix: str | None = strawberry.field(
        default=None, description="Name starts with this, case-insensitively.")
    created_at: TimeComparison | None = None
    and_: list[AssetFilter] | None = strawberry.field(
        name="and", default=None, description="All of these hold.")
    or_: list[AssetFilter] | None = strawberry.field(
        name="or", default=None, description="At least one of these holds.")
    not_: AssetFilter | None = strawberry.field(
        name="not", default=None, description="This does not hold.")


def asset_predicate(f: AssetFilter | None, path: str = "filter") -> Pred | None:
    """The filter as a predicate tree; LIMIT_EXCEEDED past MAX_FILTER_CONDITIONS."""
    if f is None:
        return None
    pred = _asset_filter(f, path)
    check_filter_size(pred, path)
    return pred


def _asset_filter(f: AssetFilter, path: str) -> Pred:
    parts: list[Pred] = []
    if f.kind is not None:
        parts.append(Cmp("kind", "eq", f.kind))
    if f.kinds is not None:
        parts.append(Cmp("kind", "in", tuple(f.kinds)))
    if f.kinds_not_in is not None:
        parts.append(Cmp("kind", "not_in", tuple(f.kinds_not_in)))
    if f.parent_id is not None:
        parts.append(Cmp("parent_id", "eq", parse_id(f.parent_id, f"{path}.parentId")))
    if f.roots is not None:
        parts.append(Cmp("parent_id", "is_null", f.roots))
    if f.search is not None:
        parts.append(Cmp("name", "ilike", like_pattern(f.search)))
    if f.name_prefix is not None:
        parts.append(Cmp("name_lower", "like", prefix_pattern(f.name_prefix.lower())))
    if f.created_at is not None:
        parts.extend(time_conditions("created_at", f.created_at))
    if f.attributes is not None:
        if not isinstance(f.attributes, dict):
            raise BadUserInput(f"{path}.attributes must be a JSON object",
                               argument=f"{path}.attributes")
        parts.append(JsonCmp("attributes", (), "eq",
                             json.dumps(f.attributes, sort_keys=True)))
    for n, sub in enumerate(f.and_ or ()):
        parts.append(_asset_filter(sub, f"{path}.and[{n}]"))
    if f.or_ is not None:
        parts.append(AnyOf(tuple(_asset_filter(sub, f"{path}.or[{n}]")
                                 for n, sub in enumerate(f.or_))))
    if f.not_ is not None:
        parts.append(Not(_asset_filter(f.not_, f"{path}.not")))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def asset_query(
    max_page_size: int, first: int | None, after: str | None, last: int | None,
    before: str | None, order_by: AssetOrder | None, filter: AssetFilter | None,
) -> AssetQuery:
    """An assets connection's arguments as an asset-store query (plain: the planned
    executor parses with it too)."""
    order = (Order(order_by.field.value, order_by.direction is OrderDirection.DESC)
             if order_by is not None else CREATED_ASC)
    window = page_window(first, after, last, before, order, ASSET_SORT_KEYS[order.key],
                         max_page_size)
    return AssetQuery(window=window, order=order, where=asset_predicate(filter))


async def resolve_assets(
    info: Info, first: int | None, after: str | None, filter: AssetFilter | None,
    last: int | None = None, before: str | None = None, order_by: AssetOrder | None = None,
) -> AssetConnection:
    ctx = info.context
    q = asset_query(ctx.settings.max_page_size, first, after, last, before, order_by, filter)
    page = await ctx.stores.assets.page_assets(ctx.tenant_id, q)
    order = q.order
    key = ASSET_SORT_KEYS[order.key]
    edges: list[AssetEdge] = [_PageAssetEdge(r, order, key) for r in page.rows]
    return AssetConnection(edges=edges, total_count=page.total,
                           page_info=page_info_of(page, order, key))
