"""One adapter per store; each has ``connect``/``aclose`` and batch methods aligned with keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.settings import Settings
from gateway.stores.assets import AssetStore
from gateway.stores.breaker import CircuitBreaker
from gateway.stores.read_replica import ReadReplica
from gateway.stores.registry import RegistryStore
from gateway.stores.shadows import ShadowStore
from gateway.stores.telemetry import TelemetryStore


@dataclass(frozen=True)
class Stores:
    registry: RegistryStore
    assets: AssetStore
    telemetry: TelemetryStore
    shadows: ShadowStore

    def all(self) -> tuple[RegistryStore, AssetStore, TelemetryStore, ShadowStore]:
        return (self.registry, self.assets, self.telemetry, self.shadows)


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Connects every store and closes them in reverse order. A store that does not answer
    does not stop the others: its adapter connects on first use (see ``PgStore``)."""
    if settings.embedded:
        raise RuntimeError("open_stores needs every DSN; start the devstack first")
    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    assert settings.redis_url

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, failures=settings.breaker_failures,
                              cooldown=settings.breaker_cooldown)

    pg: dict[str, Any] = {
        "timeout": settings.store_timeout, "min_size": settings.pool_min_size,
        "max_size": settings.pool_max_size, "statement_cache": settings.pg_statement_cache}
    stores = Stores(
        registry=RegistryStore(
            settings.registry_dsn, breaker=breaker("registry"),
            outage_grace=settings.auth_outage_grace, key_cache_ttl=settings.api_key_cache_ttl,
            **pg,
        ),
        assets=AssetStore(settings.assets_dsn, breaker=breaker("assets"),
                          range_paths=settings.metadata_range_paths, **pg),
        telemetry=TelemetryStore(settings.telemetry_dsn, breaker=breaker("telemetry"), **pg),
        shadows=ShadowStore(settings.redis_url, timeout=settings.store_timeout,
                            breaker=breaker("shadows")),
    )
    replicas = []
    for primary, dsn in ((stores.registry, settings.registry_read_dsn),
                         (stores.assets, settings.assets_read_dsn),
                         (stores.telemetry, settings.telemetry_read_dsn)):
        if dsn:
            primary.read_replica = ReadReplica(
                primary, dsn, max_lag=settings.read_replica_max_lag,
                probe_interval=settings.read_replica_probe_interval,
                breaker=breaker(primary.name), **pg)
            replicas.append(primary.read_replica)
    async with AsyncExitStack() as stack:
        for store in stores.all():
            stack.push_async_callback(store.aclose)
        # Closed before their primaries, which their probes read.
        for replica in replicas:
            stack.push_async_callback(replica.aclose)
        # At once: with a store that does not answer, start waits one connect timeout.
        await asyncio.gather(*(store.connect() for store in stores.all()))
        # After the primaries: the first probe compares each replica with its primary.
        await asyncio.gather(*(replica.connect() for replica in replicas))
        yield stores
