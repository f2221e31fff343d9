"""Dashboard benchmark: the bench/queries.py DASHBOARD query over real HTTP.

    .venv/bin/python bench/dashboard.py [--devices 120] [--hours 24] [--requests 200]
        [--duration 60] [--concurrency 1,8] [--query dashboard|subset]
        [--execution planned,unplanned] [--rounds 1] [--client httpx|autocannon]
        [--profile] [--write]

--execution runs the load once per execution mode (IOTSPHERE_PLANNED_EXECUTION true or
false, a fresh server each), interleaved for --rounds rounds, and reports each mode and
their ratio: planned and unplanned measured in the same run on the same data.

--client autocannon loads each level with autocannon from one Node process for --duration
seconds (bench/postgraphile's packages, installed by npm on first use; the load generator of
bench/vs_postgraphile.py and of issue 13's measurements) instead of httpx in the benchmark
process, whose own CPU (~2-3 ms a 130 KB response) is inside every latency it reports.

Starts an embedded devstack in a temp dir (or uses the stores named by IOTSPHERE_REGISTRY_DSN,
IOTSPHERE_ASSETS_DSN, IOTSPHERE_TELEMETRY_DSN and IOTSPHERE_REDIS_URL when all four are set),
migrates, creates a tenant and an admin key, seeds a fleet with gateway.runtime.demo.seed_fleet, and
serves the gateway in a separate process on a free 127.0.0.1 port (all three by
bench/_stack.py: `iotsphere serve`, with --workers N its supervisor and N workers), so client
and server share no GIL and the numbers include HTTP. Each concurrency level warms up, then runs
until its request count or its time limit is reached, whichever comes first; every response
must be 200 with no errors and `first` edges. It prints a Markdown table (latency percentiles,
requests/s, CPU per request of each process), the store round trips per request
(extensions.storeCalls) and the response size; --write appends a dated section to
bench/RESULTS.md. --profile also times one request's phases in-process (store waits, parse,
validate, execute, JSON encoding), runs EXPLAIN ANALYZE on each SQL query it made, and
samples it with pyinstrument when installed. Everything started is stopped on exit, Ctrl-C
or failure. With stores from the environment, the benchmark's tenant (bench-<time>-<pid>)
and the fleet seeded for it stay in them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/dashboard.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import _machine  # noqa: E402
from bench._cli import positive, stop_on_signals  # noqa: E402
from bench._postgraphile import autocannon, ensure_node_modules, package_version  # noqa: E402
from bench._procs import (  # noqa: E402
    cpu_seconds,
    machine_busy_seconds,
    stack_pids,
    with_descendants,
)
from bench._stack import (  # noqa: E402
    RESULTS,
    BenchError,
    Seeded,
    Server,
    Stack,
    append_results,
    dated_section,
    seed_demo,
    stack_up,
)
from bench.queries import QUERIES  # noqa: E402
from gateway.settings import Settings  # noqa: E402

# ------------------------------------------------------------------------------ CPU

@dataclass
class CpuMeter:
    server_pid: int
    data_dir: Path | None
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        gateway = sum(cpu_seconds(p) for p in with_descendants(self.server_pid))
        out = {"gateway": gateway, "client": time.process_time(),
               "machine": machine_busy_seconds()}
        if self.data_dir is not None:
            for exe in ("postgres", "valkey"):
                out[exe] = sum(cpu_seconds(p) for p in stack_pids(self.data_dir, exe))
        return out

    def __enter__(self) -> CpuMeter:
        self.start = self.snapshot()
        return self

    def __exit__(self, *exc: Any) -> None:
        end = self.snapshot()
        # Backends that exit mid-level would make this negative: clamp.
        self.used = {k: max(0.0, end[k] - self.start.get(k, 0.0)) for k in end}


# ------------------------------------------------------------------------------ load

@dataclass
class Level:
    concurrency: int
    latencies: list[float]
    elapsed: float
    cpu: dict[str, float]
    stopped_by: str

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1e3  # nearest rank

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed

    @property
    def others_cores(self) -> float:
        """CPUs busy with processes that are not ours during the level: noise."""
        ours = sum(v for k, v in self.cpu.items() if k != "machine")
        return max(0.0, self.cpu.get("machine", 0.0) - ours) / self.elapsed

    def cpu_ms(self, process: str) -> float | None:
        if process not in self.cpu:
            return None
        return self.cpu[process] / len(self.latencies) * 1e3


def check_response(status: int, content: bytes, expected_edges: int) -> dict[str, Any]:
    if status != 200:
        raise BenchError(f"HTTP {status}: {content[:500]!r}")
    body: dict[str, Any] = orjson.loads(content)
    if body.get("errors"):
        raise BenchError(f"GraphQL errors: {orjson.dumps(body['errors'])[:1000]!r}")
    edges = (body.get("data") or {}).get("devices", {}).get("edges")
    if edges is None or len(edges) != expected_edges:
        raise BenchError(f"expected {expected_edges} edges, got {len(edges or [])}")
    return body


async def run_level(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], concurrency: int,
    *, requests: int, seconds: float, warmup: int, expected: int, meter: CpuMeter,
) -> Level:
    async def send() -> float:
        started = time.perf_counter()
        response = await client.post("/graphql", content=body, headers=headers)
        elapsed = time.perf_counter() - started
        check_response(response.status_code, response.content, expected)
        return elapsed

    warm = {"left": warmup}

    async def warm_worker() -> None:
        while warm["left"] > 0:
            warm["left"] -= 1
            await send()

    await asyncio.gather(*(warm_worker() for _ in range(concurrency)))

    latencies: list[float] = []
    issued = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            latencies.append(await send())

    with meter:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Level(concurrency, latencies, elapsed, meter.used,
                 "request count" if issued >= requests else "time limit")


def autocannon_level(url: str, body: bytes, headers: dict[str, str], concurrency: int, *,
                     seconds: float, warmup: float, size: int, meter: CpuMeter) -> Level:
    """One level under autocannon. Its responses cannot each be parsed here: every one must
    be a 200 within 5% of ``size`` (a checked answer's), which an error or a missing store's
    part would not be; the client's CPU is the Node process's."""
    autocannon(url, body, headers, concurrency, warmup)
    with meter:
        run = autocannon(url, body, headers, concurrency, seconds)
    meter.used["client"] = run.client_cpu_ms / 1e3
    bad = {status: n for status, n in run.statuses.items() if status != "200"}
    off = {int(b): n for b, n in run.sizes.items() if abs(int(b) - size) > size * 0.05}
    if bad or run.errors or run.timeouts or off or not run.latencies:
        raise BenchError(f"autocannon at c{concurrency}: statuses {run.statuses}, errors "
                         f"{run.errors}, timeouts {run.timeouts}, response sizes {off or '-'} "
                         f"against {size} bytes checked")
    return Level(concurrency, [ms / 1e3 for ms in run.latencies], run.seconds, meter.used,
                 "time limit")


def _autocannon_warmup(args: argparse.Namespace) -> float:
    """Seconds of warm-up per level under autocannon (which runs for a time, not a count):
    --warmup's request count over 20, at least a second."""
    return max(1.0, args.warmup / 20)


@dataclass
class Outcome:
    levels: list[Level]
    store_calls: dict[str, int]
    response_bytes: int


async def run_load(
    url: str, key: str, args: argparse.Namespace, expected: int, meter: CpuMeter
) -> Outcome:
    body = orjson.dumps({"query": QUERIES[args.query], "variables": {"first": args.first}})
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    top = max(args.concurrency)
    limits = httpx.Limits(max_connections=top, max_keepalive_connections=top)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0,
                                 trust_env=False) as client:
        # The untraced request first: it verifies the API key against the registry,
        # which the measured requests find in the key cache; the traced one then counts
        # the round trips every measured request makes (the first request made one more).
        plain = await client.post("/graphql", content=body, headers=headers)
        check_response(plain.status_code, plain.content, expected)
        traced = await client.post("/graphql", content=body,
                                   headers={**headers, "x-iotsphere-trace": "1"})
        calls = check_response(traced.status_code, traced.content, expected) \
            .get("extensions", {}).get("storeCalls")
        if not calls:
            raise BenchError("no extensions.storeCalls in a traced response")
        levels = []
        for concurrency in args.concurrency:
            if args.client == "autocannon":
                level = autocannon_level(
                    f"{url}/graphql", body, headers, concurrency, seconds=args.duration,
                    warmup=_autocannon_warmup(args), size=len(plain.content), meter=meter)
                # The level's answers were only sized: one more, checked whole.
                after = await client.post("/graphql", content=body, headers=headers)
                check_response(after.status_code, after.content, expected)
            else:
                level = await run_level(
                    client, body, headers, concurrency, requests=args.requests,
                    seconds=args.duration, warmup=args.warmup, expected=expected,
                    meter=meter,
                )
            levels.append(level)
            print(f"  concurrency {concurrency}: {len(level.latencies)} requests in "
                  f"{level.elapsed:.1f}s, p50 {level.pct(50):.1f} ms", file=sys.stderr)
    return Outcome(levels, calls, len(plain.content))


# ------------------------------------------------------------------------------ report

def machine_info(seeded: Seeded) -> dict[str, str]:
    return _machine.machine_info(
        f"{seeded.pg_version}; {seeded.valkey_version}",
        ("strawberry-graphql", "graphql-core", "starlette", "uvicorn", "uvloop", "httptools",
        "asyncpg", "redis", "aiodataloader"),
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def results_table(outcome: Outcome) -> str:
    has_stack = "postgres" in outcome.levels[0].cpu
    head = ["concurrency", "requests", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s",
            "gateway CPU ms/req"]
    if has_stack:
        head += ["PostgreSQL CPU ms/req", "Valkey CPU ms/req"]
    head += ["client CPU ms/req", "other processes (CPUs busy)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for lv in outcome.levels:
        cells = [str(lv.concurrency), str(len(lv.latencies)), _fmt(min(lv.latencies) * 1e3),
                 _fmt(lv.pct(50)), _fmt(lv.pct(90)),
                 _fmt(lv.pct(99)), _fmt(max(lv.latencies) * 1e3), f"{lv.rps:.1f}",
                 _fmt(lv.cpu_ms("gateway"))]
        if has_stack:
            cells += [_fmt(lv.cpu_ms("postgres")), _fmt(lv.cpu_ms("valkey"))]
        cells += [_fmt(lv.cpu_ms("client")), f"{lv.others_cores:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def profile_section(profile: Any) -> str:
    if profile is None:
        return ""
    med = profile.median_ms
    total = med("total")
    lines = [
        f"In-process profile: the same request straight through ASGI (no HTTP, default "
        f"asyncio loop), {profile.requests} requests, medians in ms:",
        "",
        "| phase | ms | share |",
        "|---|---:|---:|",
    ]
    phases = [
        ("whole request", total),
        ("authentication (api-key lookup in the registry)", med("auth")),
        ("execution: Strawberry `schema.execute`, or a prepared query's run", med("execute")),
        ("&nbsp;&nbsp;parse the query", med("parse")),
        ("&nbsp;&nbsp;validate the query", med("validate")),
        ("&nbsp;&nbsp;event loop idle, waiting on the stores", med("idle_in_execute")),
        ("&nbsp;&nbsp;CPU: resolvers, dataloaders, driver decoding, graphql-core completion",
         med("execute_cpu")),
        ("JSON encoding of the response (`spec.respond`, `encode_json`)", med("encode")),
        ("the rest (Starlette, request parsing, context, response)", med("rest")),
        ("process CPU time during the request (all of the above but idle)", med("cpu")),
    ]
    for name, ms in phases:
        lines.append(f"| {name} | {ms:.2f} | {ms / total * 100:.0f}% |")
    if profile.alone:
        lines += ["", "Each store call of the request replayed alone from the gateway's pool "
                  "(wall ms over 7 runs: round trip + driver decoding), and PostgreSQL's "
                  "EXPLAIN ANALYZE of it (median of 5):", "",
                  "| call | alone, min ms | alone, median ms | planning ms | execution ms | rows |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, (fastest, median) in sorted(profile.alone.items()):
            plan = profile.explain.get(label)
            cells = [f"{plan[0]:.2f}", f"{plan[1]:.2f}", str(plan[2])] if plan else ["-"] * 3
            lines.append(f"| {label} | {fastest:.2f} | {median:.2f} | " + " | ".join(cells)
                         + " |")
    if profile.packages:
        total_s = sum(profile.packages.values())
        n = profile.pyinstrument_requests
        top = sorted(profile.packages.items(), key=lambda kv: -kv[1])[:14]
        lines += ["", f"pyinstrument self time by package ({n} requests; built-ins count for "
                  f"their caller; the profiler slows the request to "
                  f"{profile.pyinstrument_ms:.1f} ms, so read the shares):", "",
                  "| package | ms/req | share |", "|---|---:|---:|"]
        for name, secs in top:
            lines.append(f"| {name} | {secs / n * 1e3:.2f} | {secs / total_s * 100:.0f}% |")
    return "\n".join(lines)


def _workers(n: int) -> str:
    return "one process" if n == 1 else f"{n} worker processes"


def report(args: argparse.Namespace, stack: Stack, seeded: Seeded, outcome: Outcome,
           profile: Any) -> str:
    calls = outcome.store_calls
    lines = [
        results_table(outcome),
        "",
        f"- Query: `{args.query.upper()}` (bench/queries.py), `first: {args.first}`; "
        f"{len(seeded.devices)} devices, {args.hours:g} h of one-minute telemetry "
        f"({seeded.readings:,} readings); seeded in {seeded.seconds:.1f}s.",
        "- Store round trips per request (`extensions.storeCalls`): "
        + ", ".join(f"{k} {v}" for k, v in calls.items())
        + f" = {sum(calls.values())}.",
        f"- Response size: {outcome.response_bytes:,} bytes "
        f"({outcome.response_bytes / 1024:.1f} KiB, uncompressed JSON).",
        (f"- Per level: {_autocannon_warmup(args):g} s of warm-up, then {args.duration:g} s "
         "of load." if args.client == "autocannon" else
         f"- Per level: {args.warmup} warm-up requests, then up to {args.requests} requests or "
         f"{args.duration:g} s; stopped by: "
         + ", ".join(f"c{lv.concurrency} {lv.stopped_by}" for lv in outcome.levels) + "."),
        "- Server: "
        + ("`iotsphere serve` (uvicorn, uvloop + httptools, at IOTSPHERE_LOG_LEVEL=WARNING: "
           "no access log)"
           if args.workers == 1 else f"`iotsphere serve --workers {args.workers}` (a "
           "supervisor and its workers, each with its own SO_REUSEPORT socket; uvloop + "
           "httptools, no access log)")
        + ", stores: "
        f"{stack.how}; client: "
        + (f"autocannon {package_version('autocannon')} from one Node process (keep-alive "
           "connections = concurrency; latencies from its response callback)"
           if args.client == "autocannon" else
           "httpx.AsyncClient with keep-alive in the benchmark process")
        + "; "
        "all on 127.0.0.1. CPU columns are the processes' user+system time divided by "
        "requests; the last column is CPU time used meanwhile by processes that are not "
        "the benchmark's, per second: anything but ~0 means the numbers are disturbed"
        + (" (with external stores, their servers count as other processes)."
           if stack.data_dir is None else "."),
    ]
    section = profile_section(profile)
    if section:
        lines += ["", section]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main

def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,8, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels




_MODES = {"planned": "true", "unplanned": "false"}


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or any(m not in _MODES for m in modes):
        raise argparse.ArgumentTypeError(f"expected planned and/or unplanned, got {text!r}")
    return modes


def compare_modes(outcomes: dict[str, list[Outcome]]) -> str:
    """Per concurrency: each mode's median req/s and gateway CPU ms/request over its
    rounds, and planned / unplanned."""
    lines = ["| concurrency | mode | req/s | p50 ms | gateway CPU ms/req |",
             "|---:|---|---:|---:|---:|"]
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for mode, runs in outcomes.items():
        for index, level in enumerate(runs[0].levels):
            rps = _median([run.levels[index].rps for run in runs])
            p50 = _median([run.levels[index].pct(50) for run in runs])
            cpu = _median([run.levels[index].cpu_ms("gateway") or 0.0 for run in runs])
            medians[(mode, level.concurrency)] = (rps, cpu)
            lines.append(f"| {level.concurrency} | {mode} | {rps:.1f} | {p50:.1f} | {cpu:.1f} |")
    if {"planned", "unplanned"} <= set(outcomes):
        lines.append("")
        for (mode, concurrency), (rps, cpu) in medians.items():
            if mode != "planned":
                continue
            base_rps, base_cpu = medians[("unplanned", concurrency)]
            lines.append(f"- c{concurrency}: planned / unplanned req/s "
                         f"{rps / base_rps:.2f}x, CPU per request {cpu / base_cpu:.2f}x")
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=positive(int), default=120,
                        help="devices to seed (default 120, the demo's size)")
    parser.add_argument("--hours", type=positive(float), default=24.0,
                        help="hours of one-minute telemetry to seed (default 24)")
    parser.add_argument("--first", type=positive(int), default=100,
                        help="page size of the dashboard query (default 100)")
    parser.add_argument("--concurrency", type=_levels, default=[1, 8],
                        help="comma-separated levels (default 1,8)")
    parser.add_argument("--requests", type=positive(int), default=200,
                        help="measured requests per level (default 200)")
    parser.add_argument("--duration", type=positive(float), default=60.0,
                        help="time limit per level in seconds (default 60)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="warm-up requests per level (default 20)")
    parser.add_argument("--workers", type=positive(int), default=1,
                        help="uvicorn worker processes (default 1)")
    parser.add_argument("--query", choices=sorted(QUERIES), default="dashboard",
                        help="the dashboard, or the Postgres-only subset of issue 13")
    parser.add_argument("--execution", type=_modes, default=["planned"],
                        help="execution modes to run, e.g. planned,unplanned (interleaved)")
    parser.add_argument("--rounds", type=positive(int), default=1,
                        help="rounds of the execution modes, interleaved")
    parser.add_argument("--client", choices=("httpx", "autocannon"), default="httpx",
                        help="the load generator (default httpx; autocannon needs npm)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the request in-process (phases, EXPLAIN ANALYZE, "
                             "pyinstrument when installed)")
    parser.add_argument("--profile-requests", type=positive(int), default=50,
                        help="requests per profiling pass (default 50)")
    parser.add_argument("--profile-html", type=Path,
                        help="write pyinstrument's HTML report here (and a .txt beside it)")
    parser.add_argument("--write", action="store_true",
                        help=f"append a dated section to {RESULTS.relative_to(ROOT)}")
    return parser.parse_args(argv)



def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    expected = min(args.first, args.devices)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop what was started.
    stop_on_signals()
    try:
        if args.client == "autocannon":
            ensure_node_modules()
        with contextlib.ExitStack() as exits:
            print("starting stores...", file=sys.stderr)
            stack = exits.enter_context(stack_up(env_stores=True))
            settings = stack.settings
            print(f"seeding {args.devices} devices x {args.hours:g} h...", file=sys.stderr)
            seeded = asyncio.run(seed_demo(settings, "bench", args.devices, args.hours))
            log_dir = Path(tempfile.mkdtemp(prefix="iotsphere-bench-log-"))
            exits.callback(shutil.rmtree, log_dir, ignore_errors=True)
            outcomes: dict[str, list[Outcome]] = {mode: [] for mode in args.execution}
            for _round in range(args.rounds):
                for mode in args.execution:
                    server = Server(stack, log_dir / f"server-{mode}.log", workers=args.workers,
                                    env={"IOTSPHERE_PLANNED_EXECUTION": _MODES[mode]})
                    with server:
                        print(f"gateway ({mode}) up at {server.url} (pid {server.pid})",
                              file=sys.stderr)
                        meter = CpuMeter(server.pid, stack.data_dir)
                        try:
                            outcomes[mode].append(asyncio.run(
                                run_load(server.url, seeded.key, args, expected, meter)))
                        except (BenchError, httpx.HTTPError):
                            print(f"--- tail of the server log ---\n{server.tail()}",
                                  file=sys.stderr)
                            raise
            # The profile runs in-process, with every server stopped: the CPUs are its own.
            outcome = outcomes[args.execution[0]][-1]
            profile = None
            if args.profile:
                profile = asyncio.run(_profile(settings, seeded.key, args, expected))
            info = machine_info(seeded)
            body = report(args, stack, seeded, outcome, profile)
            if len(args.execution) > 1 or args.rounds > 1:
                body = (f"Execution modes ({args.rounds} interleaved rounds, medians):\n\n"
                        + compare_modes(outcomes) + f"\n\nLast round, {args.execution[0]}:\n\n"
                        + body)
            print("\n".join(f"{k}: {v}" for k, v in info.items()))
            print()
            print(body)
            if args.write:
                append_results(dated_section(
                    f"{args.query}, {args.devices} devices, {args.hours:g} h, first {args.first}, "
                    f"{_workers(args.workers)}"
                    + (", autocannon" if args.client == "autocannon" else ""), info, body))
                print(f"\nappended to {RESULTS}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


async def _profile(settings: Settings, key: str, args: argparse.Namespace, expected: int) -> Any:
    from bench._harness import profile_dashboard

    body = orjson.dumps({"query": QUERIES[args.query], "variables": {"first": args.first}})

    def check(status: int, content: bytes) -> None:
        check_response(status, content, expected)

    return await profile_dashboard(settings, key, body, requests=args.profile_requests,
                                   check=check, html=args.profile_html)


if __name__ == "__main__":
    sys.exit(main())
