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
import math
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from gateway.errors import BadUserInput, LimitExceeded
from gateway.stores import Stores
from gateway.stores.pages import Order
from gateway.stores.predicates import (
    All,
    AnyOf,
    Cmp,
    JsonCmp,
    Not,
    Pred,
    Subtree,
    asset_side_leaves,
    walk,
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


@strawberry.input(description="A condition on a time; every part given must hold. `never: "
                  "true` matches a time that is not set (a device never seen), `never: false` "
                  "one that is.")
class TimeComparison:
    lt: datetime | None = None
    lte: datetime | None = None
    gt: datetime | None = None
    gte: datetime | None = None
    never: bool | None = None


@strawberry.input(description="A condition on Device.metadata at a JSON path (keys from the "
                  "top): `eq` any JSON value (containment, indexed); `gt`/`gte`/`lt`/`lte` a "
                  "number; `timeGt`/`timeGte`/`timeLt`/`timeLte` a time in a string with an "
                  "offset; `exists`. Values of another JSON type at the path never match a "
                  "range. Every part given must hold.")
class MetadataComparison:
    path: list[str]
    eq: JSON | None = strawberry.UNSET
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    time_gt: datetime | None = None
    time_gte: datetime | None = None
    time_lt: datetime | None = None
    time_lte: datetime | None = None
    exists: bool | None = None


@strawberry.input(description="Every field given must hold (and `and`, `or`, `not` nest "
                  "filters). Registry conditions and asset DB conditions (assetId, metadata) "
                  "mix freely; see docs/connections.md for how they are joined.")
class DeviceFilter:
    status: list[DeviceStatus] | None = strawberry.field(
        default=None, description="Status is one of these.")
    types: list[str] | None = strawberry.field(default=None, description="Type is one of these.")
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
    status_not_in: list[DeviceStatus] | None = strawberry.field(
        default=None, description="Status is none of these.")
    types_not_in: list[str] | None = strawberry.field(
        default=None, description="Type is none of these.")
    name_prefix: str | None = strawberry.field(
        default=None, description="Name starts with this, case-insensitively.")
    last_seen_at: TimeComparison | None = None
    created_at: TimeComparison | None = None
    metadata_path: list[MetadataComparison] | None = strawberry.field(
        default=None, description="Conditions at JSON paths of Device.metadata (all hold).")
    and_: list[DeviceFilter] | None = strawberry.field(
        name="and", default=None, description="All of these hold.")
    or_: list[DeviceFilter] | None = strawberry.field(
        name="or", default=None, description="At least one of these holds.")
    not_: DeviceFilter | None = strawberry.field(
        name="not", default=None, description="This does not hold.")


MAX_FILTER_CONDITIONS = 64
MAX_PATH_KEYS = 16
_TIME_OPS = ("lt", "lte", "gt", "gte")


def device_order(order_by: DeviceOrder | None) -> Order:
    if order_by is None:
        return Order("created_at")
    return Order(order_by.field.value, order_by.direction is OrderDirection.DESC)


def device_predicate(f: DeviceFilter | None, path: str = "filter") -> Pred | None:
    """The filter as a predicate tree; LIMIT_EXCEEDED past MAX_FILTER_CONDITIONS."""
    if f is None:
        return None
    pred = _filter(f, path)
    check_filter_size(pred, path)
    return pred


def check_filter_size(pred: Pred, path: str) -> None:
    leaves = [p for p in walk(pred) if not isinstance(p, All | AnyOf | Not)]
    if len(leaves) > MAX_FILTER_CONDITIONS:
        raise LimitExceeded(
            f"{path} has more than {MAX_FILTER_CONDITIONS} conditions",
            limit="filterConditions", maximum=MAX_FILTER_CONDITIONS, argument=path)


def _filter(f: DeviceFilter, path: str) -> Pred:
    parts: list[Pred] = []
    if f.status is not None:
        parts.append(Cmp("status", "in", tuple(s.value for s in f.status)))
    if f.status_not_in is not None:
        parts.append(Cmp("status", "not_in", tuple(s.value for s in f.status_not_in)))
    if f.types is not None:
        parts.append(Cmp("type", "in", tuple(f.types)))
    if f.types_not_in is not None:
        parts.append(Cmp("type", "not_in", tuple(f.types_not_in)))
    if f.labels is not None:
        parts.append(Cmp("labels", "contains_all", tuple(f.labels)))
    if f.search is not None:
        pattern = like_pattern(f.search)
        parts.append(AnyOf((Cmp("name", "ilike", pattern), Cmp("serial", "ilike", pattern))))
    if f.name_prefix is not None:
        parts.append(Cmp("name_lower", "like", prefix_pattern(f.name_prefix.lower())))
    for column, comparison in (("last_seen_at", f.last_seen_at), ("created_at", f.created_at)):
        if comparison is not None:
            parts.extend(time_conditions(column, comparison))
    if f.asset_id is not None:
        parts.append(Subtree(parse_id(f.asset_id, f"{path}.assetId")))
    if f.metadata is not None:
        if not isinstance(f.metadata, dict):
            raise BadUserInput(f"{path}.metadata must be a JSON object",
                               argument=f"{path}.metadata")
        parts.append(JsonCmp("metadata", (), "eq", _json_text(f.metadata)))
    for n, at_path in enumerate(f.metadata_path or ()):
        parts.extend(_metadata_path(at_path, f"{path}.metadataPath[{n}]"))
    for n, sub in enumerate(f.and_ or ()):
        parts.append(_filter(sub, f"{path}.and[{n}]"))
    if f.or_ is not None:
        parts.append(AnyOf(tuple(_filter(sub, f"{path}.or[{n}]")
                                 for n, sub in enumerate(f.or_))))
    if f.not_ is not None:
        parts.append(Not(_filter(f.not_, f"{path}.not")))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def time_conditions(column: str, c: TimeComparison) -> list[Pred]:
    parts: list[Pred] = [Cmp(column, op, getattr(c, op)) for op in _TIME_OPS
                         if getattr(c, op) is not None]
    if c.never is not None:
        parts.append(Cmp(column, "is_null", c.never))
    return parts


def _metadata_path(c: MetadataComparison, where: str) -> list[Pred]:
    keys = tuple(c.path)
    if len(keys) > MAX_PATH_KEYS or any(not k for k in keys):
        raise BadUserInput(f"{where}.path takes 1 to {MAX_PATH_KEYS} non-empty keys",
                           argument=f"{where}.path")
    parts: list[Pred] = []
    if c.eq is not strawberry.UNSET:
        parts.append(JsonCmp("metadata", keys, "eq", _json_text(c.eq)))
    ranges: list[tuple[str, Any]] = [(op, getattr(c, op)) for op in _TIME_OPS]
    ranges += [(op, getattr(c, "time_" + op)) for op in _TIME_OPS]
    for op, value in ranges:
        if value is None:
            continue
        if isinstance(value, float | int) and not math.isfinite(value):
            raise BadUserInput(f"{where}.{op} must be finite", argument=f"{where}.{op}")
        number = Decimal(repr(value)) if isinstance(value, float | int) else value
        parts.append(JsonCmp("metadata", keys, op, number))
    if c.exists is not None:
        # "Not there" as the negation of "there": a device without a profile has no key.
        there = JsonCmp("metadata", keys, "exists", True)
        parts.append(there if c.exists else Not(there))
    if not parts:
        raise BadUserInput(f"{where} compares nothing: give eq, a range or exists",
                           argument=where)
    if not keys and len(parts) > (c.eq is not strawberry.UNSET):
        raise BadUserInput(f"{where}.path must name a key for a range or exists",
                           argument=f"{where}.path")
    return parts


def _json_text(value: object) -> str:
    # json, not orjson: integers beyond 64 bits must reach the store's check.
    return json.dumps(value, sort_keys=True)


def prefix_pattern(text: str) -> str:
    """A LIKE pattern for "starts with", LIKE's wildcards in ``text`` taken literally."""
    return like_pattern(text)[1:]


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
