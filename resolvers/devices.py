"""Device types (Device Registry) and the devices connection shared by Query and Asset."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types.lazy_type import LazyType

from gateway.context import Info
from gateway.errors import LimitExceeded
from gateway.loaders import capabilities_of
from gateway.stores.pages import Order, Page, SortKey
from gateway.stores.registry import DEVICE_SORT_KEYS, DeviceQuery
from gateway.writes import validate
from resolvers.device_query import (
    DeviceFilter,
    DeviceOrder,
    device_query,
    resolve_asset_side,
)
from resolvers.device_status import DeviceStatus
from resolvers.execution.batch_fields import batched, load_settled, one
from resolvers.lookahead import asks_for, names_under
from resolvers.node import Node
from resolvers.pagination import PageInfo, RowCursor, page_info_of
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
    unknown_metric_error,
)

if TYPE_CHECKING:
    from resolvers.assets import Asset

DEFAULT_FORECAST_WINDOW = Interval(timedelta(hours=24))
AssetRef = Annotated["Asset", strawberry.lazy("resolvers.assets")]
# Device and Asset refer to each other; resolvers.assets imports this module, so the Asset
# class is reached through strawberry's lazy type at run time, not by an import back.
_ASSET: LazyType[Any, Any] = LazyType("Asset", "resolvers.assets")


@cache
def _asset_class() -> type[Asset]:
    """The Asset class, resolved once: LazyType.resolve_type imports and compares module
    paths on every call (1.7% of a subset request's CPU in py-spy, one call per level)."""
    return _ASSET.resolve_type()  # type: ignore[no-any-return]

_new = object.__new__
_STATUS: dict[Any, DeviceStatus] = DeviceStatus._value2member_map_  # type: ignore[assignment]


@strawberry.type
class Capability:
    metric: str
    unit: str | None
    min: float | None
    max: float | None
    description: str | None


@strawberry.type
class Device(Node):
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
        # The instance's attributes set at once, without the dataclass __init__'s keyword
        # binding and the Enum call: ~2.5 us a device instead of ~10 (a page builds 100).
        device = _new(cls)
        status = row["status"]
        device.__dict__ = {
            "id": str(row["id"]), "serial": row["serial"], "name": row["name"],
            "type": row["type"], "status": _STATUS.get(status) or DeviceStatus(status),
            "firmware_version": row["firmware_version"], "labels": list(row["labels"]),
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "last_seen_at": row["last_seen_at"], "uuid": row["id"],
        }
        return device

    @classmethod
    def from_some_columns(cls, row: Mapping[str, Any], columns: Collection[str]) -> Device:
        """A device from a row of only ``columns`` (and the id and status, which the
        fields with resolvers read): the others' attributes are absent, so reading one
        fails loudly rather than answering null."""
        device = _new(cls)
        status = row["status"]
        values = {"id": str(row["id"]), "uuid": row["id"],
                  "status": _STATUS.get(status) or DeviceStatus(status)}
        for column in columns:
            if column in _COPIED:
                values[column] = row[column]
        if "labels" in columns:
            values["labels"] = list(row["labels"])
        device.__dict__ = values
        return device

    # The asset tree leads to other devices: not for a device caller.
    @strawberry.field(description="The asset this device is installed on (Asset DB).",
                      extensions=[allow(*TENANT_READERS)])
    async def asset(self, info: Info) -> AssetRef | None:
        return one(await device_assets([self], info))

    @strawberry.field(
        description="Rich device metadata: manufacturer, model, specs... (Asset DB, JSONB)."
    )
    async def metadata(self, info: Info) -> JSON | None:
        return one(await device_metadata([self], info))

    @strawberry.field(description="What the device measures and accepts (Asset DB).")
    async def capabilities(self, info: Info) -> list[Capability] | None:
        return one(await device_capabilities([self], info))

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
        # Through a loader, not one(...): whether a metric is unknown is decided over every
        # device asking in the same iteration, as the planner decides it over the level.
        args = dict(metric=metric, from_=from_, to=to, bucket=bucket, aggregate=aggregate,
                    limit=limit, order=order)

        async def level(devices: list[Device]) -> list[Any]:
            return await device_telemetry(devices, info, **args)  # type: ignore[arg-type]
        key = ("Device.telemetry", *args.values())
        return await info.context.loaders.level(key, level).load(self)  # type: ignore[no-any-return]

    @strawberry.field(
        description="The newest reading of each metric (all metrics when `metrics` is omitted)."
    )
    async def latest(self, info: Info, metrics: list[str] | None = None) -> list[Reading] | None:
        return one(await device_latest([self], info, metrics=metrics))

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
        return one(await device_shadows([self], info))


# Device fields for a whole level of devices (resolvers.execution.batch_fields); the
# fields above resolve one device through the same functions.

@batched("Device", "asset")
async def device_assets(devices: list[Device], info: Info) -> list[Any]:
    loaders = info.context.loaders
    if asks_for(info, "parent"):
        loaders.want_asset_parents()  # the profiles' round trip brings the parents too
    profiles = await load_settled(loaders.profile, [d.uuid for d in devices])
    # The profile loader primes the asset loader with each installed asset. A machine
    # carries many devices: each asset is loaded and built once for the level, not once
    # per device (the bench fleet: 100 devices on 12 machines).
    installed: list[Any] = []
    distinct: dict[UUID, None] = {}
    for profile in profiles:
        if profile is None or isinstance(profile, Exception):
            installed.append(profile)
        else:
            asset_id = profile["asset_id"]
            installed.append(asset_id)
            if asset_id is not None:
                distinct[asset_id] = None
    rows = await load_settled(loaders.asset, distinct)
    built = dict(zip(distinct, _asset_class().from_rows(rows), strict=True))
    return [i if i is None or isinstance(i, Exception) else built[i] for i in installed]


@batched("Device", "metadata")
async def device_metadata(devices: list[Device], info: Info) -> list[Any]:
    profiles = await load_settled(info.context.loaders.profile, [d.uuid for d in devices])
    return [p if isinstance(p, Exception) else p["metadata"] if p else None for p in profiles]


@batched("Device", "capabilities")
async def device_capabilities(devices: list[Device], info: Info) -> list[Any]:
    profiles = await load_settled(info.context.loaders.profile, [d.uuid for d in devices])
    return [p if isinstance(p, Exception) or p is None else [
        Capability(metric=c["metric"], unit=c.get("unit"), min=c.get("min"),
                   max=c.get("max"), description=c.get("description"))
        for c in capabilities_of(p)] for p in profiles]


@batched("Device", "telemetry")
async def device_telemetry(
    devices: list[Device], info: Info, *, metric: str, from_: datetime | None = None,
    to: datetime | None = None, bucket: Interval | None = None,
    aggregate: Aggregate | None = Aggregate.AVG, limit: int | None = None,
    order: TimeOrder = TimeOrder.OLDEST_FIRST,
) -> list[Any]:
    try:
        q = series_query(info, metric, from_, to, bucket, aggregate, limit)
    except Exception as error:  # noqa: BLE001 - every device's field fails with it
        return [error] * len(devices)
    if order is TimeOrder.NEWEST_FIRST:
        q = replace(q, newest_first=True)
    loader = info.context.loaders.series(q)
    rows = await load_settled(loader, [d.uuid for d in devices])
    if devices and all(not isinstance(r, Exception) and r.count == 0 for r in rows):
        unknown = await unknown_metric_error(info, [d.uuid for d in devices], metric)
        if unknown is not None:
            return [unknown] * len(devices)
    values: list[Any] = []
    for device, found in zip(devices, rows, strict=True):
        try:
            values.append(found if isinstance(found, Exception)
                          else to_series(device.uuid, q, found))
        except Exception as error:  # noqa: BLE001 - this device's series is too long
            values.append(error)
    return values


@batched("Device", "latest")
async def device_latest(devices: list[Device], info: Info, *,
                        metrics: list[str] | None = None) -> list[Any]:
    for metric in metrics or ():
        validate.metric(metric, "metrics")  # malformed names: BAD_USER_INPUT, as ingest
    loader = info.context.loaders.latest(metrics)
    # The store's readings are the Readings: their fields are read as attributes.
    return await load_settled(loader, [d.uuid for d in devices])


@batched("Device", "shadow")
async def device_shadows(devices: list[Device], info: Info) -> list[Any]:
    loader = info.context.loaders.shadow
    # A decommissioned device's shadow is deleted, or about to be by the reconciler.
    live = [d for d in devices if d.status is not DeviceStatus.DECOMMISSIONED]
    docs = dict(zip((d.uuid for d in live),
                    await load_settled(loader, [d.uuid for d in live]), strict=True))
    values: list[Any] = []
    for device in devices:
        doc = docs.get(device.uuid)
        values.append(doc if isinstance(doc, Exception)
                      else Shadow.from_doc(doc, device.id) if doc else None)
    return values


@strawberry.type
class DeviceEdge:
    cursor: str
    node: Device


@strawberry.type
class DeviceConnection:
    edges: list[DeviceEdge]
    page_info: PageInfo
    total_count: int


class _PageDeviceEdge(DeviceEdge):
    """A DeviceEdge of a registry page: its cursor is encoded from the row when read."""

    cursor = RowCursor()  # type: ignore[assignment]

    def __init__(self, row: Any, order: Order, key: SortKey,  # noqa: D107
                 columns: Collection[str] | None = None) -> None:
        # The dataclass __init__ is not called: it would need the cursor now.
        self.node = (Device.from_row(row) if columns is None
                     else Device.from_some_columns(row, columns))
        self.row = row
        self.order = order
        self.key = key


def device_connection(page: Page, q: DeviceQuery,
                      columns: Collection[str] | None = None) -> DeviceConnection:
    order = q.order
    key = DEVICE_SORT_KEYS[order.key]
    edges: list[DeviceEdge] = [_PageDeviceEdge(r, order, key, columns) for r in page.rows]
    return DeviceConnection(edges=edges, total_count=page.total,
                            page_info=page_info_of(page, order, key))


# Device fields read straight from a registry row, and the column each reads; the other
# fields resolve from the id (and the status), which every page row has.
_FIELD_COLUMNS = {"serial": "serial", "name": "name", "type": "type",
                  "firmwareVersion": "firmware_version", "labels": "labels",
                  "createdAt": "created_at", "updatedAt": "updated_at",
                  "lastSeenAt": "last_seen_at"}
_COPIED = frozenset(_FIELD_COLUMNS.values()) - {"labels"}


def page_columns(info: Info) -> list[str]:
    """The registry columns a page of ``devices`` needs for this query's Device fields
    (resolvers.lookahead: fragments followed, directives ignored, so a conditional field
    is fetched anyway). Decoding all eleven was about half of the page's client CPU
    (~0.3 ms of a 100-device page) where a dashboard reads two or three."""
    names = names_under(info, ("edges", "node"))
    return [_FIELD_COLUMNS[name] for name in names if name in _FIELD_COLUMNS]


async def resolve_devices(
    info: Info, first: int | None, after: str | None, filter: DeviceFilter | None,
    last: int | None = None, before: str | None = None, order_by: DeviceOrder | None = None,
) -> DeviceConnection:
    """A page of the caller's devices: asset-side conditions first (one asset-store round
    trip, only when there are any), then one registry round trip."""
    ctx = info.context
    q = device_query(ctx.settings.max_page_size, first, after, last, before, order_by, filter)
    q = await resolve_asset_side(ctx.stores, ctx.tenant_id, q)
    columns = page_columns(info)
    page = await ctx.stores.registry.page_devices(ctx.tenant_id, q, columns)
    # The order's key is in every row (cursors) but is not copied unless asked for.
    return device_connection(page, q, columns)


async def resolve_asset_devices(
    info: Info, asset_id: UUID, first: int | None, after: str | None,
    filter: DeviceFilter | None, last: int | None = None, before: str | None = None,
    order_by: DeviceOrder | None = None,
) -> DeviceConnection:
    """Asset.devices: batched across every asset of the response (two round trips)."""
    ctx = info.context
    q = device_query(ctx.settings.max_page_size, first, after, last, before, order_by, filter)
    return device_connection(await ctx.loaders.asset_devices(q).load(asset_id), q)
