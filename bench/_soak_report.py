"""The numbers and the Markdown of bench/soak.py: one row per interval, and a summary."""

from __future__ import annotations

import argparse
import math
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bench._machine import machine_info
from bench._soak_load import MIX, Recorder, pct

if TYPE_CHECKING:
    from bench._stack import Seeded, Stack
    from bench.soak import Outcome, Snapshot

# Report columns: the kinds of request, the two shadow writes together.
GROUPS = {"dashboard": ("dashboard",), "updateShadow": ("shadowReported", "shadowDesired"),
          "updateDevice": ("updateDevice",), "ingestTelemetry": ("ingestTelemetry",)}
assert {k for kinds in GROUPS.values() for k in kinds} == set(MIX)


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def interval_stats(b: int, rec: Recorder, snaps: list[Snapshot], warm: int) -> dict[str, Any]:
    """Interval ``b`` (0-based) from its recorder bucket and the snapshots at its bounds."""
    bucket = rec.intervals.get(b)
    start, end = snaps[b], snaps[b + 1]
    seconds = max(1e-9, end.at - start.at)
    latencies = sorted(bucket.latencies) if bucket else []
    lags = sorted(bucket.lags) if bucket else []
    requests = bucket.requests if bucket else {}
    cpu = {
        "gateway": end.gateway_cpu - start.gateway_cpu,
        "client": end.client_cpu - start.client_cpu,
        "stores": (end.postgres_cpu - start.postgres_cpu) + (end.valkey_cpu - start.valkey_cpu),
    }
    others = max(0.0, end.machine_busy - start.machine_busy - sum(cpu.values()))
    return {
        "interval": b + 1, "from_s": round(start.at, 1), "to_s": round(end.at, 1),
        "warmup": b < warm,
        "requests": sum(requests.values()),
        "rps": sum(requests.values()) / seconds,
        "rps_by_kind": {g: sum(requests.get(k, 0) for k in ks) / seconds
                        for g, ks in GROUPS.items()},
        "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
        "max_ms": latencies[-1] if latencies else math.nan,
        "p50_ms_by_kind": {k: pct(sorted(v), 50) for k, v in (bucket.by_kind if bucket
                                                               else {}).items()},
        "errors": bucket.errors if bucket else 0,
        "events": bucket.events if bucket else 0,
        "lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99),
        "lag_max_ms": lags[-1] if lags else math.nan,
        "duplicates": bucket.duplicates if bucket else 0,
        "rss_mib": end.rss_kib / 1024,
        "gateway_cpu_pct": cpu["gateway"] / seconds * 100,
        "client_cpu_pct": cpu["client"] / seconds * 100,
        "stores_cpu_pct": cpu["stores"] / seconds * 100,
        "others_cpus": others / seconds,
        "load1": end.load1,
    }


def interval_dicts(outcome: Outcome, args: argparse.Namespace) -> list[dict[str, Any]]:
    warm = round(args.warmup * 60 / args.interval)
    return [interval_stats(b, outcome.recorder, outcome.snapshots, warm)
            for b in range(len(outcome.snapshots) - 1)]


def interval_row(b: int, rec: Recorder, snaps: list[Snapshot], warm: int) -> str:
    """A progress line while the soak runs."""
    s = interval_stats(b, rec, snaps, warm)
    return (f"  [{s['to_s']:5.0f}s] {s['rps']:.1f} req/s, p50 {_ms(s['p50_ms'])} ms, "
            f"p99 {_ms(s['p99_ms'])} ms, errors {s['errors']}, events {s['events']}, "
            f"RSS {s['rss_mib']:.0f} MiB, gateway CPU {s['gateway_cpu_pct']:.0f}%, "
            f"others {s['others_cpus']:.2f} CPUs, load {s['load1']:.2f}")


def summarize(outcome: Outcome, args: argparse.Namespace, findings: tuple[int, list[str]],
              exit_code: int | None, load_start: tuple[float, float, float],
              load_end: tuple[float, float, float]) -> dict[str, Any]:
    rec, snaps, subs = outcome.recorder, outcome.snapshots, outcome.subscribers
    warm = round(args.warmup * 60 / args.interval)
    measured = [rec.intervals[b] for b in sorted(rec.intervals) if b >= warm]
    everything = list(rec.intervals.values())
    after = sorted(ms for i in measured for ms in i.latencies)
    lags = sorted(ms for i in everything for ms in i.lags)
    by_kind: dict[str, int] = {}
    for i in everything:
        for kind, n in i.requests.items():
            by_kind[kind] = by_kind.get(kind, 0) + n
    rss_start, rss_end = snaps[warm].rss_kib, snaps[-1].rss_kib
    warm_at = snaps[warm].at
    series = outcome.rss_series[int(warm_at // 5):]  # sampled every 5 s from the start
    return {
        "requests": sum(by_kind.values()), "requests_by_kind": by_kind,
        "rps": sum(by_kind.values()) / max(1e-9, snaps[-1].at),
        "after_warmup_p50_ms": pct(after, 50), "after_warmup_p99_ms": pct(after, 99),
        "after_warmup_max_ms": after[-1] if after else math.nan,
        "errors": sum(i.errors for i in everything),
        "error_samples": rec.error_samples,
        "duplicates": sum(i.duplicates for i in everything),
        "events": sum(i.events for i in everything),
        "lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99),
        "lag_max_ms": lags[-1] if lags else math.nan,
        "subscriptions_opened": sum(s.connects for s in subs),
        "snapshots": sum(s.snapshots for s in subs),
        "backwards": sum(s.backwards for s in subs),
        "converged": len(subs) - len(outcome.behind), "subscribers": len(subs),
        "converge_s": outcome.converge_s,
        "behind": {str(n): missed[:5] for n, missed in outcome.behind.items()},
        "rss_start_mib": rss_start / 1024, "rss_end_mib": rss_end / 1024,
        "rss_growth_pct": (rss_end - rss_start) / rss_start * 100 if rss_start else math.nan,
        "rss_min_mib": min(series, default=0) / 1024, "rss_max_mib": max(series, default=0) / 1024,
        "rss_before_load_mib": snaps[0].rss_kib / 1024, "vmhwm_mib": snaps[-1].hwm_kib / 1024,
        "server_log_findings": findings[0], "server_log_first": findings[1][:10],
        "server_exit_code": exit_code,
        "load_start": load_start, "load_end": load_end,
    }


def _table(outcome: Outcome, args: argparse.Namespace) -> list[str]:
    head = ["min", "req/s", "dashboard/s", "updateShadow/s", "updateDevice/s",
            "ingestTelemetry/s", "p50 ms", "p99 ms", "max ms", "errors", "sub events",
            "lag p50 / p99 ms", "gateway RSS MiB", "gateway CPU", "others' CPUs", "load 1m"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for s in interval_dicts(outcome, args):
        label = f"{s['to_s'] / 60:g}" + (" (warm-up)" if s["warmup"] else "")
        kinds = s["rps_by_kind"]
        rows.append("| " + " | ".join([
            label, f"{s['rps']:.1f}", *(f"{kinds[g]:.1f}" for g in GROUPS),
            _ms(s["p50_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]), str(s["errors"]),
            f"{s['events']:,}", f"{_ms(s['lag_p50_ms'])} / {_ms(s['lag_p99_ms'])}",
            f"{s['rss_mib']:.0f}", f"{s['gateway_cpu_pct']:.0f}%", f"{s['others_cpus']:.2f}",
            f"{s['load1']:.2f}",
        ]) + " |")
    return rows


def markdown(outcome: Outcome, args: argparse.Namespace, stack: Stack, seeded: Seeded,
             summary: dict[str, Any]) -> str:
    info = machine_info(f"{seeded.pg_version}; {seeded.valkey_version}", ())
    s = summary
    http = args.clients - args.subscribers
    loads = " / ".join(f"{x:.2f}" for x in s["load_start"])
    loads_end = " / ".join(f"{x:.2f}" for x in s["load_end"])
    lines = [
        f"## Soak ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, bench/soak.py): "
        f"{args.clients} clients, {args.minutes:g} min",
        "",
        f"Machine: {info['CPU']}, {info['Cores']}, {info['RAM']}, {info['Python']}; "
        f"stores: {stack.how} ({info['Stores']}); code {info['Code']}. **Shared machine**: "
        f"load average (1/5/15 min) {loads} at the start and {loads_end} at the end, from "
        f"other sessions' test suites besides this run; the `others' CPUs` column is CPU "
        f"time used by processes that are not this benchmark's, per second. Latencies are "
        f"noisy; the errors and the RSS growth are the results.",
        "",
        *_table(outcome, args),
        "",
        f"- Load: {http} HTTP clients back to back (no pause) over keep-alive connections, "
        f"each request's kind drawn at random: dashboard (`DASHBOARD`, `first: "
        f"{args.first}`) 30%, updateShadow reported 25% / desired 15%, updateDevice "
        f"(metadata patch) 15%, ingestTelemetry (5 readings) 15%; {args.subscribers} "
        f"WebSocket subscribers on `shadowChanged` (half the whole tenant, half a slice of "
        f"the ACTIVE devices). One `iotsphere serve` process (log level WARNING). "
        f"{len(seeded.devices)} demo devices, {seeded.readings:,} seeded readings.",
        f"- **Errors: {s['errors']}** over {s['requests']:,} requests "
        f"({s['rps']:.1f} req/s on average: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(s["requests_by_kind"].items()))
        + f"); duplicate readings (not errors): {s['duplicates']}."
        + (" First errors: " + "; ".join(f"`{e}`" for e in s["error_samples"][:5])
           if s["error_samples"] else ""),
        f"- **Gateway RSS: {s['rss_start_mib']:.0f} MiB after the warm-up, "
        f"{s['rss_end_mib']:.0f} MiB at the end: {s['rss_growth_pct']:+.1f}%** "
        f"(aim: at most +10%); {s['rss_before_load_mib']:.0f} MiB before the load; between "
        f"{s['rss_min_mib']:.0f} and {s['rss_max_mib']:.0f} MiB after the warm-up (every 5 s); "
        f"peak (VmHWM) {s['vmhwm_mib']:.0f} MiB.",
        f"- Latency after the warm-up, every kind: p50 {_ms(s['after_warmup_p50_ms'])} ms, "
        f"p99 {_ms(s['after_warmup_p99_ms'])} ms, max {_ms(s['after_warmup_max_ms'])} ms "
        f"(closed loop: {http} requests always in flight on one process, so latency is "
        f"mostly queueing behind the dashboard queries).",
        f"- Subscriptions: {s['events']:,} UPDATED events; lag (receipt minus the write's "
        f"send) p50 {_ms(s['lag_p50_ms'])} ms, p99 {_ms(s['lag_p99_ms'])} ms, max "
        f"{_ms(s['lag_max_ms'])} ms; {s['subscriptions_opened']} subscriptions opened for "
        f"{s['subscribers']} subscribers (more means reconnects); versions going backwards: "
        f"{s['backwards']}; {s['converged']}/{s['subscribers']} subscribers on every watched "
        f"device's final version {s['converge_s']:.1f} s after the load stopped"
        + (f", behind: {s['behind']}" if s["behind"] else "") + ".",
        f"- Gateway log: {s['server_log_findings']} line(s) at WARNING or above"
        + (": " + "; ".join(f"`{x}`" for x in s["server_log_first"][:5])
           if s["server_log_first"] else "")
        + f"; exit code {s['server_exit_code']} after SIGINT. {os.cpu_count()} CPUs shared by "
        f"the gateway, PostgreSQL, Valkey and the clients (one process, uvloop).",
    ]
    if s.get("tracemalloc"):
        lines += ["", "tracemalloc, end of the run against end of the warm-up (top lines):",
                  "", "```", *s["tracemalloc"], "```"]
    return "\n".join(lines)
