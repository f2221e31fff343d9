"""One adapter per store; each has ``connect``/``aclose`` and batch methods aligned with keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from gateway.settings import Settings
from gateway.stores.assets import AssetStore
from gateway.stores.registry import RegistryStore
from gateway.stores.shadows import ShadowStore
from gateway.stores.telemetry import TelemetryStore


@dataclass(frozen=True)
class Stores:
    registry: RegistryStore
    assets: AssetStore
    telemetry: TelemetryStore
    shadows: ShadowStore


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Connects every store and closes them in reverse order."""
    if settings.embedded:
        raise RuntimeError("open_stores needs every DSN; start the devstack first")
    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    assert settings.redis_url
    timeout, lo, hi = settings.store_timeout, settings.pool_min_size, settings.pool_max_size
    stores = Stores(
        registry=RegistryStore(settings.registry_dsn, timeout=timeout, min_size=lo, max_size=hi),
        assets=AssetStore(settings.assets_dsn, timeout=timeout, min_size=lo, max_size=hi),
        telemetry=TelemetryStore(
            settings.telemetry_dsn, timeout=timeout, min_size=lo, max_size=hi
        ),
        shadows=ShadowStore(settings.redis_url, timeout=settings.store_timeout),
    )
    async with AsyncExitStack() as stack:
        for store in (stores.registry, stores.assets, stores.telemetry, stores.shadows):
            await store.connect()
            stack.push_async_callback(store.aclose)
        yield stores
