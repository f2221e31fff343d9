"""What a test needs to know of the telemetry store's mode to assert that mode's own
behaviour: partitioned PostgreSQL keeps a day per partition (readings_YYYYMMDD) and the
rollup in a table; TimescaleDB keeps chunks and the rollup in a continuous aggregate
(readings_5m_cagg) behind the readings_5m view."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from gateway.stores import Stores

PARTITIONED, TIMESCALE = "partitioned", "timescale"


async def telemetry_mode(stores: Stores) -> str:
    mode = await stores.telemetry.pool.fetchval(
        "SELECT variant FROM schema_migrations WHERE variant IS NOT NULL LIMIT 1")
    assert mode in (PARTITIONED, TIMESCALE), mode
    return str(mode)


async def stored_days(stores: Stores, table: str = "readings") -> set[date]:
    """UTC days that have storage in ``table`` (readings, or the rollup: readings_5m):
    a partition, or a chunk of the hypertable or of the aggregate's hypertable."""
    if await telemetry_mode(stores) == PARTITIONED:
        rows = await stores.telemetry.pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass", table)
        return {datetime.strptime(r["relname"][-8:], "%Y%m%d").date() for r in rows}
    name = "readings_5m_cagg" if table == "readings_5m" else table
    rows = await stores.telemetry.pool.fetch(
        "SELECT range_start, range_end FROM timescaledb_information.chunks"
        " WHERE hypertable_name = $1 OR hypertable_name = ("
        "   SELECT materialization_hypertable_name"
        "   FROM timescaledb_information.continuous_aggregates WHERE view_name = $1)", name)
    days: set[date] = set()
    for r in rows:
        day = r["range_start"].astimezone(UTC).date()
        while datetime.combine(day, datetime.min.time(), UTC) < r["range_end"]:
            days.add(day)
            day += timedelta(days=1)
    return days


async def materialize_rollup(stores: Stores) -> None:
    """TimescaleDB: materializes the aggregate up to now (the templates' clones run no job
    scheduler). Partitioned: nothing to do, the rollup is kept on ingest."""
    if await telemetry_mode(stores) == TIMESCALE:
        await stores.telemetry.pool.execute(
            "CALL refresh_continuous_aggregate('readings_5m_cagg', NULL, now())")


async def corrupt_rollup(stores: Stores) -> None:
    """Adds 1e6 to every stored rollup total, so a query that reads the rollup is visibly
    wrong. TimescaleDB: the materialized rows, after materializing them."""
    if await telemetry_mode(stores) == PARTITIONED:
        await stores.telemetry.pool.execute("UPDATE readings_5m SET total = total + 1e6")
        return
    await materialize_rollup(stores)
    table = await stores.telemetry.pool.fetchval(
        "SELECT format('%I.%I', materialization_hypertable_schema,"
        "              materialization_hypertable_name)"
        " FROM timescaledb_information.continuous_aggregates"
        " WHERE view_name = 'readings_5m_cagg'")
    await stores.telemetry.pool.execute(f"UPDATE {table} SET total = total + 1e6")
