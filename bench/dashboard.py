"""Dashboard benchmark: the bench/queries.py DASHBOARD query over real HTTP.

    .venv/bin/python bench/dashboard.py [--devices 120] [--hours 24] [--requests 200]
        [--duration 60] [--concurrency 1,8] [--profile] [--write]

Starts an embedded devstack in a temp dir (or uses the stores named by IOTSPHERE_REGISTRY_DSN,
IOTSPHERE_ASSETS_DSN, IOTSPHERE_TELEMETRY_DSN and IOTSPHERE_REDIS_URL when all four are set),
migrates, creates a tenant and an admin key, seeds a fleet with gateway.demo.seed_fleet, and
serves the gateway with uvicorn in a separate process on a free 127.0.0.1 port, so client and
server share no GIL and the numbers include HTTP. Each concurrency level warms up, then runs
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
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/dashboard.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import _machine  # noqa: E402
from bench.queries import DASHBOARD  # noqa: E402
from gateway.settings import Settings  # noqa: E402

HOST = "127.0.0.1"
RESULTS = ROOT / "bench" / "RESULTS.md"
DSN_ENV = {
    "registry": "IOTSPHERE_REGISTRY_DSN", "assets": "IOTSPHERE_ASSETS_DSN",
    "telemetry": "IOTSPHERE_TELEMETRY_DSN", "redis": "IOTSPHERE_REDIS_URL",
}
SERVER_START_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark could not run, or a response was wrong."""


# ------------------------------------------------------------------------------ stores

@dataclass
class Stack:
    dsns: dict[str, str]
    how: str
    data_dir: Path | None = None  # the devstack's, for per-process CPU accounting


@contextlib.contextmanager
def stores_up() -> Iterator[Stack]:
    """The four stores: from IOTSPHERE_* when all four are set, else an embedded devstack
    in a fresh temp dir that is stopped and removed afterwards."""
    given = {store: os.environ.get(var, "") for store, var in DSN_ENV.items()}
    if all(given.values()):
        yield Stack(given, "IOTSPHERE_* DSNs from the environment")
        return
    from gateway.devstack import DevStack

    # As root, PostgreSQL runs as a system user that must be able to traverse the dir.
    data_dir = Path(tempfile.mkdtemp(prefix="iotsphere-bench-"))
    try:
        data_dir.chmod(0o711)
        with DevStack(data_dir) as endpoints:
            yield Stack({
                "registry": endpoints.dsn("registry"), "assets": endpoints.dsn("assets"),
                "telemetry": endpoints.dsn("telemetry"), "redis": endpoints.redis_url,
            }, "embedded devstack (gateway.devstack)", data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def settings_for(dsns: dict[str, str]) -> Settings:
    base = Settings.from_env()  # keeps pool sizes, timeouts... given as IOTSPHERE_*
    return Settings(**{**base.__dict__, "registry_dsn": dsns["registry"],
                       "assets_dsn": dsns["assets"], "telemetry_dsn": dsns["telemetry"],
                       "redis_url": dsns["redis"]})


@dataclass
class Seeded:
    key: str
    tenant: str
    devices: int
    readings: int
    seconds: float
    pg_version: str
    valkey_version: str


async def prepare(settings: Settings, devices: int, hours: float) -> Seeded:
    from gateway.auth import create_tenant_with_admin_key
    from gateway.demo import seed_fleet
    from gateway.migrate import migrate_all
    from gateway.stores import open_stores

    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    await migrate_all({"registry": settings.registry_dsn, "assets": settings.assets_dsn,
                       "telemetry": settings.telemetry_dsn})
    async with open_stores(settings) as stores:
        name = f"bench-{datetime.now(UTC):%Y%m%d%H%M%S}-{os.getpid()}"
        tenant_id, key = await create_tenant_with_admin_key(stores.registry, name)
        started = time.perf_counter()
        fleet = await seed_fleet(stores, tenant_id, devices=devices, hours=hours)
        seconds = time.perf_counter() - started
        readings = await stores.telemetry.pool.fetchval(
            "SELECT count(*) FROM readings WHERE tenant_id = $1", tenant_id)
        pg_version = await stores.registry.pool.fetchval("SHOW server_version")
        info = await stores.shadows.client.info("server")
        if "valkey_version" in info:
            valkey = f"Valkey {info['valkey_version']}"
        else:
            valkey = f"{str(info.get('server_name', 'Redis')).title()} {info.get('redis_version')}"
        async with stores.telemetry.pool.acquire() as conn:  # fresh statistics for the planner
            await conn.execute("ANALYZE readings")
            await conn.execute("ANALYZE latest_readings")
        async with stores.registry.pool.acquire() as conn:
            await conn.execute("ANALYZE devices")
        async with stores.assets.pool.acquire() as conn:
            await conn.execute("ANALYZE")
    return Seeded(key, name, len(fleet.devices), readings, seconds, f"PostgreSQL {pg_version}",
                  valkey)


# ------------------------------------------------------------------------------ server

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn --factory bench._harness:create_server_app`` in its own process and session
    (a Ctrl-C on the terminal reaches only the benchmark, which then stops it)."""

    def __init__(self, dsns: dict[str, str], log_path: Path, workers: int = 1) -> None:
        self._dsns = dsns
        self._log_path = log_path
        self._workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = _free_port()
            self._spawn()
            if self._wait_ready():
                return
            self.stop()
        raise BenchError(f"the gateway did not start; tail of {self._log_path}:\n{self.tail()}")

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in DSN_ENV.values()}
        env.update({DSN_ENV[store]: dsn for store, dsn in self._dsns.items()})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench._harness:create_server_app",
               "--host", HOST, "--port", str(self.port), "--no-access-log",
               "--log-level", "warning", "--timeout-graceful-shutdown", "5"]
        if self._workers > 1:
            cmd += ["--workers", str(self._workers)]
        with self._log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        with httpx.Client(base_url=self.url, timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/readyz").status_code == 200:
                        return True
                time.sleep(0.1)
        return False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


# ------------------------------------------------------------------------------ CPU

def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _with_descendants(root: int) -> list[int]:
    """``root`` and every process below it (uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _stack_pids(data_dir: Path | None) -> dict[str, list[int]]:
    """PostgreSQL and Valkey processes of our devstack: they work in its data dir."""
    found: dict[str, list[int]] = {"postgres": [], "valkey": []}
    if data_dir is None:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            exe = Path(os.readlink(f"/proc/{entry}/exe")).name
        except OSError:
            continue
        if cwd.startswith(str(data_dir)):
            for kind in found:
                if exe.startswith(kind):
                    found[kind].append(int(entry))
    return found


def _machine_busy_seconds() -> float:
    """CPU time all processes used so far (the first line of /proc/stat, idle and iowait
    excluded)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class CpuMeter:
    server_pid: int
    data_dir: Path | None
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        pids = _stack_pids(self.data_dir)
        gateway = sum(_cpu_seconds(p) for p in _with_descendants(self.server_pid))
        out = {"gateway": gateway, "client": time.process_time(),
               "machine": _machine_busy_seconds()}
        if self.data_dir is not None:
            out["postgres"] = sum(_cpu_seconds(p) for p in pids["postgres"])
            out["valkey"] = sum(_cpu_seconds(p) for p in pids["valkey"])
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


@dataclass
class Outcome:
    levels: list[Level]
    store_calls: dict[str, int]
    response_bytes: int


async def run_load(
    url: str, key: str, args: argparse.Namespace, expected: int, meter: CpuMeter
) -> Outcome:
    body = orjson.dumps({"query": DASHBOARD, "variables": {"first": args.first}})
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    top = max(args.concurrency)
    limits = httpx.Limits(max_connections=top, max_keepalive_connections=top)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0,
                                 trust_env=False) as client:
        traced = await client.post("/graphql", content=body,
                                   headers={**headers, "x-iotsphere-trace": "1"})
        calls = check_response(traced.status_code, traced.content, expected) \
            .get("extensions", {}).get("storeCalls")
        if not calls:
            raise BenchError("no extensions.storeCalls in a traced response")
        plain = await client.post("/graphql", content=body, headers=headers)
        check_response(plain.status_code, plain.content, expected)
        levels = []
        for concurrency in args.concurrency:
            level = await run_level(
                client, body, headers, concurrency, requests=args.requests,
                seconds=args.duration, warmup=args.warmup, expected=expected, meter=meter,
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
        ("Strawberry `schema.execute`", med("execute")),
        ("&nbsp;&nbsp;parse the query", med("parse")),
        ("&nbsp;&nbsp;validate the query", med("validate")),
        ("&nbsp;&nbsp;event loop idle, waiting on the stores", med("idle_in_execute")),
        ("&nbsp;&nbsp;CPU: resolvers, dataloaders, driver decoding, graphql-core completion",
         med("execute_cpu")),
        ("JSON encoding of the response (`encode_json`)", med("encode")),
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
        f"- Query: `DASHBOARD` (bench/queries.py), `first: {args.first}`; "
        f"{seeded.devices} devices, {args.hours:g} h of one-minute telemetry "
        f"({seeded.readings:,} readings); seeded in {seeded.seconds:.1f}s.",
        "- Store round trips per request (`extensions.storeCalls`): "
        + ", ".join(f"{k} {v}" for k, v in calls.items())
        + f" = {sum(calls.values())}.",
        f"- Response size: {outcome.response_bytes:,} bytes "
        f"({outcome.response_bytes / 1024:.1f} KiB, uncompressed JSON).",
        f"- Per level: {args.warmup} warm-up requests, then up to {args.requests} requests or "
        f"{args.duration:g} s; stopped by: "
        + ", ".join(f"c{lv.concurrency} {lv.stopped_by}" for lv in outcome.levels) + ".",
        f"- Server: uvicorn, {_workers(args.workers)} (uvloop + httptools, access log off), "
        f"stores: "
        f"{stack.how}; client: httpx.AsyncClient with keep-alive in the benchmark process; "
        f"all on 127.0.0.1. CPU columns are the processes' user+system time divided by "
        f"requests; the last column is CPU time used meanwhile by processes that are not "
        f"the benchmark's, per second: anything but ~0 means the numbers are disturbed"
        + (" (with external stores, their servers count as other processes)."
           if stack.data_dir is None else "."),
    ]
    section = profile_section(profile)
    if section:
        lines += ["", section]
    return "\n".join(lines)


def write_results(info: dict[str, str], body: str, args: argparse.Namespace) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    section = (
        f"\n## {stamp}: {args.devices} devices, {args.hours:g} h, first {args.first}, "
        f"{_workers(args.workers)}\n\n"
        f"| machine | |\n|---|---|\n{machine}\n\n{body}\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nAppended by `python bench/dashboard.py --write` "
            "(`make bench` runs it without `--write`).\n"
        )
    with RESULTS.open("a") as fh:
        fh.write(section)


# ------------------------------------------------------------------------------ main

def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,8, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=_positive(int), default=120,
                        help="devices to seed (default 120, the demo's size)")
    parser.add_argument("--hours", type=_positive(float), default=24.0,
                        help="hours of one-minute telemetry to seed (default 24)")
    parser.add_argument("--first", type=_positive(int), default=100,
                        help="page size of the dashboard query (default 100)")
    parser.add_argument("--concurrency", type=_levels, default=[1, 8],
                        help="comma-separated levels (default 1,8)")
    parser.add_argument("--requests", type=_positive(int), default=200,
                        help="measured requests per level (default 200)")
    parser.add_argument("--duration", type=_positive(float), default=60.0,
                        help="time limit per level in seconds (default 60)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="warm-up requests per level (default 20)")
    parser.add_argument("--workers", type=_positive(int), default=1,
                        help="uvicorn worker processes (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the request in-process (phases, EXPLAIN ANALYZE, "
                             "pyinstrument when installed)")
    parser.add_argument("--profile-requests", type=_positive(int), default=50,
                        help="requests per profiling pass (default 50)")
    parser.add_argument("--profile-html", type=Path,
                        help="write pyinstrument's HTML report here (and a .txt beside it)")
    parser.add_argument("--write", action="store_true",
                        help=f"append a dated section to {RESULTS.relative_to(ROOT)}")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: Any) -> None:
    """The first Ctrl-C or SIGTERM unwinds like KeyboardInterrupt; further ones are ignored
    so that they cannot cut the cleanup short (every step of it is time-bounded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    expected = min(args.first, args.devices)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop what was started.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.ExitStack() as exits:
            print("starting stores...", file=sys.stderr)
            stack = exits.enter_context(stores_up())
            settings = settings_for(stack.dsns)
            print(f"seeding {args.devices} devices x {args.hours:g} h...", file=sys.stderr)
            seeded = asyncio.run(prepare(settings, args.devices, args.hours))
            log_dir = Path(tempfile.mkdtemp(prefix="iotsphere-bench-log-"))
            exits.callback(shutil.rmtree, log_dir, ignore_errors=True)
            server = Server(stack.dsns, log_dir / "server.log", args.workers)
            exits.callback(server.stop)
            server.start()
            assert server.proc is not None
            print(f"gateway up at {server.url} (pid {server.proc.pid})", file=sys.stderr)
            meter = CpuMeter(server.proc.pid, stack.data_dir)
            try:
                outcome = asyncio.run(run_load(server.url, seeded.key, args, expected, meter))
            except (BenchError, httpx.HTTPError):
                print(f"--- tail of the server log ---\n{server.tail()}", file=sys.stderr)
                raise
            server.stop()  # the profile runs in-process: keep the CPUs for it
            profile = None
            if args.profile:
                profile = asyncio.run(_profile(settings, seeded.key, args, expected))
            info = machine_info(seeded)
            body = report(args, stack, seeded, outcome, profile)
            print("\n".join(f"{k}: {v}" for k, v in info.items()))
            print()
            print(body)
            if args.write:
                write_results(info, body, args)
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

    body = orjson.dumps({"query": DASHBOARD, "variables": {"first": args.first}})

    def check(status: int, content: bytes) -> None:
        check_response(status, content, expected)

    return await profile_dashboard(settings, key, body, requests=args.profile_requests,
                                   check=check, html=args.profile_html)


if __name__ == "__main__":
    sys.exit(main())
