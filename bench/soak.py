"""Soak: sustained mixed load on one gateway process; errors, latency and memory over time.

    .venv/bin/python bench/soak.py [--minutes 10] [--warmup 1] [--interval 60] [--clients 32]
        [--subscribers 8] [--first 100] [--tracemalloc] [--json PATH] [--write]

Starts the stores (bench/_stack.py: an embedded devstack, or the IOTSPHERE_* stores when all
four are set), seeds the demo fleet (120 devices, 24 h of one-minute telemetry) and serves
the gateway as `iotsphere serve` in its own process on 127.0.0.1. Then, for `--minutes`:

- `--clients` minus `--subscribers` HTTP clients (24 of 32) each send request after request,
  no pause, a kind drawn per request: the DASHBOARD query of bench/queries.py (`first: 100`)
  30%, updateShadow of reported 25% and of desired 15%, updateDevice (a metadata patch) 15%,
  ingestTelemetry of 5 fresh readings 15%, on random ACTIVE devices. Any non-200, GraphQL
  error, transport error, rejected reading or short page is an error.
- `--subscribers` WebSocket clients (graphql-transport-ws) hold a `shadowChanged`
  subscription: half of them the whole tenant, half a slice of the devices. They count the
  UPDATED events and their lag (see bench/_soak_load.py); a socket that ends is an error and
  reconnects. After the load stops, every subscriber must reach each watched device's final
  version (read back through the API) within 15 s.

Per interval (`--interval`, 60 s) it reports requests/s by kind, p50/p99/max latency, errors,
events and their lag, the gateway's RSS and CPU, and the CPU that other processes used on
this shared machine. The first `--warmup` minutes are warm-up: RSS growth is measured from
their end to the end of the run (aim: at most 10%). `--tracemalloc` runs the gateway under a
launcher that traces its allocations and dumps a snapshot at the end of the warm-up and at
the end; the report then lists what grew (it slows the gateway down: only to investigate).
The load average at the start and the end is recorded: other work on the machine makes the
latencies noisy; the errors and the RSS growth are the results. `--json` writes every number;
`--write` appends the Markdown section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/soak.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import _soak_report  # noqa: E402
from bench._cli import stop_on_signals  # noqa: E402
from bench._procs import (  # noqa: E402
    cpu_seconds,
    load_average,
    machine_busy_seconds,
    stack_pids,
)
from bench._soak_load import (  # noqa: E402
    HttpClient,
    Recorder,
    Subscriber,
    converge,
    final_versions,
    stop_all,
)
from bench._stack import (  # noqa: E402
    BenchError,
    Seeded,
    Server,
    Stack,
    append_results,
    seed_demo,
    stack_up,
)

CONVERGE_TIMEOUT = 15.0
DRAIN_TIMEOUT = 90.0  # the longest a request in flight when the load stops may take
# `iotsphere serve` with its allocations traced; SIGUSR2 dumps a snapshot into
# $SOAK_TRACEMALLOC_DIR. Instrumentation only: the gateway's code is unchanged.
TRACEMALLOC_LAUNCHER = """
import os, signal, sys, tracemalloc
tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "12")))
_dumps = [0]
def _dump(signum, frame):
    _dumps[0] += 1
    path = os.path.join(os.environ["SOAK_TRACEMALLOC_DIR"], f"snapshot-{_dumps[0]}.pickle")
    tracemalloc.take_snapshot().dump(path)
    current, peak = tracemalloc.get_traced_memory()
    print(f"SOAK-TRACEMALLOC {path} {current} {peak}", file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR2, _dump)
from gateway.runtime.cli import main
sys.exit(main())
"""


@dataclass
class Snapshot:
    """Counters at an interval's boundary."""

    at: float  # s since the load started
    rss_kib: int
    hwm_kib: int
    gateway_cpu: float
    client_cpu: float
    postgres_cpu: float
    valkey_cpu: float
    machine_busy: float
    load1: float


def snapshot(server: Server, stack: Stack, started: float) -> Snapshot:
    memory = server.memory()
    return Snapshot(
        time.monotonic() - started, memory.get("VmRSS", 0), memory.get("VmHWM", 0),
        server.cpu_seconds(), time.process_time(),
        sum(cpu_seconds(p) for p in stack_pids(stack.data_dir, "postgres")),
        sum(cpu_seconds(p) for p in stack_pids(stack.data_dir, "valkey")),
        machine_busy_seconds(), load_average()[0])


@dataclass
class Outcome:
    recorder: Recorder
    snapshots: list[Snapshot]
    subscribers: list[Subscriber]
    converge_s: float = 0.0
    behind: dict[int, list[str]] = field(default_factory=dict)
    rss_series: list[int] = field(default_factory=list)  # KiB, every 5 s
    tracemalloc_dumps: list[Path] = field(default_factory=list)


async def run_load(server: Server, stack: Stack, seeded: Seeded, args: argparse.Namespace
                   ) -> Outcome:
    intervals = round(args.minutes * 60 / args.interval)
    warm = round(args.warmup * 60 / args.interval)
    rec = Recorder(time.monotonic(), args.interval)
    headers = {"Authorization": f"Bearer {seeded.key}", "Content-Type": "application/json"}
    http_clients = args.clients - args.subscribers
    limits = httpx.Limits(max_connections=http_clients + 2,
                          max_keepalive_connections=http_clients + 2)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60.0,
                                 limits=limits, trust_env=False) as http:
        active = seeded.active
        slices = max(1, args.subscribers // 2)
        subs = [Subscriber(n, server.ws_url, seeded.key,
                           None if n % 2 == 0 else active[n // 2::slices], rec)
                for n in range(args.subscribers)]
        out = Outcome(rec, [], subs)
        stop = asyncio.Event()
        rec.started = time.monotonic()
        sub_tasks = [asyncio.create_task(s.run()) for s in subs]
        out.snapshots.append(snapshot(server, stack, rec.started))
        clients = [HttpClient(n, http, active, args.first, rec) for n in range(http_clients)]
        client_tasks = [asyncio.create_task(c.run(stop)) for c in clients]
        rss_task = asyncio.create_task(_sample_rss(server, out.rss_series))
        try:
            for b in range(intervals):
                await asyncio.sleep(max(0.0, rec.started + (b + 1) * args.interval
                                        - time.monotonic()))
                out.snapshots.append(snapshot(server, stack, rec.started))
                if not server.alive():
                    raise BenchError(f"the gateway died; log:\n{server.tail()}")
                row = _soak_report.interval_row(b, rec, out.snapshots, warm)
                print(row, file=sys.stderr, flush=True)
                if args.tracemalloc and b + 1 in (warm, intervals):
                    out.tracemalloc_dumps.append(await _dump(server, len(out.tracemalloc_dumps)))
            stop.set()
            _done, pending = await asyncio.wait(client_tasks, timeout=DRAIN_TIMEOUT)
            await stop_all(list(pending))
            final = await final_versions(http)
            out.converge_s, out.behind = await converge(subs, final, CONVERGE_TIMEOUT)
        finally:
            stop.set()
            rss_task.cancel()
            for s in subs:
                s.closing = True
            await stop_all([*client_tasks, *sub_tasks, rss_task])
    return out


async def _sample_rss(server: Server, series: list[int]) -> None:
    for _ in range(1_000_000):  # bounded; cancelled when the run ends
        series.append(server.rss_kib())
        await asyncio.sleep(5.0)


async def _dump(server: Server, done: int) -> Path:
    """Has the traced gateway dump a tracemalloc snapshot; waits for it (it stops the
    gateway's event loop for a few seconds)."""
    os.kill(server.pid, signal.SIGUSR2)
    for _ in range(1200):
        log = server.log_path.read_text(errors="replace")  # access log lines come between
        lines = [line for line in log.splitlines() if line.startswith("SOAK-TRACEMALLOC ")]
        if len(lines) > done:
            return Path(lines[-1].split(" ")[1])
        await asyncio.sleep(0.1)
    raise BenchError("the gateway wrote no tracemalloc snapshot within 120 s")


def tracemalloc_growth(dumps: list[Path], top: int = 15) -> list[str]:
    """What grew between the two snapshots, by line, and the three largest by traceback."""
    if len(dumps) < 2:
        return []
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
              tracemalloc.Filter(False, "<unknown>")]
    first = tracemalloc.Snapshot.load(str(dumps[0])).filter_traces(ignore)
    last = tracemalloc.Snapshot.load(str(dumps[-1])).filter_traces(ignore)
    total = [sum(t.size for t in snap.traces) / 2**20 for snap in (first, last)]
    lines = [f"traced Python memory: {total[0]:,.1f} MiB at the end of the warm-up, "
             f"{total[1]:,.1f} MiB at the end"]
    lines += [f"{s.size_diff / 1024:+,.0f} KiB ({s.count_diff:+,} blocks), now "
              f"{s.size / 1024:,.0f} KiB: {s.traceback[0]}"
              for s in last.compare_to(first, "lineno")[:top]]
    for stat in last.compare_to(first, "traceback")[:3]:
        lines.append(f"traceback of {stat.size_diff / 1024:+,.0f} KiB:")
        lines += [f"    {frame}" for frame in stat.traceback.format()[-16:]]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="length of the run, warm-up included (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="minutes of warm-up before RSS growth counts (default 1)")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="seconds per row of the report (default 60)")
    parser.add_argument("--clients", type=int, default=32, help="all clients (default 32)")
    parser.add_argument("--subscribers", type=int, default=8,
                        help="of the clients, WebSocket subscribers (default 8)")
    parser.add_argument("--devices", type=int, default=120, help="demo devices (default 120)")
    parser.add_argument("--hours", type=float, default=24.0,
                        help="hours of one-minute telemetry to seed (default 24)")
    parser.add_argument("--first", type=int, default=100,
                        help="page size of the dashboard query (default 100)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the gateway's allocations and report what grew")
    parser.add_argument("--json", type=Path, help="write every number here as JSON")
    parser.add_argument("--write", action="store_true",
                        help="append the Markdown section to bench/RESULTS.md")
    args = parser.parse_args(argv)
    for name in ("minutes", "interval", "clients", "devices", "hours", "first"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0")
    if not 0 <= args.subscribers < args.clients:
        parser.error("--subscribers must be >= 0 and less than --clients")
    steps = args.minutes * 60 / args.interval
    warm = args.warmup * 60 / args.interval
    if abs(steps - round(steps)) > 1e-6 or abs(warm - round(warm)) > 1e-6:
        parser.error("--minutes and --warmup must be whole numbers of intervals")
    if not 0 < round(warm) < round(steps):
        parser.error("the warm-up must be at least one interval and shorter than the run")
    return args



def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency of uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    log_dir = Path(tempfile.mkdtemp(prefix="iotsphere-soak-"))
    keep = args.tracemalloc
    load_start = load_average()
    try:
        with stack_up(env_stores=True) as stack:
            print("seeding...", file=sys.stderr, flush=True)
            seeded = _run(seed_demo(stack.settings, "soak", args.devices, args.hours))
            server = Server(stack, log_dir / "server.log")
            if args.tracemalloc:
                server.launcher = [sys.executable, "-c", TRACEMALLOC_LAUNCHER]
                server.env["SOAK_TRACEMALLOC_DIR"] = str(log_dir)
            with server:
                print(f"gateway pid {server.pid} at {server.url}; {args.clients} clients for "
                      f"{args.minutes:g} min", file=sys.stderr, flush=True)
                try:
                    outcome = _run(run_load(server, stack, seeded, args))
                except BaseException:
                    keep = True
                    raise
                exit_code = server.stop()
            findings = server.log_findings()
            load_end = load_average()
            summary = _soak_report.summarize(outcome, args, findings, exit_code,
                                             load_start, load_end)
            summary["tracemalloc"] = tracemalloc_growth(outcome.tracemalloc_dumps)
            section = _soak_report.markdown(outcome, args, stack, seeded, summary)
        print(section)
        if args.json:
            args.json.write_text(orjson.dumps({
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": summary,
                "intervals": _soak_report.interval_dicts(outcome, args),
                "snapshots": [asdict(s) for s in outcome.snapshots],
            }, option=orjson.OPT_INDENT_2).decode())
        if args.write:
            append_results(section)
            print("appended to bench/RESULTS.md", file=sys.stderr)
        if findings[0] or summary["errors"]:
            keep = True
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(f"logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
