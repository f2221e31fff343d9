"""GraphQL arguments of a devices connection -> ``DeviceQuery``: plain functions, so the
Strawberry resolvers and the planned executor (resolvers/execution/) parse the same way.

Cross-store filters: status, type, labels, names and times live in the registry;
``assetId`` and ``metadata`` conditions live in the asset DB (the device profile). A
filter is parsed into one predicate tree whose asset-side leaves are answered first, all
of them in one asset-store round trip, each becoming the set of device ids it matches;
the registry then evaluates the whole tree (and/or/not included) with those sets as
``id = ANY($n)`` parameters. So any mix of conditions is exact, at the price of shipping
the ids an asset-side leaf matches: cheap for selective conditions, a large parameter
for one that matches most of a big fleet.
"""

from __future__ import annotations

import json
from dataclasses import replace
from enum import Enum
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from gateway.errors import BadUserInput
from gateway.stores import Stores
from gateway.stores.pages import Order
from gateway.stores.predicates import (
    All,
    AnyOf,
    Cmp,
    JsonCmp,
    Pred,
    Subtree,
    asset_side_leaves,
    with_matches,
)
from gateway.stores.registry import DEVICE_SORT_KEYS, DeviceQuery, like_pattern
from resolvers.device_status import DeviceStatus
from resolvers.ordering import OrderDirection
from resolvers.pagination import page_window
from resolvers.scalars import parse_id


@strawberry.enum(description="What devices can be ordered by.")
class DeviceOrderField(Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    LAST_SEEN_AT = "last_seen_at"
    STATUS = "status"
    TYPE = "type"


@strawberry.input(description="Devices order: one field, then the id (unique tiebreak) in "
                  "the same direction. LAST_SEEN_AT puts never-seen devices first ascending, "
                  "last descending; STATUS and TYPE order alphabetically.")
class DeviceOrder:
    field: DeviceOrderField
    direction: OrderDirection = OrderDirection.ASC


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


def device_order(order_by: DeviceOrder | None) -> Order:
    if order_by is None:
        return Order("created_at")
    return Order(order_by.field.value, order_by.direction is OrderDirection.DESC)


def device_predicate(f: DeviceFilter | None, path: str = "filter") -> Pred | None:
    """The filter as a predicate tree (all its fields must hold)."""
    if f is None:
        return None
    parts: list[Pred] = []
    if f.status is not None:
        parts.append(Cmp("status", "in", tuple(s.value for s in f.status)))
    if f.types is not None:
        parts.append(Cmp("type", "in", tuple(f.types)))
    if f.labels is not None:
        parts.append(Cmp("labels", "contains_all", tuple(f.labels)))
    if f.search is not None:
        pattern = like_pattern(f.search)
        parts.append(AnyOf((Cmp("name", "ilike", pattern), Cmp("serial", "ilike", pattern))))
    if f.asset_id is not None:
        parts.append(Subtree(parse_id(f.asset_id, f"{path}.assetId")))
    if f.metadata is not None:
        if not isinstance(f.metadata, dict):
            raise BadUserInput(f"{path}.metadata must be a JSON object",
                               argument=f"{path}.metadata")
        parts.append(JsonCmp("metadata", (), "eq", _json_text(f.metadata)))
    return All(tuple(parts)) if parts else None


def _json_text(value: object) -> str:
    # json, not orjson: integers beyond 64 bits must reach the store's check.
    return json.dumps(value, sort_keys=True)


def device_query(
    max_page_size: int, first: int | None, after: str | None, last: int | None,
    before: str | None, order_by: DeviceOrder | None, filter: DeviceFilter | None,
) -> DeviceQuery:
    """A devices connection's arguments as a registry query; asset-side conditions stay
    unresolved (``resolve_asset_side``)."""
    order = device_order(order_by)
    window = page_window(first, after, last, before, order, DEVICE_SORT_KEYS[order.key],
                         max_page_size)
    return DeviceQuery(window=window, order=order, where=device_predicate(filter))


async def resolve_asset_side(stores: Stores, tenant_id: UUID, q: DeviceQuery) -> DeviceQuery:
    """``q`` ready for the registry: one asset-store round trip when it has asset-side
    conditions, none otherwise."""
    leaves = asset_side_leaves(q.where)
    if not leaves:
        return q
    _, matched = await stores.assets.device_ids_for(tenant_id, (), leaves)
    return replace(q, where=with_matches(q.where, leaves, matched))
