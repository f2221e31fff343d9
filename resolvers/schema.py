"""The root Query and the assembled schema."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any

import strawberry
from graphql import GraphQLObjectType
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ValidationCache,
)
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig

from gateway.context import Info
from gateway.errors import BadUserInput, NotFound
from gateway.settings import Settings
from resolvers.api_keys import ApiKeyQuery
from resolvers.assets import Asset, AssetConnection, AssetFilter, AssetOrder, resolve_assets
from resolvers.devices import Device, DeviceConnection, DeviceFilter, DeviceOrder, resolve_devices
from resolvers.execution import fast_paths, reading_variables
from resolvers.execution.cost import CostLimits, QueryCost
from resolvers.execution.extensions import ErrorCodes, RequestLog, StoreCallTrace
from resolvers.execution.flat_lists import FlatListExecutionContext
from resolvers.execution.limits import OverlapBudget, aliases_rule, depth_rule
from resolvers.execution.operation_name import OperationNameRequired
from resolvers.execution.planned_writes import PlannedWritesExecutionContext
from resolvers.execution.prepared import PreparedCapture, PreparedQueries
from resolvers.live import GatewaySchema, SubscriptionLimits
from resolvers.mutations import Mutation
from resolvers.node import Node
from resolvers.node_lookup import resolve_nodes
from resolvers.overview import FleetOverview, resolve_fleet_overview
from resolvers.pagination import FirstArg, LastArg
from resolvers.permissions import TENANT_READERS, OwnDevice, allow
from resolvers.read_consistency import PrimaryForMutations
from resolvers.scalars import DATETIME_SCALAR, INTERVAL_SCALAR, JSON_SCALAR, Interval, parse_id
from resolvers.shadows import Shadow
from resolvers.subscriptions import Subscription
from resolvers.telemetry import Aggregate, TelemetrySeries, series_query, to_series

MAX_SERIES_DEVICES = 500


@strawberry.type
class Query(ApiKeyQuery):
    @strawberry.field(extensions=[allow(*TENANT_READERS, device=OwnDevice("id"))])
    async def device(self, info: Info, id: strawberry.ID) -> Device | None:
        # NOT_FOUND, as shadow(deviceId:) answers; another tenant's id reads the same.
        row = await info.context.loaders.device.load(parse_id(id))
        if row is None:
            raise NotFound(f"No device {id}", argument="id")
        return Device.from_row(row)

    @strawberry.field(extensions=[allow(*TENANT_READERS)])
    async def devices(
        self, info: Info, first: FirstArg = None, after: str | None = None,
        filter: DeviceFilter | None = None, last: LastArg = None,
        before: str | None = None, order_by: DeviceOrder | None = None,
    ) -> DeviceConnection | None:
        return await resolve_devices(info, first, after, filter, last, before, order_by)

    @strawberry.field(
        description="Counts of the devices matching `filter`: in total, by status, by type "
        "and by asset subtree (the children of `assetParentId`, or the root assets).",
        extensions=[allow(*TENANT_READERS)])
    async def fleet_overview(
        self, info: Info, filter: DeviceFilter | None = None,
        asset_parent_id: strawberry.ID | None = None,
    ) -> FleetOverview | None:
        return await resolve_fleet_overview(info, filter, asset_parent_id)

    @strawberry.field(description="The Device or Asset with this id; null when the tenant has "
                      "none.", extensions=[allow(*TENANT_READERS)])
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return (await resolve_nodes(info, [id], "id"))[0]

    @strawberry.field(description="The Device or Asset with each id, in order (null for an "
                      "unknown id); at most 500.", extensions=[allow(*TENANT_READERS)])
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        return await resolve_nodes(info, ids, "ids")

    @strawberry.field(extensions=[allow(*TENANT_READERS)])
    async def asset(self, info: Info, id: strawberry.ID) -> Asset | None:
        row = await info.context.loaders.asset.load(parse_id(id))
        if row is None:
            raise NotFound(f"No asset {id}", argument="id")
        return Asset.from_row(row)

    @strawberry.field(extensions=[allow(*TENANT_READERS)])
    async def assets(
        self, info: Info, first: FirstArg = None, after: str | None = None,
        filter: AssetFilter | None = None, last: LastArg = None,
        before: str | None = None, order_by: AssetOrder | None = None,
    ) -> AssetConnection | None:
        return await resolve_assets(info, first, after, filter, last, before, order_by)

    @strawberry.field(extensions=[allow(*TENANT_READERS, device=OwnDevice("device_id"))])
    async def shadow(self, info: Info, device_id: strawberry.ID) -> Shadow | None:
        device_uuid = parse_id(device_id, "deviceId")
        # The registry is the authority on which devices the tenant has.
        device = await info.context.loaders.device.load(device_uuid)
        if device is None:
            raise NotFound(f"No device {device_id}", argument="deviceId")
        if device["status"] == "DECOMMISSIONED":
            return None
        doc = await info.context.loaders.shadow.load(device_uuid)
        return Shadow.from_doc(doc) if doc else None

    @strawberry.field(
        description="One series per device for the same metric and range.",
        extensions=[allow(*TENANT_READERS, device=OwnDevice("device_ids"))],
    )
    async def telemetry(
        self, info: Info, device_ids: list[strawberry.ID], metric: str,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None, bucket: Interval | None = None,
        aggregate: Aggregate | None = Aggregate.AVG,
    ) -> list[TelemetrySeries] | None:
        if len(device_ids) > MAX_SERIES_DEVICES:
            raise BadUserInput(f"At most {MAX_SERIES_DEVICES} deviceIds per request")
        ids = list(dict.fromkeys(parse_id(d, "deviceIds") for d in device_ids))
        q = series_query(info, metric, from_, to, bucket, aggregate, None)
        devices = await info.context.loaders.device.load_many(ids)
        missing = [str(i) for i, row in zip(ids, devices, strict=True) if row is None]
        if missing:
            raise NotFound(f"No device {', '.join(missing)}", argument="deviceIds")
        rows = await info.context.loaders.series(q).load_many(ids)
        return [to_series(i, q, r) for i, r in zip(ids, rows, strict=True)]


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with the request limits of ``settings`` (defaults when None)."""
    settings = settings or Settings()
    cost_limits = CostLimits(max_cost=settings.max_cost, max_page_size=settings.max_page_size,
                             max_points=settings.max_points)
    extensions: list[Any] = [
        RequestLog, ErrorCodes, StoreCallTrace,
        # Dashboards send the same few documents over and over: validate each once
        # (validation measured 4-5 ms of a 100-device dashboard request; parsing < 1 ms).
        partial(ValidationCache, maxsize=512),
        # After ValidationCache, whose errors it replaces: several operations, none named.
        OperationNameRequired,
        # Strawberry's QueryDepthLimiter and MaxAliasesLimiter walk fragments exponentially
        # (resolvers/execution/limits.py); these rules give the same answers in one walk.
        partial(AddValidationRules, [depth_rule(settings.max_depth),
                                     aliases_rule(settings.max_aliases)]),
        OverlapBudget,
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        # After ValidationCache: refuses a valid document whose estimated cost (with its
        # variables) is over the maximum, before execution.
        partial(QueryCost, limits=cost_limits),
        # Mutations (and what follows them in a batch) read from the primary.
        PrimaryForMutations,
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    if settings.planned_execution:
        # Remembers a query once every check above passed (resolvers.execution.prepared).
        extensions.append(PreparedCapture)
    built = GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=(
            PlannedWritesExecutionContext if settings.planned_execution
            else FlatListExecutionContext),
        config=StrawberryConfig(
            scalar_map={Interval: INTERVAL_SCALAR, datetime: DATETIME_SCALAR,
                        JSON: JSON_SCALAR},
            disable_field_suggestions=settings.production,
        ),
    )
    # Device and Asset implement Node, for which Strawberry gives them an is_type_of that
    # graphql-core then calls on every Device and Asset it completes (and the planned
    # executor leaves such types to graphql-core). Node's resolve_type names the type from
    # the object's own class, so node/nodes resolve without it.
    for implementation in ("Device", "Asset"):
        object_type = built._schema.type_map[implementation]
        assert isinstance(object_type, GraphQLObjectType)
        object_type.is_type_of = None
    built.subscription_limits = SubscriptionLimits(
        max_tokens=settings.max_tokens, max_depth=settings.max_depth,
        max_aliases=settings.max_aliases, cost=cost_limits)
    fast_paths.install(built)
    built.prepared = PreparedQueries(built, cost_limits)
    if settings.planned_execution:
        reading_variables.install(built._schema)
    return built


schema = build_schema()
