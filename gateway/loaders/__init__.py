"""Per-request dataloaders over the stores: every cross-store field batches through these.

Built fresh for each HTTP request and for each subscription event, never per WebSocket
connection (a connection-long cache would serve stale rows). Loaders that take shared
parameters (telemetry range, bucket, metrics) are built once per distinct parameter set
and keyed by device id, so only calls with equal parameters batch together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import cache, partial
from typing import Any
from uuid import UUID

import orjson
from aiodataloader import DataLoader

from gateway.loaders.batch_loader import BatchLoader
from gateway.metrics import LOADER_BATCH
from gateway.stores import Stores
from gateway.stores.pages import Page
from gateway.stores.predicates import asset_side_leaves, with_matches
from gateway.stores.registry import DeviceQuery
from gateway.stores.telemetry import SeriesQuery

ASSET_COLUMNS = (
    "id", "tenant_id", "parent_id", "path", "name", "kind", "attributes", "created_at",
    "updated_at",
)


class Loaders:
    """The loaders of one request (or subscription event); ``release`` when answered.

    No batch function refers back to this object (they close over the stores and the
    tenant only), so loaders and their values make no reference cycle of their own."""

    def __init__(self, stores: Stores, tenant_id: UUID) -> None:
        self._stores = stores
        self._tenant = tenant_id
        # Made on first use: every subscription event builds its Loaders afresh and most
        # use none (a DataLoader each was ~40% of a shadowChanged execution's CPU).
        self._device: DataLoader | None = None
        self._asset: DataLoader | None = None
        self._profile: DataLoader | None = None
        self._profile_wants = _ProfileWants()
        self._children: DataLoader | None = None
        self._shadow: DataLoader | None = None
        self._latest: dict[tuple[str, ...] | None, DataLoader] = {}
        self._series: dict[SeriesQuery, DataLoader] = {}
        self._forecasts: dict[tuple[str, datetime, datetime], DataLoader] = {}
        self._rollups: dict[SeriesQuery, DataLoader] = {}
        self._asset_devices: dict[DeviceQuery, DataLoader] = {}
        self._levels: dict[Any, DataLoader] = {}

    @property
    def device(self) -> DataLoader:
        if self._device is None:
            self._device = _loader("device", partial(_devices, self._stores, self._tenant))
        return self._device

    @property
    def asset(self) -> DataLoader:
        if self._asset is None:
            self._asset = _loader("asset", partial(_assets, self._stores, self._tenant))
        return self._asset

    @property
    def profile(self) -> DataLoader:
        if self._profile is None:
            self._profile = _loader("profile", partial(_profiles, self._stores, self._tenant,
                                                       self.asset, self._profile_wants))
        return self._profile

    def want_asset_parents(self) -> None:
        """Profile batches dispatched from now on also fetch each installed asset's
        parent, priming the asset loader (a field asking for ``asset { parent }`` calls
        this before it loads: batches are dispatched at the end of the loop iteration)."""
        self._profile_wants.parents = True

    @property
    def children(self) -> DataLoader:
        if self._children is None:
            self._children = _loader("children", partial(_children, self._stores,
                                                         self._tenant))
        return self._children

    @property
    def shadow(self) -> DataLoader:
        if self._shadow is None:
            self._shadow = _loader("shadow", partial(_shadows, self._stores, self._tenant))
        return self._shadow

    def level(self, key: Any, batch: Callable[[list[Any]], Awaitable[list[Any]]]
              ) -> DataLoader:
        """Objects asking for the same field with the same arguments (``key``) in one loop
        iteration, resolved by one call of the field's batch resolver: what the planned
        executor does per level, for fields whose rule depends on the whole level (see
        resolvers.devices.device_telemetry). Objects are the keys: nothing is cached."""
        if key not in self._levels:
            self._levels[key] = DataLoader(batch, cache=False)  # type: ignore[arg-type]
        return self._levels[key]

    def latest(self, metrics: Sequence[str] | None) -> DataLoader:
        key = tuple(metrics) if metrics is not None else None
        stores, tenant = self._stores, self._tenant
        if key not in self._latest:
            async def load(ids: list[UUID]) -> list[Any]:
                return await stores.telemetry.latest(tenant, ids, key)
            self._latest[key] = _loader("latest", load)
        return self._latest[key]

    def release(self) -> None:
        """Drops every loaded value: called when the request (or subscription event) has
        its answer. graphql-core 3.3's execution context refers to itself (its
        ``async_helpers`` hold its own bound methods), so it, this request's context and
        these loaders are freed only by the cyclic collector; without this, each request's
        rows (records, ids, series, shadows) waited with them, and under sustained load the
        process grew by that garbage (bench/RESULTS.md, "Memory that levels off")."""
        for loader in (self._device, self._profile, self._asset, self._children,
                       self._shadow):
            if loader is not None:
                loader.clear_all()
        for loaders in (self._latest, self._series, self._forecasts, self._rollups,
                        self._asset_devices):
            loaders.clear()

    def forget_telemetry(self) -> None:
        """Drops every cached latest value and series (an ingest in this request wrote)."""
        self._latest.clear()
        self._series.clear()

    def asset_devices(self, query: DeviceQuery) -> DataLoader:
        """Pages of devices under each asset: two round trips for any number of assets
        (the asset store answers the subtrees and the filter's asset-side conditions in
        one, the registry every page in one). ``query`` is as parsed, asset-side
        conditions unresolved, so equal arguments share a loader."""
        stores, tenant = self._stores, self._tenant
        if query not in self._asset_devices:
            async def load(asset_ids: list[UUID]) -> list[Any]:
                leaves = asset_side_leaves(query.where)
                pairs, matched = await stores.assets.device_ids_for(tenant, asset_ids, leaves)
                resolved = replace(query, where=with_matches(query.where, leaves, matched))
                pages = await stores.registry.page_devices_grouped(
                    tenant, pairs, resolved) if pairs else {}
                return [pages.get(asset_id) or Page([], 0, False, False)
                        for asset_id in asset_ids]
            self._asset_devices[query] = _loader("asset_devices", load)
        return self._asset_devices[query]

    def forecast(self, metric: str, start: datetime, end: datetime) -> DataLoader:
        key = (metric, start, end)
        stores, tenant = self._stores, self._tenant
        if key not in self._forecasts:
            async def load(ids: list[UUID]) -> list[Any]:
                return await stores.telemetry.forecast(tenant, ids, metric, start, end)
            self._forecasts[key] = _loader("forecast", load)
        return self._forecasts[key]

    def rollup(self, query: SeriesQuery) -> DataLoader:
        """Asset.telemetry: the tree resolved in the asset store, the aggregation pushed
        down to the telemetry store; two round trips for any number of assets."""
        stores, tenant = self._stores, self._tenant
        if query not in self._rollups:
            async def load(asset_ids: list[UUID]) -> list[Any]:
                pairs = await stores.assets.device_ids_under_many(tenant, asset_ids, None)
                groups = await stores.telemetry.rollup(
                    tenant, pairs, query) if pairs else {}
                return [groups.get(asset_id) for asset_id in asset_ids]
            self._rollups[query] = _loader("rollup", load)
        return self._rollups[query]

    def series(self, query: SeriesQuery) -> DataLoader:
        stores, tenant = self._stores, self._tenant
        if query not in self._series:
            async def load(ids: list[UUID]) -> list[Any]:
                return await stores.telemetry.series(tenant, ids, query)
            self._series[query] = _loader("series", load)
        return self._series[query]



async def _devices(stores: Stores, tenant: UUID, ids: list[UUID]) -> list[Any]:
    return await stores.registry.devices_by_ids(tenant, ids)


class _ProfileWants:
    """What profile batches fetch besides the profiles (a holder of its own, so the batch
    function does not refer back to its Loaders)."""

    __slots__ = ("parents",)

    def __init__(self) -> None:
        self.parents = False


async def _profiles(stores: Stores, tenant: UUID, assets: DataLoader, wants: _ProfileWants,
                    device_ids: list[UUID]) -> list[Any]:
    parents = wants.parents
    rows = await stores.assets.profiles_by_device(tenant, device_ids, parents=parents)
    for row in rows:
        # One row per installed asset carries its columns, one per parent the parent's
        # (sql/assets/queries.sql).
        if row is not None and row["a_id"] is not None:
            assets.prime(row["a_id"], embedded_asset(row, _INSTALLED))
            if parents and row["pa_id"] is not None:
                assets.prime(row["pa_id"], embedded_asset(row, _PARENT))
    return rows


async def _assets(stores: Stores, tenant: UUID, ids: list[UUID]) -> list[Any]:
    return await stores.assets.assets_by_ids(tenant, ids)


async def _children(stores: Stores, tenant: UUID, parent_ids: list[UUID]) -> list[Any]:
    return await stores.assets.children_of(tenant, parent_ids)


async def _shadows(stores: Stores, tenant: UUID, device_ids: list[UUID]) -> list[Any]:
    return await stores.shadows.get_many(tenant, device_ids)


@cache
def _batch_sizes(name: str) -> Any:
    """The histogram child of one loader name, looked up once: a subscription event builds
    its loaders afresh, and the label lookup was ~10% of a cohort execution's CPU."""
    return LOADER_BATCH.labels(name)


def _loader(name: str, batch: Callable[[list[Any]], Awaitable[list[Any]]]) -> BatchLoader:
    """A loader whose batch sizes show in /metrics (proof of batching in production)."""
    sizes = _batch_sizes(name)

    async def load(keys: list[Any]) -> list[Any]:
        sizes.observe(len(keys))
        return await batch(keys)
    return BatchLoader(load)


_INSTALLED = tuple((column, "a_" + column) for column in ASSET_COLUMNS)
_PARENT = tuple((column, "pa_" + column) for column in ASSET_COLUMNS)


def capabilities_of(profile: Mapping[str, Any] | None) -> list[Any]:
    """A profile row's capabilities (sent as text by the profile queries; parsed here, by
    the few fields that read them); none without a profile."""
    if profile is None:
        return []
    text = profile["capabilities_json"]
    return orjson.loads(text) if text is not None else []


def embedded_asset(profile: Mapping[str, Any],
                   columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """An asset row carried in a profile row's prefixed columns: ``_INSTALLED`` (``a_*``,
    the installed asset) or ``_PARENT`` (``pa_*``, its parent)."""
    return {column: profile[prefixed] for column, prefixed in columns}
