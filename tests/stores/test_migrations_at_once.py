"""Replicas starting at once on empty databases: each migration is applied exactly once."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from gateway.stores.migrations import STORES, migrate_all
from gateway.stores.sqlfiles import migrations
from tests.conftest import Servers


async def test_four_replicas_migrate_empty_databases_at_once(servers: Servers) -> None:
    names = {store: f"m{os.getpid()}_once_{store}" for store in STORES}
    admin = await asyncpg.connect(servers.dsn("postgres"))
    try:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        dsns = {store: servers.dsn(name) for store, name in names.items()}
        results = await asyncio.gather(*(migrate_all(dsns) for _ in range(4)))
        for store in STORES:
            applied = [version for result in results for version in result[store]]
            conn = await asyncpg.connect(dsns[store])
            try:
                recorded = [r["version"] for r in await conn.fetch(
                    "SELECT version FROM schema_migrations ORDER BY version")]
                variant = await conn.fetchval(
                    "SELECT variant FROM schema_migrations LIMIT 1")
            finally:
                await conn.close()
            expected = [m.version for m in migrations(store, variant)]
            # Applied once in all: one replica did each, the others found it done.
            assert sorted(applied) == recorded == sorted(expected)
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
