"""bench/fanout.py's scale-out parts: shadows on a local Valkey Cluster, a writer that
follows a failover, a primary killed mid-run, and the report per gateway.

- ``write_cluster()``: the same update script as the single-Valkey writer (one HSET per
  update), sent with EVAL (a promoted replica has no script cache: EVALSHA would fail with
  NOSCRIPT after a failover) through redis-py's cluster client, which routes each update to
  the primary of its slot and re-reads the slot map after a refused connection. Updates
  refused while a primary is down are counted and dropped (the next round-robin turn of
  the device writes it again); the writer keeps its schedule.
- ``fail_over()``: SIGKILLs the primary that holds the first device's slot (so watched
  devices lose their node) ``at`` seconds after the writer starts, and times how long its
  replica takes to report itself a primary.
- ``gateway_table()``: per gateway and overall, events, latency, convergence, versions
  going backwards, extra SNAPSHOTs and the gateway's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from bench._fanout_stats import ms, pct
from gateway.runtime.valkey_cluster import LocalCluster
from gateway.stores.redis_client import connect_url
from gateway.stores.shadows import shadow_key

if TYPE_CHECKING:
    from bench.fanout import Outcome, Written


async def write_cluster(written: Written, redis_url: str, tenant_id: str, devices: list[str],
                        rate: float, seconds: float, script: str, tick: float) -> None:
    """Fills ``written`` (its ``errors`` are updates refused, e.g. while a primary is down)."""
    keys = [shadow_key(UUID(tenant_id), UUID(d)) for d in devices]
    client = connect_url(redis_url)
    out = written
    issued = 0
    try:
        cap = max(1, int(rate * 0.1))
        out.started = time.time()
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            due = int((time.monotonic() - start) * rate) + 1 - issued
            out.behind_max = max(out.behind_max, due)
            if due > 0:
                batch = min(due, cap)
                stamp = datetime.now(UTC).isoformat()
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for n in range(issued, issued + batch):
                            pipe.eval(script, 1, keys[n % len(keys)], n + 1, stamp)
                        results = await pipe.execute(raise_on_error=False)
                    failed: list[BaseException] = [
                        r for r in results if isinstance(r, Exception)]
                except Exception as refused:  # the whole batch refused: a node is down
                    failed = [refused] * batch
                out.writes += batch - len(failed)
                out.errors += len(failed)
                if failed and len(out.error_samples) < 5:
                    first = failed[0]
                    out.error_samples.append(
                        f"{time.time() - out.started:.1f}s: {type(first).__name__}: {first}"[:300])
                issued += batch
            await asyncio.sleep(tick)
        out.stopped = time.time()
    finally:
        await client.aclose()


async def read_finals(redis_url: str, tenant_id: str, devices: list[str]) -> dict[str, int]:
    """Every device's version in the shadow store, through the client its URL calls for."""
    client = connect_url(redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for device in devices:
                pipe.hget(shadow_key(UUID(tenant_id), UUID(device)), "version")
            versions = await pipe.execute()
    finally:
        await client.aclose()
    return {d: int(v) for d, v in zip(devices, versions, strict=True) if v is not None}


@dataclass
class Failover:
    at: float  # seconds after the writer's start
    victim_port: int = 0
    heir_port: int = 0
    victim_devices: list[str] = field(default_factory=list)
    killed_at: float = 0.0  # unix s
    promoted_after_s: float | None = None  # the replica a primary, seconds after the kill
    notes: list[str] = field(default_factory=list)


async def fail_over(cluster: LocalCluster, tenant_id: str, devices: list[str],
                    started: asyncio.Event, plan: Failover) -> None:
    """SIGKILLs the primary of ``devices[0]``'s slot ``plan.at`` s after ``started``."""
    keys = [shadow_key(UUID(tenant_id), UUID(d)) for d in devices]
    victim = cluster.primary_for(keys[0])
    heir = await asyncio.to_thread(cluster.replica_of, victim)
    plan.victim_port, plan.heir_port = victim.port, heir.port
    plan.victim_devices = [d for d, k in zip(devices, keys, strict=True)
                           if cluster.primary_for(k) is victim]
    await started.wait()
    await asyncio.sleep(plan.at)
    victim.process.kill()
    plan.killed_at = time.time()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            role = await asyncio.to_thread(heir.client().execute_command, "ROLE")
            if role[0] == b"master":
                plan.promoted_after_s = time.time() - plan.killed_at
                return
        await asyncio.sleep(0.1)
    plan.notes.append("the replica did not become a primary within 60 s")


def failover_line(plan: Failover, written: Written, reports: list[dict[str, Any]]) -> str:
    promoted = (f"its replica (port {plan.heir_port}) reported itself a primary "
                f"{plan.promoted_after_s:.1f} s later" if plan.promoted_after_s is not None
                else "**its replica never became a primary**")
    return (f"  - **Failover**: the primary on port {plan.victim_port}, holding "
            f"{len(plan.victim_devices)} of the watched devices' slots (the first device's "
            f"among them), was SIGKILLed {plan.killed_at - written.started:.1f} s after the "
            f"writer started; {promoted}. Updates refused meanwhile: {written.errors:,} "
            f"(dropped by the writer; each device's next turn writes it again)"
            + (f", e.g. {written.error_samples[:2]}" if written.error_samples else "")
            + f"; the writer, waiting on the cluster client's retries, fell at most "
            f"{written.behind_max:,} updates behind its schedule."
            + _split_by_node(plan, reports) + "".join(f" {n}." for n in plan.notes))


def _split_by_node(plan: Failover, reports: list[dict[str, Any]]) -> str:
    """The largest latency of the run for devices on the killed primary and on the others:
    whether a dead node held back changes of devices on the healthy ones."""
    on_victim = set(plan.victim_devices)
    worst = {True: 0.0, False: 0.0}
    for report in reports:
        for device, value in report.get("max_ms_by_device", {}).items():
            worst[device in on_victim] = max(worst[device in on_victim], value)
    return (f" Largest latency of the run: {ms(worst[True])} ms for devices on the killed "
            f"primary, {ms(worst[False])} ms for devices on the other two.")


def gateway_table(o: Outcome, gateways: int) -> str:
    """Per gateway (its subscribers: i mod ``gateways``) and overall."""
    head = ["gateway", "subscribers up", "events delivered", "p50 ms", "p99 ms", "max ms",
            "converged", "convergence p99 / max s", "backwards", "extra SNAPSHOTs",
            "gateway CPU s (connect / write / converge)", "gateway CPU % of write window",
            "RSS end MiB"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    wall = max(1e-9, o.cpu.get("write", {}).get("wall", 0.0))
    for g in [*range(gateways), None]:
        reports = [r for r in o.reports if g is None or r.get("gateway") == g]
        lat = sorted(o.latencies_all) if g is None else sorted(o.latencies_by_gateway.get(g, []))
        conv = sorted(ms for r in reports for ms in r["convergence_ms"])
        key = "gateway" if g is None else f"gateway:{g}"
        cpu = [o.cpu.get(phase, {}).get(key, 0.0) for phase in ("connect", "write", "converge")]
        rss = (o.memory.get("end", {}).get("VmRSS") if g is None
               else o.rss_end_by_gateway.get(g))

        def total(name: str, rs: list[dict[str, Any]] = reports) -> int:
            return sum(int(r.get(name, 0)) for r in rs)

        rows.append("| " + " | ".join([
            "all" if g is None else str(g),
            f"{total('connected'):,}",
            f"{total('events'):,}",
            ms(pct(lat, 50)), ms(pct(lat, 99)), ms(lat[-1] if lat else float("nan")),
            f"{total('converged'):,}/{total('connected'):,}",
            f"{pct(conv, 99) / 1e3:.2f} / {conv[-1] / 1e3:.2f}" if conv else "-",
            f"{total('backwards')}", f"{total('extra_snapshots'):,}",
            " / ".join(f"{c:.1f}" for c in cpu),
            f"{cpu[1] / wall * 100:.0f}%",
            f"{rss / 1024:.0f}" if rss else "-",
        ]) + " |")
    return "\n".join(rows)
