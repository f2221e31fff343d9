"""Applies the numbered migrations in ``sql/<store>/`` idempotently.

Each database records what it has applied in ``schema_migrations``; a transaction-level
advisory lock makes concurrent replicas starting at once apply each migration exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from gateway.errors import StoreUnavailable
from gateway.stores.base import PgStore, translate_errors
from gateway.stores.metadata_indexes import RangePath, ensure_indexes
from gateway.stores.sqlfiles import migrations

log = logging.getLogger("gateway.stores.migrations")

STORES = ("registry", "assets", "telemetry")
TIMESCALE, PARTITIONED = "timescale", "partitioned"
_LOCK_KEY = 0x107_5FE7E  # any constant shared by every replica


async def telemetry_variant(conn: asyncpg.Connection) -> str:
    """``timescale`` when the extension can be used, else ``partitioned``; a database that
    was already migrated keeps the variant it was built with."""
    recorded = await _recorded_variant(conn)
    return recorded or (await choose_telemetry_mode(conn))[0]


async def _recorded_variant(conn: asyncpg.Connection) -> str | None:
    recorded = await conn.fetchval(
        "SELECT variant FROM schema_migrations WHERE variant IS NOT NULL LIMIT 1"
        if await _has_table(conn) else "SELECT NULL"
    )
    return str(recorded) if recorded else None


async def choose_telemetry_mode(conn: asyncpg.Connection) -> tuple[str, str]:
    """The mode for a telemetry database not migrated yet, and why. TimescaleDB only when
    its loader runs in this server (shared_preload_libraries): installed but not preloaded,
    ``CREATE EXTENSION timescaledb`` fails ("must be preloaded"), so that is partitioned.
    The loader's settings are visible in pg_settings to every role (reading
    shared_preload_libraries itself needs pg_read_all_settings); a mere placeholder for a
    timescaledb.* line in postgresql.conf is not listed there."""
    row = await conn.fetchrow(
        "SELECT (SELECT default_version FROM pg_available_extensions"
        "        WHERE name = 'timescaledb') AS version,"
        "       EXISTS (SELECT FROM pg_settings"
        "               WHERE name = 'timescaledb.disable_load') AS preloaded")
    assert row is not None
    if row["version"] is None:
        return PARTITIONED, "the timescaledb extension is not installed on this server"
    if not row["preloaded"]:
        return PARTITIONED, (
            f"timescaledb {row['version']} is installed but not in shared_preload_libraries"
            " (add it there and restart PostgreSQL to use TimescaleDB for new databases)")
    return TIMESCALE, f"timescaledb {row['version']} is preloaded"


async def _has_table(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"))


async def migrate(conn: asyncpg.Connection, store: str) -> list[str]:
    """Applies what is missing; returns the versions applied now."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}")
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   variant text,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        variant = await _telemetry_mode_logged(conn) if store == "telemetry" else None
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations(store, variant):
            if migration.version in done:
                continue
            log.info("applying %s migration %s_%s", store, migration.version, migration.name)
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, variant) VALUES ($1, $2, $3)",
                migration.version, migration.name, variant,
            )
            applied_now.append(migration.version)
    return applied_now


async def _telemetry_mode_logged(conn: asyncpg.Connection) -> str:
    """The telemetry database's mode, with the one log line that says which and why."""
    recorded = await _recorded_variant(conn)
    if recorded:
        log.info("telemetry store: %s mode, as recorded when it was first migrated", recorded)
        return recorded
    mode, why = await choose_telemetry_mode(conn)
    log.info("telemetry store: %s mode: %s", mode, why)
    return mode


async def migrate_all(dsns: dict[str, str],
                      range_paths: Sequence[RangePath] = ()) -> dict[str, list[str]]:
    """Migrates each store given as ``{store: dsn}``; the asset DB also gets the indexes of
    the declared metadata range paths (as a serving gateway creates them after migrating)."""
    result: dict[str, list[str]] = {}
    for store, dsn in dsns.items():
        conn = await asyncpg.connect(dsn)
        try:
            result[store] = await migrate(conn, store)
            if store == "assets":
                await ensure_indexes(conn, range_paths)
        finally:
            await conn.close()
    return result


async def migrate_store(store: PgStore, *, connect_timeout: float) -> list[str]:
    """Migrates one store on a connection of its own; an unreachable database raises
    ``StoreUnavailable`` after at most ``connect_timeout`` s."""
    with translate_errors(store.name):
        conn = await asyncpg.connect(store.dsn, timeout=connect_timeout,
                                     statement_cache_size=store.statement_cache)
        try:
            applied = await migrate(conn, store.name)
            await store.migrated(conn)
        finally:
            await conn.close()
    return applied


async def migrate_reachable(stores: Sequence[PgStore], *, connect_timeout: float) -> list[PgStore]:
    """Migrates the stores that answer, at once; holds the others (their calls fail as
    unavailable, readiness reports them) and returns them for ``migrate_held``. A migration
    that fails for any other reason stops the start, as a broken schema should."""
    async def attempt(store: PgStore) -> PgStore | None:
        try:
            await migrate_store(store, connect_timeout=connect_timeout)
        except StoreUnavailable as exc:
            log.warning("%s: its migrations wait until it answers", exc.message)
            store.held = "migrations pending"
            return store
        return None

    held = await asyncio.gather(*(attempt(store) for store in stores))
    return [store for store in held if store is not None]


async def migrate_held(stores: Sequence[PgStore], *, connect_timeout: float,
                       backoff_max: float = 2.0) -> None:
    """Retries the held stores' migrations (capped exponential backoff) and releases each
    store once its migrations ran. Runs in the background until all are done."""
    waiting = list(stores)
    backoff = 0.25
    while waiting:
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, backoff_max)
        for store in list(waiting):
            try:
                await migrate_store(store, connect_timeout=connect_timeout)
            except StoreUnavailable:
                continue
            except Exception:  # a bug must not end the retries; it is logged each time
                log.exception("migrating the %s store failed; retrying", store.name)
                continue
            store.held = None
            waiting.remove(store)
            log.info("%s store migrated; serving it", store.name)
