"""Filtered, ordered pages of 100 out of a 100,000-device fleet, through the API at c1.

    .venv/bin/python bench/filtered_page.py [--devices 100000] [--requests 40] [--write]

Starts an embedded devstack (bench/_stack.py), seeds one tenant with ``--devices`` devices
(registry, by COPY) and their profiles (asset DB: 10 sites x 10 lines, metadata with a
maker, a numeric rating, the same numbers again as an undeclared ``level``, and an
``installedAt`` time), ANALYZEs, serves the gateway in its own process (``rating`` and
``installedAt`` declared in IOTSPHERE_METADATA_RANGE_PATHS, so their ranges have an
index; ``level`` not), prints the asset DB's plan for the declared and the undeclared
range (EXPLAIN ANALYZE of the statement AssetStore sends) and times each
query shape sequentially (one client): p50/p95 and the ratio to the unfiltered default
page measured in the same run. Every response must be 200 with no errors and 100 edges
(or the filter's whole match when smaller). Prints a Markdown table; --write appends it to
bench/RESULTS.md with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from bench._stack import (  # noqa: E402
    Server,
    _migrate,
    append_results,
    dated_section,
    machine,
    stack_up,
)

PAGE = """query($filter: DeviceFilter, $orderBy: DeviceOrder, $first: Int, $last: Int) {
  devices(filter: $filter, orderBy: $orderBy, first: $first, last: $last) {
    totalCount edges { cursor node { id name status lastSeenAt } }
    pageInfo { hasNextPage hasPreviousPage } } }"""
NOW = datetime.now(UTC)
HOUR_AGO = (NOW - timedelta(hours=1)).isoformat()
SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("unfiltered, default order (baseline)", {"first": 100}),
    ("status ACTIVE, lastSeenAt desc", {
        "first": 100, "filter": {"status": ["ACTIVE"]},
        "orderBy": {"field": "LAST_SEEN_AT", "direction": "DESC"}}),
    ("not seen for an hour (or: lt, never), name", {
        "first": 100, "orderBy": {"field": "NAME"},
        "filter": {"or": [{"lastSeenAt": {"lt": HOUR_AGO}}, {"lastSeenAt": {"never": True}}]}}),
    ("namePrefix, name", {"first": 100, "orderBy": {"field": "NAME"},
                          "filter": {"namePrefix": "pump 12"}}),
    ("search (trigram), name desc", {"first": 100,
                                     "orderBy": {"field": "NAME", "direction": "DESC"},
                                     "filter": {"search": "0042"}}),
    ("type in + statusNotIn, last 100 backward", {
        "last": 100, "orderBy": {"field": "TYPE"},
        "filter": {"types": ["pump", "valve"], "statusNotIn": ["DECOMMISSIONED"]}}),
    ("metadata rating >= 95 (asset DB, ~5%, declared path), name", {
        "first": 100, "orderBy": {"field": "NAME"},
        "filter": {"metadataPath": [{"path": ["rating"], "gte": 95}]}}),
    ("metadata level >= 95 (same values, undeclared path), name", {
        "first": 100, "orderBy": {"field": "NAME"},
        "filter": {"metadataPath": [{"path": ["level"], "gte": 95}]}}),
    ("metadata installedAt timeLt (~5%, declared path), name", {
        "first": 100, "orderBy": {"field": "NAME"},
        "filter": {"metadataPath": [{"path": ["installedAt"], "timeLt": "@installed"}]}}),
    ("assetId (1 line, 1%) and status, lastSeenAt", {
        "first": 100, "orderBy": {"field": "LAST_SEEN_AT"},
        "filter": {"assetId": "@line", "status": ["ACTIVE", "SUSPENDED"]}}),
]
DECLARED = "rating:number,installedAt:time"
INSTALLED_FROM = datetime(2020, 1, 1, tzinfo=UTC)
INSTALLED_CUT = (INSTALLED_FROM + timedelta(days=50)).isoformat()  # 5% of 1,000 days
TYPES = ["pump", "valve", "meter", "sensor"]
STATUSES = ["ACTIVE"] * 6 + ["SUSPENDED", "PROVISIONED", "DECOMMISSIONED"]


async def seed(dsns: dict[str, str], devices: int) -> tuple[str, str, uuid.UUID]:
    """The tenant's admin key, one line's asset id and the tenant's id."""
    from bench._stack import Stack
    from gateway.auth.callers import create_tenant_with_admin_key
    from gateway.stores import open_stores
    settings = Stack(dsns, "").settings
    await _migrate(settings)
    async with open_stores(settings) as stores:
        tenant_id, key = await create_tenant_with_admin_key(stores.registry, "bench")
    rnd = random.Random(7)
    sites = [uuid.uuid4() for _ in range(10)]
    lines = [(s, uuid.uuid4()) for s in sites for _ in range(10)]
    ids = [uuid.uuid4() for _ in range(devices)]
    registry = await asyncpg.connect(dsns["registry"])
    try:
        await registry.copy_records_to_table(
            "devices", columns=["tenant_id", "id", "serial", "name", "type", "status",
                                "last_seen_at", "created_at"],
            records=[(tenant_id, i, f"SN-{n:06d}", f"{TYPES[n % 4]} {n}", TYPES[n % 4],
                      rnd.choice(STATUSES),
                      None if n % 10 == 0 else NOW - timedelta(minutes=rnd.randrange(600)),
                      NOW - timedelta(seconds=devices - n))
                     for n, i in enumerate(ids)])
        await registry.execute("ANALYZE devices")
    finally:
        await registry.close()
    assets = await asyncpg.connect(dsns["assets"])
    try:
        await assets.copy_records_to_table(
            "assets", columns=["tenant_id", "id", "parent_id", "path", "name", "kind"],
            records=[(tenant_id, s, None, [s], f"site {n}", "site") for n, s in enumerate(sites)]
            + [(tenant_id, line, s, [s, line], f"line {n}", "line")
               for n, (s, line) in enumerate(lines)])
        await assets.copy_records_to_table(
            "device_profiles", columns=["tenant_id", "device_id", "asset_id", "metadata"],
            records=[(tenant_id, i, lines[n % len(lines)][1], _metadata(n, rnd))
                     for n, i in enumerate(ids)])
        await assets.execute("ANALYZE")
    finally:
        await assets.close()
    return key, str(lines[0][1]), tenant_id


def _metadata(n: int, rnd: random.Random) -> str:
    rating = rnd.randrange(100)
    installed = INSTALLED_FROM + timedelta(minutes=rnd.randrange(1000 * 24 * 60))
    return json.dumps({"maker": f"m{n % 5}", "rating": rating, "level": rating,
                       "installedAt": installed.isoformat()})


def _with_line(value: Any, line: str) -> Any:
    if isinstance(value, dict):
        return {k: _with_line(v, line) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_line(v, line) for v in value]
    return {"@line": line, "@installed": INSTALLED_CUT}.get(value, value) \
        if isinstance(value, str) else value


async def explain_ranges(dsn: str, tenant_id: uuid.UUID) -> list[str]:
    """The asset DB's plans (EXPLAIN ANALYZE) for the declared and the undeclared range,
    compiled as AssetStore compiles them for a gateway started with DECLARED."""
    from decimal import Decimal

    from gateway.stores.assets import AssetStore
    from gateway.stores.metadata_indexes import parse
    from gateway.stores.predicates import JsonCmp, Params, compile_pred
    store = AssetStore(dsn, range_paths=parse(DECLARED))
    out = []
    conn = await asyncpg.connect(dsn)
    try:
        for key in ("rating", "level"):
            params = Params([tenant_id])
            where = compile_pred(JsonCmp("metadata", (key,), "gte", Decimal(95)),
                                 store.profile_columns, "p", params)
            sql = store.sql["devices_matching_condition"].format(leaf=0, where=where)
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *params.values)
            out.append(f"{key} >= 95:\n" + "\n".join("    " + r[0] for r in plan))
    finally:
        await conn.close()
    return out


async def run(url: str, key: str, line: str, requests: int) -> list[tuple[str, float, float,
                                                                           dict[str, int]]]:
    results = []
    headers = {"Authorization": f"Bearer {key}", "X-IoTSphere-Trace": "1"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for name, variables in SHAPES:
            body = {"query": PAGE, "variables": _with_line(variables, line)}
            times = []
            calls: dict[str, int] = {}
            for n in range(requests + 5):
                started = time.perf_counter()
                response = await http.post("/graphql", json=body)
                elapsed = time.perf_counter() - started
                payload = response.json()
                if response.status_code != 200 or "errors" in payload:
                    raise SystemExit(f"{name}: {response.status_code} {payload}")
                conn = payload["data"]["devices"]
                if len(conn["edges"]) != min(100, conn["totalCount"]):
                    raise SystemExit(f"{name}: {len(conn['edges'])} edges")
                calls = payload["extensions"]["storeCalls"]
                if n >= 5:  # warm-up: statement preparation, key verification, caches
                    times.append(elapsed * 1000)
            times.sort()
            results.append((name, statistics.median(times),
                            times[int(len(times) * 0.95) - 1], calls))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with stack_up() as stack:
        key, line, tenant_id = asyncio.run(seed(stack.dsns, args.devices))
        log = Path(tempfile.mkdtemp(prefix="iotsphere-bench-log-")) / "gateway.log"
        # The gateway creates the declared paths' indexes (and ANALYZEs) before serving.
        with Server(stack, log, env={"IOTSPHERE_METADATA_RANGE_PATHS": DECLARED}) as server:
            plans = asyncio.run(explain_ranges(stack.dsns["assets"], tenant_id))
            print("\n".join(plans))
            results = asyncio.run(run(server.url, key, line, args.requests))
    load_after = os.getloadavg()
    base = results[0][1]
    lines = [f"| query (100 of {args.devices} devices) | p50 ms | p95 ms | p50 / baseline "
             "| round trips |", "| --- | ---: | ---: | ---: | --- |"]
    for name, p50, p95, calls in results:
        trips = ", ".join(f"{k} {v}" for k, v in calls.items() if v)
        lines.append(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / base:.2f} | {trips} |")
    table = "\n".join(lines)
    print(table)
    load = (f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
            f"({os.cpu_count()} CPUs)")
    print(load)
    if args.write:
        append_results(dated_section(
            "Filtered, ordered device pages (bench/filtered_page.py)",
            {"machine": machine(), "load": load, "requests": f"{args.requests} per shape, c1",
             "declared": f"IOTSPHERE_METADATA_RANGE_PATHS={DECLARED}"},
            table + "\n\nAsset DB plans (EXPLAIN ANALYZE, COSTS OFF):\n\n```\n"
            + "\n".join(plans) + "\n```"))


if __name__ == "__main__":
    main()
