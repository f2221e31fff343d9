"""Declared metadata range paths: their expression indexes exist after migrating, and
PostgreSQL uses them for the statement AssetStore sends (EXPLAIN), in the tenant only;
an undeclared path's range reads the profiles. Answers with and without a declaration are
compared in tests/resolvers/test_filters.py."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway.errors import SettingsError
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.metadata_indexes import RangePath, parse
from gateway.stores.migrations import migrate_all
from gateway.stores.predicates import JsonCmp, Params, compile_pred

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_declarations_parse_and_refuse_what_cannot_be_a_constant() -> None:
    assert parse("rating:number, specs.installed:time,rating:number") == (
        RangePath(("rating",), "number"), RangePath(("specs", "installed"), "time"))
    for bad in ("rating", "rating:text", "a'b:number", "a..b:number", ":number",
                "a{b}:time", ".".join(["k"] * 17) + ":number"):
        with pytest.raises(ValueError):
            parse(bad)
    with pytest.raises(SettingsError, match="METADATA_RANGE_PATHS"):
        Settings.from_env({"IOTSPHERE_METADATA_RANGE_PATHS": "x;DROP:number"})
    assert Settings.from_env({"IOTSPHERE_METADATA_RANGE_PATHS": "a.b:time"}
                             ).metadata_range_paths == (RangePath(("a", "b"), "time"),)


@pytest.fixture
async def declared(settings: Settings) -> Any:
    paths = parse("rating:number,specs.installed:time")
    async with open_stores(replace(settings, metadata_range_paths=paths)) as stores:
        async with stores.assets.pool.acquire() as conn:
            await stores.assets.migrated(conn)
            await stores.assets.migrated(conn)  # again, as a second replica would: no-op
        yield stores


async def _seed(stores: Stores, tenant_id: UUID, n: int) -> None:
    rnd = random.Random(5)
    await stores.assets.pool.executemany(
        "INSERT INTO device_profiles (tenant_id, device_id, metadata) VALUES ($1, $2, $3)",
        [(tenant_id, uuid4(), {
            "rating": rnd.randrange(1000), "other": rnd.randrange(1000),
            "specs": {"installed": (T0 + timedelta(hours=rnd.randrange(1000))).isoformat()}})
         for _ in range(n)])


async def _plan(stores: Stores, tenant_id: UUID, pred: JsonCmp) -> tuple[str, int]:
    """The plan of AssetStore's statement for one condition, and how many rows it gives."""
    params = Params([tenant_id])
    where = compile_pred(pred, stores.assets.profile_columns, "p", params)
    sql = stores.assets.sql["devices_matching_condition"].format(leaf=0, where=where)
    async with stores.assets.pool.acquire() as conn:
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *params.values)
        rows = await conn.fetch(sql, *params.values)
    return json.dumps(plan), len(rows)


async def test_declared_ranges_use_their_index_in_the_tenant(declared: Stores) -> None:
    stores = declared
    mine, other = uuid4(), uuid4()
    await _seed(stores, mine, 4000)
    await _seed(stores, other, 4000)
    async with stores.assets.pool.acquire() as conn:
        names = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'device_profiles'")}
        await conn.execute("VACUUM ANALYZE device_profiles")
    number_index = RangePath(("rating",), "number").index_name
    time_index = RangePath(("specs", "installed"), "time").index_name
    assert {number_index, time_index} <= names

    plan, count = await _plan(stores, mine, JsonCmp("metadata", ("rating",), "gte",
                                                    Decimal(990)))
    assert number_index in plan and "Seq Scan" not in plan, plan
    assert 10 < count < 80  # ~1% of this tenant's 4,000, none of the other's
    plan, count = await _plan(stores, mine, JsonCmp(
        "metadata", ("specs", "installed"), "lt", T0 + timedelta(hours=10)))
    assert time_index in plan and "Seq Scan" not in plan, plan
    assert 10 < count < 80

    # The same range on a path nobody declared: no index can serve it.
    plan, count = await _plan(stores, mine, JsonCmp("metadata", ("other",), "gte",
                                                    Decimal(990)))
    assert number_index not in plan and "Seq Scan" in plan, plan
    assert 10 < count < 80


async def test_iotsphere_migrate_creates_the_declared_indexes(settings: Settings) -> None:
    """`iotsphere migrate` (migrate_all) builds them too, e.g. in a job before the rollout."""
    declared = parse("site.floor:number")
    assert settings.assets_dsn is not None
    await migrate_all({"assets": settings.assets_dsn}, declared)
    conn = await asyncpg.connect(settings.assets_dsn)
    try:
        found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                    declared[0].index_name)
    finally:
        await conn.close()
    assert found
