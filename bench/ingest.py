"""Ingest throughput: raw asyncpg binary COPY into the readings table, beside the gateway's
two write paths in the same run: the ``ingestTelemetry`` mutation (batches of 1,000 and
10,000) and ``POST /ingest`` (NDJSON and CSV, streamed, plus a retry of the same body:
every reading a duplicate). Reports readings/s, the ratio to raw COPY, the gateway's peak
RSS, and where the time of POST /ingest goes: Python parsing and checking per line (the
gateway's own parser, no I/O), COPY into readings with and without the 5-minute rollup's
trigger, and the duplicate path (staging table + INSERT .. ON CONFLICT DO NOTHING).

    python bench/ingest.py [--mutation-readings 100000] [--bulk 100000,1000000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (  # noqa: E402
    Server,
    append_results,
    machine,
    stack_up,
    tenant_with_devices,
)

DEVICES = 100
COLUMNS = ["tenant_id", "device_id", "metric", "time", "value"]
MUTATION = """mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r) {
  accepted duplicates rejected { index } } }"""


class Clock:
    """Hands out disjoint time ranges, so no run collides with another's readings."""

    def __init__(self) -> None:
        self._next = datetime.now(UTC).replace(microsecond=0) - timedelta(days=300)

    def span(self, readings: int) -> datetime:
        start = self._next
        # One reading a second per device, round-robin over the devices.
        self._next += timedelta(seconds=readings // DEVICES + 10)
        return start


def readings(devices: list[UUID], start: datetime, count: int
             ) -> Iterator[tuple[UUID, datetime, float]]:
    for n in range(count):
        yield devices[n % DEVICES], start + timedelta(seconds=n // DEVICES), float(n % 1000)


async def raw_copy(dsn: str, tenant: UUID, devices: list[UUID], start: datetime,
                   count: int, rollup: bool = True) -> float:
    """Binary COPY straight into readings; ``rollup=False`` with the rollup's trigger off
    (in the COPY's own transaction), to show what maintaining the rollup costs."""
    conn = await asyncpg.connect(dsn)
    try:
        end = start + timedelta(seconds=count // DEVICES + 1)
        await conn.execute("SELECT readings_ensure_partitions($1, $2)", start, end)
        records = [(tenant, d, "temperature", t, v) for d, t, v in
                   readings(devices, start, count)]
        async with conn.transaction():
            if not rollup:
                await conn.execute("ALTER TABLE readings DISABLE TRIGGER readings_5m_maintain")
            began = time.perf_counter()
            await conn.copy_records_to_table("readings", records=records, columns=COLUMNS)
            elapsed = time.perf_counter() - began
            if not rollup:
                await conn.execute("ALTER TABLE readings ENABLE TRIGGER readings_5m_maintain")
        return count / elapsed
    finally:
        await conn.close()


async def staged_insert(dsn: str, tenant: UUID, devices: list[UUID], start: datetime,
                        count: int) -> float:
    """The staged path alone (a body of several batches, or a batch with a duplicate):
    COPY into a temporary staging table, then INSERT .. ORDER BY .. ON CONFLICT DO NOTHING
    into readings (fresh readings, so every one is inserted)."""
    from gateway.stores.sqlfiles import queries
    from gateway.writes.bulk_ingest import STAGING

    conn = await asyncpg.connect(dsn)
    try:
        end = start + timedelta(seconds=count // DEVICES + 1)
        await conn.execute("SELECT readings_ensure_partitions($1, $2)", start, end)
        records = [(tenant, d, "temperature", t, v) for d, t, v in
                   readings(devices, start, count)]
        async with conn.transaction():
            await conn.execute(STAGING)
            began = time.perf_counter()
            await conn.copy_records_to_table("ingest_staging", records=records,
                                             columns=COLUMNS)
            await conn.execute(queries("telemetry")["insert_staged_in_order"])
            return count / (time.perf_counter() - began)
    finally:
        await conn.close()


async def parse_only(devices: list[UUID], start: datetime, count: int, kind: str) -> float:
    """The gateway's line parser and checks on a body in memory: no network, no store."""
    from gateway.http import ingest

    body = b"".join(_lines(devices, start, count, kind))

    class Request:
        headers: dict[str, str] = {}

        async def stream(self) -> AsyncIterator[bytes]:
            for first in range(0, len(body), 65_536):
                yield body[first:first + 65_536]

    class Limits:
        ingest_max_bytes = ingest_max_lines = 1 << 40

    outcome = ingest.Outcome()
    batch = ingest.Batch(None, None, None, outcome)  # type: ignore[arg-type]
    began = time.perf_counter()
    parsed = 0
    async for _ in ingest._parse(Request(), Limits(), kind, batch,  # type: ignore[arg-type]
                                 outcome):
        parsed += len(batch)
        batch._pending = []
    parsed += len(batch)
    elapsed = time.perf_counter() - began
    assert parsed == count and not outcome.rejected_count
    return count / elapsed


def _lines(devices: list[UUID], start: datetime, count: int, kind: str) -> Iterator[bytes]:
    if kind == "csv":
        yield b"deviceId,metric,time,value\n"
    for d, t, v in readings(devices, start, count):
        if kind == "csv":
            yield f"{d},temperature,{t.isoformat()},{v}\n".encode()
        else:
            yield orjson.dumps({"deviceId": str(d), "metric": "temperature",
                                "time": t.isoformat(), "value": v}) + b"\n"


async def mutation(http: httpx.AsyncClient, key: str, devices: list[UUID], start: datetime,
                   count: int, batch: int) -> float:
    rows = [{"deviceId": str(d), "metric": "temperature", "time": t.isoformat(), "value": v}
            for d, t, v in readings(devices, start, count)]
    began = time.perf_counter()
    for first in range(0, count, batch):
        body = orjson.dumps({"query": MUTATION, "variables": {"r": rows[first:first + batch]}})
        response = await http.post("/graphql", content=body, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        result = response.json()
        assert "errors" not in result, result["errors"]
        assert result["data"]["ingestTelemetry"]["accepted"] == min(batch, count - first)
    return count / (time.perf_counter() - began)


async def bulk(http: httpx.AsyncClient, key: str, devices: list[UUID], start: datetime,
               count: int, kind: str, duplicates: bool = False) -> float:
    async def body() -> AsyncIterator[bytes]:
        lines: list[bytes] = []
        for line in _lines(devices, start, count, kind):
            lines.append(line)
            if len(lines) >= 5000:
                yield b"".join(lines)
                lines = []
        yield b"".join(lines)

    media = "text/csv" if kind == "csv" else "application/x-ndjson"
    began = time.perf_counter()
    response = await http.post("/ingest", content=body(), headers={
        "Authorization": f"Bearer {key}", "Content-Type": media}, timeout=600)
    elapsed = time.perf_counter() - began
    result = response.json()
    expected = (0, count) if duplicates else (count, 0)
    assert response.status_code == 200, result
    assert (result["accepted"], result["duplicates"]) == expected, result
    return count / elapsed


async def run(args: argparse.Namespace) -> str:
    rows: list[tuple[str, int, float, float]] = []
    loads = [os.getloadavg()]
    if args.mutation_only:
        args.bulk = [args.mutation_readings]
    sizes = sorted({args.mutation_readings, *args.bulk})
    with stack_up() as stack, tempfile.NamedTemporaryFile(suffix=".log") as log:
        tenant, key, devices = await tenant_with_devices(stack.settings, DEVICES)
        clock = Clock()
        dsn = stack.settings.telemetry_dsn
        assert dsn
        # Raw COPY before and after the gateway's runs: the reference is their mean, so a
        # change of the machine's load during the run weighs on both sides alike.
        before = {n: await raw_copy(dsn, tenant, devices, clock.span(n), n) for n in sizes}
        gateway_rates: list[tuple[str, int, float]] = []
        n = args.mutation_readings
        # The mutation through graphql-core's variable coercion (planning off: the
        # reference path) beside the readings coerced in one loop, same run, interleaved.
        with Server(stack, Path(f"{log.name}.core"),
                    env={"IOTSPHERE_PLANNED_EXECUTION": "false"}) as core, \
                Server(stack, Path(log.name)) as server:
            async with httpx.AsyncClient(base_url=core.url, timeout=120) as old, \
                    httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                idle_rss = server.rss_kib()
                for batch in (1_000, 10_000):
                    for _round in range(args.rounds):
                        for name, client in (("graphql-core coercion", old),
                                             ("readings coerced in one loop", http)):
                            rate = await mutation(client, key, devices, clock.span(n), n, batch)
                            gateway_rates.append(
                                (f"ingestTelemetry, batches of {batch:,}, {name}", n, rate))
                for n in [] if args.mutation_only else args.bulk:
                    for kind in ("ndjson", "csv"):
                        rate = await bulk(http, key, devices, clock.span(n), n, kind)
                        gateway_rates.append((f"POST /ingest {kind.upper()}", n, rate))
                if not args.mutation_only:
                    n = min(args.bulk)
                    again = clock.span(n)
                    await bulk(http, key, devices, again, n, "ndjson")
                    rate = await bulk(http, key, devices, again, n, "ndjson", duplicates=True)
                    gateway_rates.append(
                        ("POST /ingest NDJSON, a retry: all duplicates", n, rate))
                peak = server.rss_kib("VmHWM")
        after = {n: await raw_copy(dsn, tenant, devices, clock.span(n), n) for n in sizes}
        reference = {n: (before[n] + after[n]) / 2 for n in sizes}
        rows = [(name, n, rate, reference[n]) for name, n, rate in gateway_rates]
        big = max(args.bulk)
        phases = {} if args.mutation_only else {
            "COPY into readings (rollup trigger on; the reference)": reference[big],
            "COPY into readings, rollup trigger off": await raw_copy(
                dsn, tenant, devices, clock.span(big), big, rollup=False),
            "staging COPY + INSERT .. ON CONFLICT (a batch with duplicates)":
                await staged_insert(dsn, tenant, devices, clock.span(big), big),
            "Python: parse and check NDJSON lines": await parse_only(
                devices, clock.span(big), big, "ndjson"),
            "Python: parse and check CSV lines": await parse_only(
                devices, clock.span(big), big, "csv"),
        }
    loads.append(os.getloadavg())
    lines = [
        f"## Ingest ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, bench/ingest.py)", "",
        f"Machine: {machine()}. Load average (1/5/15 min) {_load(loads[0])} at the start, "
        f"{_load(loads[1])} at the end. {DEVICES} devices, fresh readings unless said; raw "
        "COPY is asyncpg binary COPY straight into `readings` (which maintains the 5-minute "
        "rollup by trigger), on the same table, the mean of a run before and one after the "
        "gateway's.", "",
        "| path | readings | readings/s | raw COPY readings/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {name} | {n:,} | {rate:,.0f} | {copy:,.0f} | {rate / copy:.0%} |"
          for name, n, rate, copy in rows),
        "", "Raw COPY before / after the gateway's runs: "
        + ", ".join(f"{n:,}: {before[n]:,.0f} / {after[n]:,.0f}" for n in sizes) + ".",
        "", f"Gateway RSS: {idle_rss / 1024:.0f} MiB idle, peak {peak / 1024:.0f} MiB "
        "over the whole run.",
    ]
    if phases:
        lines += [
            "", f"Where POST /ingest's time goes, {big:,} readings, each step alone:", "",
            "| step | readings/s | us per reading |", "| --- | ---: | ---: |",
            *(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} |" for name, rate in phases.items()),
        ]
    return "\n".join(lines)


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutation-readings", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds of the two mutation paths")
    parser.add_argument("--mutation-only", action="store_true",
                        help="skip POST /ingest and the step breakdown")
    parser.add_argument("--bulk", type=lambda s: [int(x) for x in s.split(",")],
                        default=[100_000, 1_000_000])
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    section = asyncio.run(run(args))
    print(section)
    if args.write:
        append_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
