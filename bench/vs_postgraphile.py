"""The gateway against PostGraphile v5 on the same data (issue 13's yardstick).

    .venv/bin/python bench/vs_postgraphile.py [--devices 120] [--first 100] [--seconds 20]
        [--warmup 5] [--rounds 3] [--concurrency 1,8] [--workers 1]
        [--gateway-env KEY=VAL]... [--variant KEY=VAL[,KEY=VAL...]]... [--write]

Starts the stores and seeds the demo fleet (bench/_stack.py, as bench/dashboard.py does),
copies the tenant's devices and assets into one new database on the same PostgreSQL server
(bench/_postgraphile.py), installs bench/postgraphile/ with `npm ci` when needed (PostGraphile
5, autocannon, Node 22 from npm) and serves both: the gateway as `iotsphere serve
[--workers N]`, PostGraphile with its amber preset on node:http, one process each
on 127.0.0.1. Before timing, both must answer the subset query below with the same devices
in the same order (ids, names, status, metadata, asset, parent) and the same totalCount.

Each server gets one warm-up run of --warmup seconds at the highest concurrency; then each
round runs every concurrency level against every server in turn (gateway, [variants,]
PostGraphile), --seconds each, with autocannon (one Node process, keep-alive connections =
concurrency) POSTing the same query in each server's names. Per run: requests/s, latency
percentiles of every response, the server process's CPU time per request (/proc/<pid>/stat
utime+stime, workers included), PostgreSQL's (embedded stack only), and the CPU others used
meanwhile. Every response must be 200 and of the size the checked answer had (an error
changes it). The summary gives per server and level the median over rounds (and the range)
and the ratio gateway / PostGraphile req/s. `uptime` is printed before and after; --write
appends the report to bench/RESULTS.md.

--gateway-env KEY=VAL (repeatable) sets a variable for every gateway process; each --variant
adds one more gateway process with those variables on top, measured in the same rounds (e.g.
`--variant IOTSPHERE_PLANNED_EXECUTION=false` to compare planning on and off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/vs_postgraphile.py` puts bench/ first
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import _machine  # noqa: E402
from bench._cli import positive, stop_on_signals  # noqa: E402
from bench._postgraphile import (  # noqa: E402
    PostGraphile,
    Run,
    autocannon,
    copy_fleet,
    drop_database,
    ensure_node_modules,
    package_version,
)
from bench._procs import (  # noqa: E402
    cpu_seconds,
    machine_busy_seconds,
    stack_pids,
    with_descendants,
)
from bench._stack import (  # noqa: E402
    RESULTS,
    BenchError,
    Server,
    append_results,
    dated_section,
    seed_demo,
    stack_up,
)
from bench.queries import SUBSET  # noqa: E402

# The same selection in PostGraphile's names: `rowId` is the uuid column (its `id` is the
# global Node ID), and the gateway's page order (created_at, id) is asked for explicitly.
POSTGRAPHILE_QUERY = """query Subset($first: Int!) {
  allDevices(first: $first, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) { totalCount edges { node {
    rowId name status metadata assetByAssetId { name kind assetByParentId { name } } } } }
}"""
DATABASE = f"iotsphere_vs_postgraphile_{os.getpid()}"
POSTGRAPHILE = "PostGraphile"
SETTLE_SECONDS = 1.0


# ------------------------------------------------------------------------------ servers

@dataclass
class Target:
    """A server under load: where to POST what, and which processes are it."""

    label: str
    url: str
    body: bytes
    headers: dict[str, str]
    pid: int
    response_size: int = 0  # bytes of the checked answer's body

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in with_descendants(self.pid))


def _answer(target: Target, field: str) -> dict[str, Any]:
    response = httpx.post(target.url, content=target.body, headers=target.headers,
                          timeout=30.0)
    if response.status_code != 200:
        raise BenchError(f"{target.label}: HTTP {response.status_code}: "
                         f"{response.content[:500]!r}")
    body: dict[str, Any] = orjson.loads(response.content)
    if body.get("errors") or not (body.get("data") or {}).get(field):
        raise BenchError(f"{target.label}: {response.content[:1000]!r}")
    target.response_size = len(response.content)
    connection: dict[str, Any] = body["data"][field]
    return connection


def _gateway_rows(connection: dict[str, Any]) -> list[Any]:
    return [e["node"] for e in connection["edges"]]


def _postgraphile_rows(connection: dict[str, Any]) -> list[Any]:
    """PostGraphile's nodes in the gateway's names."""
    rows = []
    for edge in connection["edges"]:
        node = edge["node"]
        asset = node["assetByAssetId"]
        rows.append({
            "id": node["rowId"], "name": node["name"], "status": node["status"],
            "metadata": node["metadata"],
            "asset": None if asset is None else {
                "name": asset["name"], "kind": asset["kind"],
                "parent": asset["assetByParentId"]},
        })
    return rows


def check_same_answers(gateways: list[Target], postgraphile: Target, expected: int) -> None:
    """Every server answers with the same ``expected`` devices, in the same order."""
    theirs = _answer(postgraphile, "allDevices")
    reference = _postgraphile_rows(theirs)
    if len(reference) != expected:
        raise BenchError(f"PostGraphile returned {len(reference)} devices, expected {expected}")
    for gateway in gateways:
        ours = _answer(gateway, "devices")
        rows = _gateway_rows(ours)
        if ours["totalCount"] != theirs["totalCount"]:
            raise BenchError(f"totalCount: {gateway.label} {ours['totalCount']}, "
                             f"PostGraphile {theirs['totalCount']}")
        if len(rows) != expected:
            raise BenchError(f"{gateway.label} returned {len(rows)} devices, expected {expected}")
        for n, (a, b) in enumerate(zip(rows, reference, strict=True)):
            if a != b:
                raise BenchError(f"device {n} differs:\n  {gateway.label}: {a}\n"
                                 f"  PostGraphile: {b}")


# ------------------------------------------------------------------------------ runs

@dataclass
class Measured:
    label: str
    concurrency: int
    round: int
    run: Run
    server_cpu: float
    postgres_cpu: float | None
    others_cpu: float  # CPU seconds of processes that are none of these nor the client
    window: float  # wall seconds between the CPU snapshots (autocannon's start included)

    @property
    def requests(self) -> int:
        return len(self.run.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.run.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.run.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]  # nearest rank

    def per_request_ms(self, seconds: float) -> float:
        return seconds / self.requests * 1e3

    @property
    def others_cores(self) -> float:
        return self.others_cpu / self.window


def measure(target: Target, concurrency: int, seconds: float, round_: int,
            data_dir: Path | None) -> Measured:
    def snapshot() -> tuple[float, dict[int, float], float]:
        postgres = {p: cpu_seconds(p) for p in stack_pids(data_dir, "postgres")}
        return target.cpu_seconds(), postgres, machine_busy_seconds()

    started = time.perf_counter()
    server0, pg0, busy0 = snapshot()
    run = autocannon(target.url, target.body, target.headers, concurrency, seconds)
    server1, pg1, busy1 = snapshot()
    window = time.perf_counter() - started
    # Per backend: a pool closing idle connections (node-postgres after 10 s) must not take
    # their past CPU off the total. A backend that ends during the run goes uncounted.
    postgres = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())
    # Requests cut off at the end still run in the server: let them finish before the next.
    time.sleep(SETTLE_SECONDS)
    if not run.latencies:
        raise BenchError(f"{target.label}: no responses in {seconds:g} s")
    bad = {s: n for s, n in run.statuses.items() if s != "200"}
    sizes = {int(size) for size in run.sizes}
    if bad or run.errors or run.timeouts or len(sizes) != 1:
        raise BenchError(f"{target.label} at c{concurrency}: statuses {run.statuses}, "
                         f"errors {run.errors}, timeouts {run.timeouts}, response sizes "
                         f"{run.sizes} (one size expected, answer body "
                         f"{target.response_size} bytes)")
    server = max(0.0, server1 - server0)
    others = max(0.0, (busy1 - busy0) - server - postgres - run.client_cpu_ms / 1e3)
    return Measured(target.label, concurrency, round_, run, server,
                    postgres if data_dir is not None else None, others, window)


def run_rounds(targets: list[Target], args: argparse.Namespace,
               data_dir: Path | None) -> list[Measured]:
    top = max(args.concurrency)
    for target in targets:
        print(f"warm-up: {target.label}, c{top}, {args.warmup:g} s", file=sys.stderr)
        measure(target, top, args.warmup, 0, data_dir)
    results = []
    for round_ in range(1, args.rounds + 1):
        for concurrency in args.concurrency:
            for target in targets:
                m = measure(target, concurrency, args.seconds, round_, data_dir)
                results.append(m)
                print(f"round {round_} c{concurrency} {target.label}: {m.rps:.1f} req/s, "
                      f"p50 {m.pct(50):.2f} ms, server CPU "
                      f"{m.per_request_ms(m.server_cpu):.2f} ms/req", file=sys.stderr)
    return results


# ------------------------------------------------------------------------------ report

def _span(values: list[float], digits: int = 1) -> str:
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:.{digits}f}"
    return f"{mid:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summary_table(results: list[Measured], labels: list[str], levels: list[int]) -> str:
    has_pg = results[0].postgres_cpu is not None
    head = ["c", "server", "req/s", "p50 ms", "p99 ms", "server CPU ms/req"]
    head += ["PostgreSQL CPU ms/req"] if has_pg else []
    head += ["req/s vs PostGraphile"]
    rows = ["| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
    for c in levels:
        theirs = [m for m in results if m.concurrency == c and m.label == POSTGRAPHILE]
        for label in labels:
            mine = [m for m in results if m.concurrency == c and m.label == label]
            cells = [str(c), label, _span([m.rps for m in mine]),
                     _span([m.pct(50) for m in mine], 2), _span([m.pct(99) for m in mine], 2),
                     _span([m.per_request_ms(m.server_cpu) for m in mine], 2)]
            if has_pg:
                cells.append(_span([m.per_request_ms(m.postgres_cpu or 0.0) for m in mine], 2))
            if label == POSTGRAPHILE:
                cells.append("1")
            else:
                # Ratio of medians, and the range of the per-round ratios (runs side by side).
                per_round = [a.rps / b.rps for a, b in zip(mine, theirs, strict=True)]
                ratio = statistics.median(m.rps for m in mine) / statistics.median(
                    m.rps for m in theirs)
                cells.append(f"**{ratio:.3f}x** ({min(per_round):.3f}-{max(per_round):.3f})")
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def runs_table(results: list[Measured]) -> str:
    rows = ["| round | c | server | requests | req/s | p50 ms | p99 ms | server CPU ms/req | "
            "client CPU ms/req | others (CPUs busy) |", "|---:|---:|---|" + "---:|" * 7]
    for m in results:
        rows.append(
            f"| {m.round} | {m.concurrency} | {m.label} | {m.requests} | {m.rps:.1f} | "
            f"{m.pct(50):.2f} | {m.pct(99):.2f} | {m.per_request_ms(m.server_cpu):.2f} | "
            f"{m.run.client_cpu_ms / m.requests:.2f} | {m.others_cores:.2f} |")
    return "\n".join(rows)


def uptime() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    return "?"


def report(args: argparse.Namespace, results: list[Measured], labels: list[str],
           facts: dict[str, str]) -> str:
    return "\n".join([
        summary_table(results, labels, args.concurrency),
        "",
        f"- Medians over {args.rounds} round(s) of {args.seconds:g} s per server and level "
        "(range in brackets); the ratio is of the median req/s, the bracket the range of the "
        "per-round ratios. Latencies are every response's, from autocannon's callback.",
        f"- Query: the subset of issue 13, `first: {args.first}`, {facts['data']}; both "
        f"servers checked to answer the same devices in the same order before timing.",
        f"- Gateway: {facts['gateway']}. PostGraphile: {facts['postgraphile']}. Load: "
        f"{facts['load']}. Stores: {facts['stores']}.",
        "- CPU columns: the process's user+system time during the run (/proc/<pid>/stat) per "
        "response; `others`: CPU time of every process that is neither the server, "
        "PostgreSQL nor autocannon, per second of the run (other sessions, idle servers; "
        f"out of {os.cpu_count()} CPUs): "
        "anything but ~0 means the run was disturbed. The gateway authenticates every request "
        "(API key); PostGraphile has no authentication.",
        f"- `uptime` before: {facts['uptime before']}",
        f"- `uptime` after: {facts['uptime after']}",
        "",
        "<details><summary>every run</summary>",
        "",
        runs_table(results),
        "",
        "</details>",
    ])


# ------------------------------------------------------------------------------ main

def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,8, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def _assignments(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VAL[,KEY=VAL...], got {text!r}")
        out[key] = value
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=positive(int), default=120,
                        help="devices to seed (default 120, the demo's size)")
    parser.add_argument("--first", type=positive(int), default=100,
                        help="page size of the query (default 100)")
    parser.add_argument("--seconds", type=positive(float), default=20.0,
                        help="length of each timed run (default 20)")
    parser.add_argument("--warmup", type=positive(float), default=5.0,
                        help="warm-up seconds per server before the rounds (default 5)")
    parser.add_argument("--rounds", type=positive(int), default=3,
                        help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=_levels, default=[1, 8],
                        help="comma-separated levels (default 1,8)")
    parser.add_argument("--workers", type=positive(int), default=1,
                        help="`iotsphere serve --workers N` (default 1)")
    parser.add_argument("--gateway-env", type=_assignments, action="append", default=[],
                        metavar="KEY=VAL", help="environment of every gateway (repeatable)")
    parser.add_argument("--variant", type=_assignments, action="append", default=[],
                        metavar="KEY=VAL[,KEY=VAL]",
                        help="one more gateway with these variables on top (repeatable)")
    parser.add_argument("--write", action="store_true",
                        help=f"append a dated section to {RESULTS.relative_to(ROOT)}")
    return parser.parse_args(argv)


def _label(extra: dict[str, str]) -> str:
    return "gateway" + "".join(f" {k}={v}" for k, v in extra.items())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common_env = {k: v for assignment in args.gateway_env for k, v in assignment.items()}
    expected = min(args.first, args.devices)
    variables = orjson.dumps({"first": args.first}).decode()
    stop_on_signals()  # SIGTERM unwinds like Ctrl-C: the finally blocks stop what started
    load_before = uptime()
    try:
        with contextlib.ExitStack() as exits:
            node = ensure_node_modules()
            print("starting stores...", file=sys.stderr)
            stack = exits.enter_context(stack_up(env_stores=True))
            settings = stack.settings
            assert settings.registry_dsn and settings.assets_dsn
            print(f"seeding {args.devices} devices...", file=sys.stderr)
            # Telemetry is not queried: one reading step keeps seeding short.
            seeded = asyncio.run(seed_demo(settings, "pgbench", args.devices, hours=0.05))
            dsn, devices, assets = asyncio.run(copy_fleet(
                settings.registry_dsn, settings.assets_dsn, seeded.tenant_id, DATABASE))
            exits.callback(lambda: asyncio.run(drop_database(settings.registry_dsn or "",
                                                             DATABASE)))
            log_dir = Path(tempfile.mkdtemp(prefix="iotsphere-vs-postgraphile-"))
            exits.callback(shutil.rmtree, log_dir, ignore_errors=True)

            gateways = []
            for n, extra in enumerate([{}, *args.variant]):
                server = exits.enter_context(Server(
                    stack, log_dir / f"gateway{n}.log", workers=args.workers,
                    env={**common_env, **extra}))
                gateways.append(Target(
                    _label(extra), f"{server.url}/graphql",
                    f'{{"query":{orjson.dumps(SUBSET).decode()},'
                    f'"variables":{variables}}}'.encode(),
                    {"content-type": "application/json",
                     "authorization": f"Bearer {seeded.key}"}, server.pid))
            body = (f'{{"query":{orjson.dumps(POSTGRAPHILE_QUERY).decode()},'
                    f'"variables":{variables}}}').encode()
            postgraphile = exits.enter_context(PostGraphile(dsn, log_dir / "postgraphile.log",
                                                            body))
            theirs = Target(POSTGRAPHILE, postgraphile.url, body,
                            {"content-type": "application/json"}, postgraphile.pid)
            print(f"servers up: {', '.join(f'{t.label} {t.url}' for t in gateways)}, "
                  f"PostGraphile {theirs.url}", file=sys.stderr)
            check_same_answers(gateways, theirs, expected)
            targets = [*gateways, theirs]
            results = run_rounds(targets, args, stack.data_dir)
            facts = {
                "data": f"{devices} devices and {assets} assets of the demo fleet",
                "gateway": ("`iotsphere serve`, one process" if args.workers == 1 else
                            f"`iotsphere serve --workers {args.workers}`")
                           + (f", environment {common_env}" if common_env else ""),
                "postgraphile": f"{package_version('postgraphile')} (amber preset, grafserv "
                                f"{package_version('grafserv')} on node:http, NODE_ENV="
                                f"production), Node {node}, pg {package_version('pg')} pool "
                                "default (10)",
                "load": f"autocannon {package_version('autocannon')} from one Node process, "
                        "keep-alive connections = concurrency, POST /graphql",
                "stores": f"{seeded.pg_version}, {stack.how}; PostGraphile's database on the "
                          "same server",
                "uptime before": load_before, "uptime after": uptime(),
            }
            body_text = report(args, results, [t.label for t in targets], facts)
            info = _machine.machine_info(f"{seeded.pg_version}; {seeded.valkey_version}",
                                         ("strawberry-graphql", "graphql-core", "uvicorn",
                                          "asyncpg"))
            print("\n".join(f"{k}: {v}" for k, v in info.items()))
            print()
            print(body_text)
            if args.write:
                append_results(dated_section(
                    f"gateway vs PostGraphile v5, subset query, first {args.first}, "
                    f"{args.rounds} x {args.seconds:g} s", info, body_text))
                print(f"\nappended to {RESULTS}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
