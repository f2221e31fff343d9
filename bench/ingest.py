"""Ingest throughput: raw asyncpg binary COPY into the readings table, beside the gateway's
two write paths in the same run: the ``ingestTelemetry`` mutation (batches of 1,000 and
10,000) and ``POST /ingest`` (NDJSON and CSV, streamed). Reports readings/s, the ratio to
raw COPY, and the gateway's peak RSS.

    python bench/ingest.py [--mutation-readings 100000] [--bulk 100000,1000000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
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
                   count: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        end = start + timedelta(seconds=count // DEVICES + 1)
        await conn.execute("SELECT readings_ensure_partitions($1, $2)", start, end)
        records = [(tenant, d, "temperature", t, v) for d, t, v in
                   readings(devices, start, count)]
        began = time.perf_counter()
        await conn.copy_records_to_table(
            "readings", records=records,
            columns=["tenant_id", "device_id", "metric", "time", "value"])
        return count / (time.perf_counter() - began)
    finally:
        await conn.close()


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
               count: int, kind: str) -> float:
    async def body() -> AsyncIterator[bytes]:
        lines: list[bytes] = [b"deviceId,metric,time,value\n"] if kind == "csv" else []
        for d, t, v in readings(devices, start, count):
            if kind == "csv":
                lines.append(f"{d},temperature,{t.isoformat()},{v}\n".encode())
            else:
                lines.append(orjson.dumps({"deviceId": str(d), "metric": "temperature",
                                           "time": t.isoformat(), "value": v}) + b"\n")
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
    assert response.status_code == 200 and result["accepted"] == count, result
    return count / elapsed


async def run(args: argparse.Namespace) -> str:
    rows: list[tuple[str, int, float, float]] = []
    with stack_up() as stack, tempfile.NamedTemporaryFile(suffix=".log") as log:
        tenant, key, devices = await tenant_with_devices(stack.settings, DEVICES)
        clock = Clock()
        assert stack.settings.telemetry_dsn
        copy_rates = {n: await raw_copy(stack.settings.telemetry_dsn, tenant, devices,
                                        clock.span(n), n)
                      for n in sorted({args.mutation_readings, *args.bulk})}
        with Server(stack, Path(log.name)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                idle_rss = server.rss_kib()
                n = args.mutation_readings
                for batch in (1_000, 10_000):
                    rate = await mutation(http, key, devices, clock.span(n), n, batch)
                    rows.append((f"ingestTelemetry, batches of {batch:,}", n, rate,
                                 copy_rates[n]))
                for n in args.bulk:
                    for kind in ("ndjson", "csv"):
                        rate = await bulk(http, key, devices, clock.span(n), n, kind)
                        rows.append((f"POST /ingest {kind.upper()}", n, rate, copy_rates[n]))
                peak = server.rss_kib("VmHWM")
    lines = [
        f"## Ingest ({datetime.now(UTC):%Y-%m-%d}, bench/ingest.py)", "",
        f"Machine: {machine()}. {DEVICES} devices; every path writes fresh readings "
        "(no duplicates); raw COPY is asyncpg binary COPY straight into `readings`, in the "
        "same run, on the same table.", "",
        "| path | readings | readings/s | raw COPY readings/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {name} | {n:,} | {rate:,.0f} | {copy:,.0f} | {rate / copy:.0%} |"
          for name, n, rate, copy in rows),
        "", f"Gateway RSS: {idle_rss / 1024:.0f} MiB idle, peak {peak / 1024:.0f} MiB "
        "over the whole run.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutation-readings", type=int, default=100_000)
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
