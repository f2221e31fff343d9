"""Query.fleetOverview: device counts by status, type and asset subtree for any filter.

One asset DB round trip (the children of the chosen asset with every device below each,
and the filter's asset-side conditions) and one registry round trip (every count in one
statement), whatever the fleet's size. The subtree counts join the two stores by shipping
the (child, device) pairs of the asset DB to the registry as parameters: their size grows
with the devices installed below the chosen asset.
"""

from __future__ import annotations

import strawberry

from gateway.context import Info
from gateway.stores.predicates import asset_side_leaves, with_matches
from resolvers.assets import Asset
from resolvers.device_query import DeviceFilter, device_predicate
from resolvers.device_status import DeviceStatus
from resolvers.scalars import parse_id


@strawberry.type
class StatusCount:
    status: DeviceStatus
    count: int


@strawberry.type
class TypeCount:
    type: str
    count: int


@strawberry.type
class AssetCount:
    asset: Asset
    count: int = strawberry.field(
        description="Matching devices installed on the asset or any asset below it.")


@strawberry.type(description="Counts of the devices matching a filter.")
class FleetOverview:
    total: int
    by_status: list[StatusCount] = strawberry.field(
        description="Every status, zero counts included, in lifecycle order.")
    by_type: list[TypeCount] = strawberry.field(
        description="Every type with at least one matching device, by name.")
    by_asset: list[AssetCount] = strawberry.field(
        description="Each child of `assetParentId` (each root asset when omitted), by name.")


async def resolve_fleet_overview(
    info: Info, filter: DeviceFilter | None, asset_parent_id: strawberry.ID | None
) -> FleetOverview:
    ctx = info.context
    where = device_predicate(filter)
    parent = parse_id(asset_parent_id, "assetParentId") if asset_parent_id else None
    leaves = asset_side_leaves(where)
    children, pairs, matched = await ctx.stores.assets.overview(ctx.tenant_id, parent, leaves)
    where = with_matches(where, leaves, matched)
    counts = await ctx.stores.registry.count_devices(ctx.tenant_id, where, pairs)
    for row in children:
        ctx.loaders.asset.prime(row["id"], row)
    children.sort(key=lambda r: (r["name"], r["id"]))
    return FleetOverview(
        total=counts.total,
        by_status=[StatusCount(status=s, count=counts.by_status.get(s.value, 0))
                   for s in DeviceStatus],
        by_type=[TypeCount(type=t, count=n) for t, n in sorted(counts.by_type.items())],
        by_asset=[AssetCount(asset=Asset.from_row(r), count=counts.by_root.get(r["id"], 0))
                  for r in children],
    )


__all__ = ["FleetOverview", "resolve_fleet_overview"]
