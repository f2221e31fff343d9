"""Fanout benchmark: N WebSocket subscribers to `shadowChanged` while shadows change at a rate
(or, with `--subscription telemetry`, to `telemetryChanged` while readings are ingested).

    .venv/bin/python bench/fanout.py [--subscribers 1000,10000] [--rate 100,1000]
        [--seconds 30] [--writer redis|mutation] [--subscription shadow|telemetry]
        [--client-procs N] [--no-compression] [--client python|node]
        [--converge-timeout 30] [--gc-stats] [--gc-freeze] [--profile-server DIR] [--write]
        [--gateways N] [--cluster [--failover-at SECONDS]]

Starts an embedded devstack in a temp dir (or uses the stores named by IOTSPHERE_REGISTRY_DSN,
IOTSPHERE_ASSETS_DSN, IOTSPHERE_TELEMETRY_DSN and IOTSPHERE_REDIS_URL when all four are set),
migrates, creates a tenant and an admin key and seeds the demo fleet
(gateway.runtime.demo.seed_fleet, 120 devices). Then, for every (subscribers, rate) pair,
on a fresh gateway process
(`iotsphere serve` on a free 127.0.0.1 port, its open-file limit raised to the hard limit):

1. subscriber processes (bench/_fanout_clients.py; one, or two above 2,500 subscribers) open
   the sockets in bounded parallel batches; subscriber i watches `shadowChanged(deviceIds:
   [device i mod 120])` selecting `kind deviceId version shadow { reported }`, so the 120
   devices make 120 cohorts on the server;
2. the writer changes shadows round-robin over the 120 devices at `--rate` updates/s for
   `--seconds`: straight into Redis (default) with a pipelined Lua script that reads the
   hash, bumps `version`, sets `reported.seq` and `reported.writtenAtMs` (Redis `TIME` at the
   write) in one HSET, so the change reaches the gateway through keyspace notifications like
   any external writer's; or with `--writer mutation`, through the gateway's `updateShadow`
   mutation over HTTP (`writtenAtMs` is then the client's clock when it sent the mutation);
3. after the writer stops, the final version of every device is read from Redis and every
   subscriber is awaited (at most `--converge-timeout` s) until its last version equals it.

`--subscription telemetry` (issue 15's bar: 1,000 subscribers, 1,000 readings/s, p99
delivery): subscriber i watches `telemetryChanged(deviceIds: [device i mod 120], metrics:
["bench"])`; the writer POSTs NDJSON to the gateway's `/ingest` every 50 ms with the
readings due (round-robin over the devices, metric `bench`, time = the writer's clock at
the send, value = 1, 2, ... per device, so a value is a version), one request at a time
(a slow gateway makes the next body larger, never a queue of requests). Latency is the
receipt minus the reading's time: the ingest request, its commit, the announcement through
Redis and the fan-out. Final versions are the writer's last value per device.

Reported per configuration: UPDATED events delivered (and per second during the write window,
against the ideal of every write reaching every subscriber of its device), latency from the
write to receipt (p50/p99/max), versions skipped by coalescing (expected under load; the
server keeps only the newest pending change per subscriber and device), versions that went
backwards, errors and unexpected closes, connection setup time, the gateway's RSS (VmRSS at
idle, after all subscribers connected and at the end, and VmHWM), CPU seconds of the gateway,
the subscriber processes, the writer and Valkey, and how many subscribers converged on the
final version and how long that took. During the write, GET /healthz twice a second shows
how far behind the gateway's event loop runs. Server log lines at WARNING or above are counted
and the first ones shown. --write appends a dated section to bench/RESULTS.md.

Scale-out (issue 17): --gateways N starts N `iotsphere serve` processes on the same stores;
subscriber i connects to gateway i mod N (each subscriber process serves one gateway), the
writer is unchanged. --cluster puts the shadows on a local 3-primary Valkey Cluster, each
primary with a replica (gateway.runtime.valkey_cluster, from the embedded Valkey binary; the
devstack's own Valkey then idles), and the writer writes through the cluster client
(bench/_fanout_cluster.py). --failover-at S SIGKILLs, S seconds after the writer starts, the
primary holding the first device's slot (roughly a third of the devices live there); its
replica takes over, and every subscriber must still end on every watched device's final
version, read from the cluster after the writer stops. With --gateways above 1 or --cluster
the report adds a table per gateway: events, latency, converged subscribers and when,
versions backwards, extra SNAPSHOTs (the hub re-snapshots after the slot map changes) and
CPU.

Clients: --client node runs the subscriber processes as bench/_fanout_clients.mjs, Node's
`ws` (installed in tests/js by `npm ci`) speaking graphql-transport-ws by hand with the same
job, commands and report: a second strict client at full size. It is not lighter: with
permessage-deflate it took ~175-210 us of CPU per event and ~800 MiB per 5,000 sockets
against the Python client's ~90-115 us and ~280-320 MiB (bench/RESULTS.md, 2026-12-07
15:47), when that was websockets' asyncio client. The Python client, now websockets'
sans-I/O protocol handled in place (bench/_fanout_clients.py's docstring), stays the
default and the figures of record.

Diagnostics (they change how the gateway is launched, never its code): --gc-stats logs and
reports the gateway's full garbage collections and their pauses; --gc-freeze (an experiment)
also has it run gc.collect() and gc.freeze() once every subscriber is connected;
--profile-server runs it under cProfile.

Everything started is stopped on exit, Ctrl-C or failure. Should this process be killed
outright (SIGKILL), the gateway and subscriber processes get SIGTERM from the kernel
(PR_SET_PDEATHSIG); the devstack's PostgreSQL and Valkey would then be left running.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/fanout.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import _fanout_cluster, _machine  # noqa: E402
from bench._cli import positive, stop_on_signals  # noqa: E402
from bench._fanout_stats import ms as _ms  # noqa: E402
from bench._fanout_stats import pct  # noqa: E402
from bench._procs import (  # noqa: E402
    child_preexec,
    cpu_seconds,
    machine_busy_seconds,
    raise_nofile,
    stack_pids,
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
from gateway.runtime.valkey_cluster import LocalCluster, local_cluster  # noqa: E402

CLIENTS = ROOT / "bench" / "_fanout_clients.py"
NODE_CLIENTS = ROOT / "bench" / "_fanout_clients.mjs"  # --client node: Node's ws
SETTLE_SECONDS = 2.0
WRITER_TICK = 0.005

QUERY = (
    "subscription Watch($ids: [ID!]) { shadowChanged(deviceIds: $ids) "
    "{ kind deviceId version shadow { reported } } }"
)
TELEMETRY_QUERY = (
    'subscription Watch($ids: [ID!]!) { telemetryChanged(deviceIds: $ids, metrics: ["bench"]) '
    "{ kind deviceId readings { metric time value } } }"
)
TELEMETRY_TICK = 0.05  # the telemetry writer's interval between /ingest bodies
MUTATION = (
    "mutation Report($id: ID!, $reported: JSON!) "
    "{ updateShadow(deviceId: $id, reported: $reported) { version } }"
)
# One atomic step per update, one HSET (so one keyspace notification): what an external
# writer of the shadow hash would do. A device without a shadow gets one.
UPDATE_LUA = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cur = redis.call('HMGET', KEYS[1], 'version', 'reported', 'desired')
local version = (cur[1] and tonumber(cur[1]) or 0) + 1
local reported = {}
if cur[2] then
  local ok, decoded = pcall(cjson.decode, cur[2])
  if ok and type(decoded) == 'table' then reported = decoded end
end
reported['seq'] = tonumber(ARGV[1])
reported['writtenAtMs'] = ms
if cur[3] then
  redis.call('HSET', KEYS[1], 'version', version, 'reported', cjson.encode(reported),
             'updatedAt', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'version', version, 'reported', cjson.encode(reported),
             'updatedAt', ARGV[2], 'desired', '{}', 'metadata', '{}')
end
return version
"""


# `iotsphere serve`, with a gc callback that logs every full (generation 2) collection of
# the gateway's process and how long it stopped the event loop: instrumentation only.
GC_WRAPPER = """
import gc, sys, time
_start = [0.0]
def _on_gc(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        _start[0] = time.perf_counter()
    else:
        ms = (time.perf_counter() - _start[0]) * 1e3
        print(f"FANOUT-GC {time.time():.3f} gen2 {ms:.1f} ms collected {info['collected']}",
              file=sys.stderr, flush=True)
gc.callbacks.append(_on_gc)
if "--gc-freeze" in sys.argv:  # SIGUSR1 moves every object alive to the permanent generation
    import signal
    sys.argv.remove("--gc-freeze")
    def _freeze(signum, frame):
        gc.collect()
        gc.freeze()
        print(f"FANOUT-GC-FROZEN {time.time():.3f} {gc.get_freeze_count()} objects",
              file=sys.stderr, flush=True)
    signal.signal(signal.SIGUSR1, _freeze)
from gateway.runtime.cli import main
sys.exit(main())
"""


# ----------------------------------------------------------------------------- processes

_CHILDREN: dict[int, subprocess.Popen[bytes] | asyncio.subprocess.Process] = {}


def _kill_children() -> None:
    """Last resort on the way out: whatever child is still running gets SIGKILL."""
    for pid in list(_CHILDREN):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        _CHILDREN.pop(pid, None)


def gateway(stack: Stack, run_dir: Path, profile: Path | None, gc_stats: bool,
            gc_freeze: bool, tree: Path | None = None, log_name: str = "server.log") -> Server:
    """`iotsphere serve` for one configuration, under cProfile or the GC launcher if asked;
    from the source tree ``tree`` (first on its path) when given."""
    server = Server(stack, run_dir / log_name, log_level="INFO",
                    env={"PYTHONPATH": str(tree)} if tree is not None else {})
    if profile is not None:  # cProfile writes its stats when serve returns
        server.launcher = [sys.executable, "-m", "cProfile", "-o", str(profile),
                           "-m", "gateway.runtime.cli"]
    elif gc_stats or gc_freeze:
        server.launcher = [sys.executable, "-c", GC_WRAPPER]
        if gc_freeze:
            server.extra_args = ["--gc-freeze"]
    return server


def gc_pauses(path: Path) -> list[tuple[float, float]]:
    """(unix s, ms) of every full collection the --gc-stats wrapper logged."""
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("FANOUT-GC "):
                parts = line.split()
                with contextlib.suppress(ValueError, IndexError):
                    out.append((float(parts[1]), float(parts[3])))
    return out


# ------------------------------------------------------------------------------ clients

class ClientProc:
    """One bench/_fanout_clients.py process; JSON lines on its stdin and stdout."""

    def __init__(self, number: int, log_dir: Path, gateway: int = 0,
                 program: list[str] | None = None) -> None:
        self.number = number
        self.program = program or [sys.executable, str(CLIENTS)]
        self.gateway = gateway  # which gateway its subscribers connect to
        self.samples_path = log_dir / f"clients-{number}.bin"
        self.log_path = log_dir / f"clients-{number}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, job: dict[str, Any]) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.program, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, limit=1 << 26,
                start_new_session=True, preexec_fn=child_preexec,
            )
        _CHILDREN[self.proc.pid] = self.proc
        await self.send({**job, "samples": str(self.samples_path)})

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(message) + b"\n")
        await self.proc.stdin.drain()

    async def receive(self, event: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(f"subscriber process {self.number} sent no {event!r} within "
                             f"{timeout:.0f}s; log {self.log_path}:\n{self.tail()}") from None
        if not line:
            raise BenchError(f"subscriber process {self.number} ended; log {self.log_path}:\n"
                             f"{self.tail()}")
        message: dict[str, Any] = orjson.loads(line)
        if message.get("event") != event:
            raise BenchError(f"expected {event!r} from subscriber process {self.number}, "
                             f"got {str(message)[:300]}")
        return message

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def samples(self) -> array.array[float]:
        data = array.array("d")
        with contextlib.suppress(OSError), self.samples_path.open("rb") as fh:
            data.frombytes(fh.read())
        return data

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.returncode is None:
                with contextlib.suppress(Exception):
                    assert proc.stdin is not None
                    proc.stdin.write(b'{"cmd": "close"}\n')
                    await asyncio.wait_for(proc.stdin.drain(), 5)
                    proc.stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), 40)
                except TimeoutError:
                    proc.kill()
                    await asyncio.wait_for(proc.wait(), 10)
        finally:
            _CHILDREN.pop(proc.pid, None)


# ------------------------------------------------------------------------------ writers

@dataclass
class Written:
    writes: int = 0
    errors: int = 0
    started: float = 0.0  # unix s
    stopped: float = 0.0
    behind_max: int = 0  # the most updates the writer was ever behind its schedule
    error_samples: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(1e-9, self.stopped - self.started)


def _due(started: float, rate: float, done: int) -> int:
    return int((time.monotonic() - started) * rate) + 1 - done


async def write_redis(redis_url: str, tenant_id: str, devices: list[str], rate: float,
                      seconds: float) -> Written:
    import redis.asyncio as redis

    from gateway.stores.shadows import shadow_key

    keys = [shadow_key(UUID(tenant_id), UUID(d)) for d in devices]
    out = Written()
    client = redis.Redis.from_url(redis_url)
    try:
        sha = await client.script_load(UPDATE_LUA)
        cap = max(1, int(rate * 0.1))  # a late writer catches up in chunks of 100 ms
        out.started = time.time()
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            due = _due(start, rate, out.writes)
            out.behind_max = max(out.behind_max, due)
            if due > 0:
                batch = min(due, cap)
                stamp = datetime.now(UTC).isoformat()
                async with client.pipeline(transaction=False) as pipe:
                    for n in range(out.writes, out.writes + batch):
                        pipe.evalsha(sha, 1, keys[n % len(keys)], n + 1, stamp)
                    await pipe.execute()
                out.writes += batch
            await asyncio.sleep(WRITER_TICK)
        out.stopped = time.time()
    finally:
        await client.aclose()
    return out


async def write_mutations(url: str, key: str, devices: list[str], rate: float,
                          seconds: float, concurrency: int = 32) -> Written:
    out = Written()
    gate = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async with httpx.AsyncClient(base_url=url, timeout=30.0, trust_env=False,
                                 headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(n: int) -> None:
            try:
                body = {"query": MUTATION, "variables": {
                    "id": devices[n % len(devices)],
                    "reported": {"seq": n + 1, "writtenAtMs": time.time() * 1e3}}}
                response = await client.post("/graphql", json=body)
                data = response.json()
                if response.status_code != 200 or data.get("errors"):
                    raise BenchError(f"HTTP {response.status_code}: {str(data)[:300]}")
            except Exception as exc:  # counted and reported
                out.errors += 1
                if len(out.error_samples) < 5:
                    out.error_samples.append(f"{type(exc).__name__}: {exc}")
            finally:
                gate.release()

        out.started = time.time()
        start = time.monotonic()
        deadline = start + seconds
        issued = 0
        while time.monotonic() < deadline:
            due = _due(start, rate, issued)
            out.behind_max = max(out.behind_max, due)
            for _ in range(max(0, due)):
                if time.monotonic() >= deadline:
                    break
                await gate.acquire()  # the gateway's pace bounds ours: the rate may fall short
                task = asyncio.create_task(one(issued))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                issued += 1
            await asyncio.sleep(WRITER_TICK)
        if tasks:
            await asyncio.wait(set(tasks), timeout=60)
        for task in tasks:
            task.cancel()
        out.writes = issued - out.errors
        out.stopped = time.time()
    return out


async def write_readings(url: str, key: str, devices: list[str], rate: float,
                         seconds: float) -> tuple[Written, dict[str, int]]:
    """Readings through POST /ingest at ``rate`` a second, a body every TELEMETRY_TICK;
    returns what was written and the last value (version) per device."""
    out = Written()
    finals: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60.0, trust_env=False, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}) as client:
        out.started = time.time()
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            due = _due(start, rate, out.writes)
            out.behind_max = max(out.behind_max, due)
            if due > 0:
                now = datetime.now(UTC)
                lines = []
                for k, n in enumerate(range(out.writes, out.writes + due)):
                    device = devices[n % len(devices)]
                    finals[device] = n // len(devices) + 1
                    # A device twice in one body (a writer behind): 1 ms apart, not duplicates.
                    stamp = (now + timedelta(milliseconds=k // len(devices))).isoformat(
                        timespec="milliseconds")
                    lines.append(orjson.dumps({"deviceId": device, "metric": "bench",
                                               "time": stamp, "value": finals[device]}))
                try:
                    response = await client.post("/ingest", content=b"\n".join(lines))
                    if response.status_code != 200 or response.json()["accepted"] != due:
                        raise BenchError(f"HTTP {response.status_code}: {response.text[:300]}")
                except Exception as exc:  # counted and reported
                    out.errors += 1
                    if len(out.error_samples) < 5:
                        out.error_samples.append(f"{type(exc).__name__}: {exc}")
                out.writes += due
            await asyncio.sleep(TELEMETRY_TICK)
        out.stopped = time.time()
    return out, finals


async def final_versions(redis_url: str, tenant_id: str, devices: list[str]) -> dict[str, int]:
    """Read from a single Valkey, or through the cluster client after any failover."""
    return await _fanout_cluster.read_finals(redis_url, tenant_id, devices)


# ------------------------------------------------------------------------------ a run

@dataclass
class Config:
    subscribers: int
    rate: float


@dataclass
class Outcome:
    config: Config
    procs: int
    connected: int = 0
    failed: int = 0
    connect_s: float = 0.0
    setup_ms: list[float] = field(default_factory=list)
    written: Written = field(default_factory=Written)
    reports: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # UPDATED events in the window
    latencies_all: list[float] = field(default_factory=list)
    in_window: int = 0
    series: list[tuple[float, int, float]] = field(default_factory=list)  # (t, ev/s, p99)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    rss_series: list[int] = field(default_factory=list)
    probe_ms: list[float] = field(default_factory=list)  # GET /healthz during the write
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    converge_wait_s: float = 0.0
    gc: list[tuple[float, float]] = field(default_factory=list)
    log_count: int = 0
    log_first: list[str] = field(default_factory=list)
    server_nofile: str = "?"
    server_exit: int | None = None
    failures: list[str] = field(default_factory=list)
    final_versions: dict[str, int] = field(default_factory=dict)
    writer: str = "redis"
    latencies_by_gateway: dict[int, list[float]] = field(default_factory=dict)
    rss_end_by_gateway: dict[int, int] = field(default_factory=dict)
    failover: _fanout_cluster.Failover | None = None
    code: str = ""  # the commit the gateway started from (others commit meanwhile)
    label: str = ""  # "baseline" for --baseline-tree's gateway, else ""

    def total(self, key: str) -> int:
        return sum(int(r.get(key, 0)) for r in self.reports)

    @property
    def convergence_ms(self) -> list[float]:
        return sorted(ms for r in self.reports for ms in r["convergence_ms"])


class CpuMeter:
    """CPU seconds so far: "gateway" (every gateway), "gateway:<n>" (each of them)..."""

    def __init__(self, servers: list[Server], clients: list[ClientProc], data_dir: Path | None,
                 valkey_pids: list[int] | None = None) -> None:
        self._servers = servers
        self._clients = clients
        self._valkey = stack_pids(data_dir, "valkey") if valkey_pids is None else valkey_pids
        self._data_dir = data_dir
        self._seen: dict[int, float] = {}  # a killed Valkey node keeps the CPU it used

    def _valkey_seconds(self) -> float:
        for pid in self._valkey:
            self._seen[pid] = max(self._seen.get(pid, 0.0), cpu_seconds(pid))
        return sum(self._seen.values())

    def snapshot(self) -> dict[str, float]:
        clients = sum(cpu_seconds(c.pid) for c in self._clients if c.proc is not None)
        gateways = [cpu_seconds(s.pid) for s in self._servers]
        out = {"gateway": sum(gateways), "clients": clients,
               "writer": time.process_time(), "machine": machine_busy_seconds(),
               "wall": time.monotonic()}
        out.update({f"gateway:{n}": v for n, v in enumerate(gateways)})
        if self._data_dir is not None:
            out["valkey"] = self._valkey_seconds()
            out["postgres"] = sum(cpu_seconds(p) for p in stack_pids(self._data_dir, "postgres"))
        return out


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, b[k] - a.get(k, 0.0)) for k in b}


def _spread(subscribers: int, procs: int, gateways: int) -> list[tuple[int, int, int, int]]:
    """(gateway, first, count, stride) per subscriber process: subscriber i goes to gateway
    i mod ``gateways``; each gateway's subscribers are split in contiguous runs over its
    ``procs`` processes (one gateway: first = n * share, stride 1, as before)."""
    out = []
    for g in range(gateways):
        mine = len(range(g, subscribers, gateways))
        share = math.ceil(mine / procs)
        for k in range(procs):
            out.append((g, g + k * share * gateways, max(0, min(share, mine - k * share)),
                        gateways))
    return out


def _memory(servers: list[Server]) -> dict[str, int]:
    """VmRSS, VmHWM... summed over the gateways (one gateway: its own)."""
    out: dict[str, int] = {}
    for server in servers:
        for name, kib in server.memory().items():
            out[name] = out.get(name, 0) + kib
    return out


async def run_config(cfg: Config, stack: Stack, seeded: Seeded, args: argparse.Namespace,
                     log_dir: Path, tree: Path | None = None,
                     cluster: LocalCluster | None = None) -> Outcome:
    gateways = args.gateways
    procs = args.client_procs or (1 if cfg.subscribers <= 2500 else 2)
    per_gateway = max(1, math.ceil(procs / gateways))  # subscriber processes per gateway
    procs = max(1, min(per_gateway * gateways, cfg.subscribers))
    telemetry = args.subscription == "telemetry"
    out = Outcome(cfg, procs, writer="ingest" if telemetry else args.writer)
    tag = f"s{cfg.subscribers}-r{cfg.rate:g}" + ("-baseline" if tree is not None else "")
    out.label = "baseline" if tree is not None else ""
    run_dir = log_dir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    profile = None
    if args.profile_server is not None:
        args.profile_server.mkdir(parents=True, exist_ok=True)
        profile = args.profile_server / f"gateway-{tag}.prof"
    servers = [gateway(stack, run_dir, profile if n == 0 else None, args.gc_stats,
                       args.gc_freeze, tree,
                       "server.log" if gateways == 1 else f"server-{n}.log")
               for n in range(gateways)]
    server = servers[0]
    spread = _spread(cfg.subscribers, per_gateway, gateways)[:procs]
    program = ["node", str(NODE_CLIENTS)] if args.client == "node" else None
    clients = [ClientProc(n, run_dir, g, program) for n, (g, *_rest) in enumerate(spread)]
    say = _say
    try:
        out.code = _machine.code_version() if tree is None else f"the tree at {tree}"
        for one in servers:
            await asyncio.to_thread(one.start)
            say(f"[{tag}] gateway pid {one.pid} on {one.url} (open files {one.nofile()})")
        out.server_nofile = server.nofile()
        await asyncio.sleep(SETTLE_SECONDS)
        out.memory["idle"] = _memory(servers)
        valkey = [n.process.pid for n in cluster.starting] if cluster is not None else None
        meter = CpuMeter(servers, clients, stack.data_dir, valkey)
        cpu0 = meter.snapshot()

        # -- connect
        for client, (g, first, count, stride) in zip(clients, spread, strict=True):
            await client.start({
                "url": servers[g].ws_url, "key": seeded.key, "devices": seeded.devices,
                "query": TELEMETRY_QUERY if telemetry else QUERY,
                "field": "telemetryChanged" if telemetry else "shadowChanged",
                "first": first, "count": count, "stride": stride,
                "parallel": args.connect_parallel, "step_timeout": args.step_timeout,
                "compression": None if args.no_compression else "deflate",
            })
        say(f"[{tag}] opening {cfg.subscribers} subscriptions in {procs} process(es), "
            f"{args.connect_parallel} handshakes in flight per process...")
        readies = await asyncio.gather(*(
            c.receive("ready", args.connect_timeout) for c in clients))
        for ready in readies:
            out.connected += ready["connected"]
            out.failed += ready["failed"]
            out.setup_ms += ready["setup_ms"]
            out.failures += ready["failures"]
            out.connect_s = max(out.connect_s, ready["connect_s"])
        say(f"[{tag}] {out.connected} subscribed ({out.failed} failed) in "
            f"{out.connect_s:.1f}s")
        if out.connected == 0:
            raise BenchError(f"no subscriber connected: {out.failures[:3]}\n{server.tail()}")
        if args.gc_freeze:
            for one in servers:
                os.kill(one.pid, signal.SIGUSR1)
            say(f"[{tag}] asked the gateway to gc.freeze() its {out.connected} subscriptions")
            for _ in range(600):  # the collection before the freeze takes seconds: wait
                if all("FANOUT-GC-FROZEN" in one.log_path.read_text(errors="replace")
                       for one in servers):
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_SECONDS)
        out.memory["connected"] = _memory(servers)
        cpu1 = meter.snapshot()

        # -- write
        say(f"[{tag}] writing {cfg.rate:g} updates/s for {args.seconds:g}s "
            f"({out.writer})...")
        sampler = asyncio.gather(_sample_rss(servers, out.rss_series),
                                 *(_probe(one.url, out.probe_ms) for one in servers))
        writing = asyncio.Event()
        failing: asyncio.Future[None] | None = None
        if cluster is not None and args.failover_at is not None:
            out.failover = _fanout_cluster.Failover(args.failover_at)
            failing = asyncio.ensure_future(_fanout_cluster.fail_over(
                cluster, seeded.tenant_id, seeded.devices, writing, out.failover))
        try:
            if telemetry:
                out.written, out.final_versions = await write_readings(
                    server.url, seeded.key, seeded.devices, cfg.rate, args.seconds)
            elif args.writer == "redis" and cluster is not None:
                writing.set()
                await _fanout_cluster.write_cluster(
                    out.written, stack.dsns["redis"], seeded.tenant_id, seeded.devices,
                    cfg.rate, args.seconds, UPDATE_LUA, WRITER_TICK)
            elif args.writer == "redis":
                out.written = await write_redis(stack.dsns["redis"], seeded.tenant_id,
                                                seeded.devices, cfg.rate, args.seconds)
            else:
                writing.set()
                out.written = await write_mutations(server.url, seeded.key, seeded.devices,
                                                    cfg.rate, args.seconds)
            cpu2 = meter.snapshot()
            if failing is not None:
                await failing
            if not telemetry:  # a cluster's seed node may be the primary killed meanwhile
                out.final_versions = await final_versions(
                    cluster.url if cluster is not None else stack.dsns["redis"],
                    seeded.tenant_id, seeded.devices)
            say(f"[{tag}] {out.written.writes} writes in {out.written.seconds:.1f}s; "
                f"waiting (at most {args.converge_timeout:g}s) for every subscriber to reach "
                f"its device's final version...")
            for client in clients:
                await client.send({"cmd": "final", "versions": out.final_versions,
                                   "stopped_at": out.written.stopped,
                                   "timeout": args.converge_timeout})
            out.reports = list(await asyncio.gather(*(
                c.receive("report", args.converge_timeout + 60) for c in clients)))
            for client, rep in zip(clients, out.reports, strict=True):
                rep["gateway"] = client.gateway
        finally:
            sampler.cancel()
            if failing is not None:
                failing.cancel()
            await asyncio.gather(sampler, *([failing] if failing else []),
                                 return_exceptions=True)
        cpu3 = meter.snapshot()
        out.memory["end"] = _memory(servers)
        out.rss_end_by_gateway = {n: one.rss_kib() for n, one in enumerate(servers)}
        out.cpu = {"connect": _delta(cpu0, cpu1), "write": _delta(cpu1, cpu2),
                   "converge": _delta(cpu2, cpu3)}
        out.converge_wait_s = max(r["waited_s"] for r in out.reports)
        analyse_samples(out, [client.samples() for client in clients],
                        [client.gateway for client in clients])
    finally:
        for client in clients:
            await client.stop()
        exits = [await asyncio.to_thread(one.stop) for one in servers]
        out.server_exit = next((code for code in exits if code), exits[0])
        for one in servers:
            found, lines = one.log_findings()
            out.log_count += found
            out.log_first += lines
            out.gc += gc_pauses(one.log_path)
    return out


async def _probe(url: str, series: list[float]) -> None:
    """Times GET /healthz twice a second: a trivial request waits for the gateway's event
    loop, so its latency shows how far behind the loop runs."""
    async with httpx.AsyncClient(base_url=url, timeout=60.0, trust_env=False) as client:
        for _ in range(100_000):  # bounded; cancelled when the run ends
            started = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                await client.get("/healthz")
                series.append((time.perf_counter() - started) * 1e3)
            await asyncio.sleep(0.5)


async def _sample_rss(servers: list[Server], series: list[int]) -> None:
    for _ in range(100_000):  # bounded; cancelled when the run ends
        series.append(max(server.memory().get("VmRSS", 0) for server in servers))
        await asyncio.sleep(1.0)


def analyse_samples(out: Outcome, arrays: list[array.array[float]],
                    gateways: list[int]) -> None:
    """Latency percentiles (all UPDATED events, and those received while the writer ran)
    and, per 5 s from the writer's start, events/s and p99: a steady state or a queue."""
    started, stopped = out.written.started, out.written.stopped
    buckets: dict[int, list[float]] = {}
    for data, gateway_number in zip(arrays, gateways, strict=True):
        mine = out.latencies_by_gateway.setdefault(gateway_number, [])
        for t, ms in zip(data[0::2], data[1::2], strict=True):
            out.latencies_all.append(ms)
            mine.append(ms)
            if started <= t <= stopped:
                out.latencies.append(ms)
            buckets.setdefault(int((t - started) // 5), []).append(ms)
    out.in_window = len(out.latencies)
    out.latencies.sort()
    out.latencies_all.sort()
    out.series = [(b * 5.0, len(v), pct(sorted(v), 99)) for b, v in sorted(buckets.items())]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ report

def machine_info(seeded: Seeded) -> dict[str, str]:
    return _machine.machine_info(
        f"{seeded.pg_version}; {seeded.valkey_version}",
        ("strawberry-graphql", "graphql-core", "starlette", "uvicorn", "uvloop", "websockets",
        "redis", "orjson"),
    )


def _mib(kib: int | None) -> str:
    return "-" if not kib else f"{kib / 1024:.0f}"


def delivery_table(outcomes: list[Outcome]) -> str:
    head = ["subscribers", "target updates/s", "writes (achieved/s)", "events delivered",
            "events/s in window", "share of ideal", "coalesced versions", "p50 ms", "p99 ms",
            "max ms", "converged", "convergence max s", "backwards / errors / closed"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for o in outcomes:
        w = o.written
        ideal = _ideal(o)
        conv = o.convergence_ms
        rows.append("| " + " | ".join([
            (f"{o.label}: " if o.label else "") + f"{o.config.subscribers:,}"
            + (f" ({o.connected:,} up)" if o.failed else ""),
            f"{o.config.rate:g}",
            f"{w.writes:,} ({w.writes / w.seconds:.0f})",
            f"{o.total('events'):,}",
            f"{o.in_window / w.seconds:,.0f}",
            f"{o.total('events') / ideal * 100:.1f}%" if ideal else "-",
            f"{o.total('coalesced'):,}",
            _ms(pct(o.latencies_all, 50)), _ms(pct(o.latencies_all, 99)),
            _ms(o.latencies_all[-1] if o.latencies_all else math.nan),
            f"{o.total('converged'):,}/{o.connected:,}",
            f"{conv[-1] / 1e3:.2f}" if conv else "-",
            f"{o.total('backwards')} / {o.total('errors')} / {o.total('closed')}",
        ]) + " |")
    return "\n".join(rows)


def _ideal(o: Outcome) -> int:
    """UPDATED events if no version were coalesced: every version after a subscriber's
    SNAPSHOT, up to its device's final one."""
    return o.total("expected")


def resource_table(outcomes: list[Outcome]) -> str:
    head = ["subscribers", "target updates/s", "connect all s", "setup p50 / p99 / max ms",
            "RSS idle MiB", "RSS connected MiB", "RSS end MiB", "VmHWM MiB",
            "gateway CPU s (connect / write / converge)", "gateway CPU % of write window",
            "subscriber procs CPU s (write)", "writer CPU s", "Valkey CPU s", "machine busy %",
            "other processes (CPUs busy)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for o in outcomes:
        setup = sorted(o.setup_ms)
        c, w, v = o.cpu.get("connect", {}), o.cpu.get("write", {}), o.cpu.get("converge", {})
        wall = max(1e-9, w.get("wall", 0.0))
        cores = os.cpu_count() or 1
        rows.append("| " + " | ".join([
            (f"{o.label}: " if o.label else "") + f"{o.config.subscribers:,}",
            f"{o.config.rate:g}", f"{o.connect_s:.1f}",
            f"{_ms(pct(setup, 50))} / {_ms(pct(setup, 99))} / "
            f"{_ms(setup[-1] if setup else math.nan)}",
            _mib(o.memory.get("idle", {}).get("VmRSS")),
            _mib(o.memory.get("connected", {}).get("VmRSS")),
            _mib(o.memory.get("end", {}).get("VmRSS")),
            _mib(o.memory.get("end", {}).get("VmHWM")),
            f"{c.get('gateway', 0):.1f} / {w.get('gateway', 0):.1f} / {v.get('gateway', 0):.1f}",
            f"{w.get('gateway', 0) / wall * 100:.0f}%",
            f"{w.get('clients', 0):.1f}", f"{w.get('writer', 0):.1f}",
            f"{w.get('valkey', 0):.1f}" if "valkey" in w else "-",
            f"{w.get('machine', 0) / wall / cores * 100:.0f}%",
            f"{_others(w) / wall:.2f}",
        ]) + " |")
    return "\n".join(rows)


def _others(cpu: dict[str, float]) -> float:
    """CPU seconds used meanwhile by processes that are not this benchmark's: noise."""
    ours = sum(v for k, v in cpu.items()
               if k not in ("machine", "wall") and not k.startswith("gateway:"))
    return max(0.0, cpu.get("machine", 0.0) - ours)


def details(o: Outcome) -> list[str]:
    tag = (f"{o.label}: " if o.label else "") + (
        f"{o.config.subscribers:,} subscribers at {o.config.rate:g} updates/s")
    lines = [f"- **{tag}**: {o.procs} subscriber process(es); in the write window "
             f"({o.written.seconds:.1f} s) p50/p99 "
             f"{_ms(pct(o.latencies, 50))}/{_ms(pct(o.latencies, 99))} ms over {o.in_window:,} "
             f"events; events/s and p99 ms per 5 s from the writer's start: "
             + ", ".join(f"{n / 5:,.0f}@{_ms(p99)}" for _t, n, p99 in o.series[:16])
             + (" ..." if len(o.series) > 16 else "") + "."]
    extra = o.total("extra_snapshots")
    if extra:
        lines.append(f"  - {extra} SNAPSHOT(s) after the first (a hub reconnect re-snapshots).")
    conv = o.convergence_ms
    if conv:
        lines.append(f"  - Convergence after the writer stopped: p50 {pct(conv, 50) / 1e3:.2f} s, "
                     f"p99 {pct(conv, 99) / 1e3:.2f} s, max {conv[-1] / 1e3:.2f} s "
                     f"(waited {o.converge_wait_s:.1f} s).")
    if o.failover is not None:
        lines.append(_fanout_cluster.failover_line(o.failover, o.written, o.reports))
    laggards = o.total("laggard_count")
    if laggards:
        sample = [lag for r in o.reports for lag in r["laggards"]][:5]
        lines.append(f"  - **{laggards} subscriber(s) did not reach the final version** within "
                     f"{o.converge_wait_s:.0f} s, e.g. {sample}.")
    if o.failed:
        lines.append(f"  - {o.failed} subscription(s) failed to open, e.g. {o.failures[:3]}.")
    errors = [e for r in o.reports for e in r["error_samples"]]
    if errors:
        lines.append(f"  - Client-side errors/closes, e.g. {errors[:3]}.")
    if o.written.errors and o.failover is None:
        lines.append(f"  - Writer errors: {o.written.errors}, e.g. {o.written.error_samples[:2]}.")
    probe = sorted(o.probe_ms)
    if probe:
        lines.append(f"  - Gateway event-loop delay seen by GET /healthz twice a second during "
                     f"the write: p50 {_ms(pct(probe, 50))} ms, max {_ms(probe[-1])} ms "
                     f"({len(probe)} probes).")
    if o.gc:
        w = o.written
        during = sorted(ms for t, ms in o.gc if w.started <= t <= w.stopped)
        lines.append(f"  - Gateway full (gen 2) garbage collections: {len(o.gc)} in all, "
                     f"{len(during)} during the write, pausing the event loop "
                     f"{sum(during) / 1e3:.2f} s in all, max {_ms(max(during, default=0))} ms; "
                     f"largest of the whole run {_ms(max(ms for _t, ms in o.gc))} ms.")
    lines.append(f"  - Gateway code: {o.code}.")
    lines.append(f"  - Writer: behind schedule by at most {o.written.behind_max} update(s); "
                 f"gateway RSS during the write: max {_mib(max(o.rss_series, default=0))} MiB; "
                 f"subscriber processes' peak RSS "
                 + " + ".join(_mib(r["maxrss_kb"]) for r in o.reports) + " MiB; "
                 f"gateway open-file limit {o.server_nofile}; gateway exit code "
                 f"{o.server_exit}.")
    if o.log_count:
        lines.append(f"  - **Gateway log: {o.log_count} line(s) at WARNING or above**, first:")
        lines += [f"    `{line}`" for line in o.log_first[:10]]
    else:
        lines.append("  - Gateway log: nothing at WARNING or above.")
    return lines


def report(args: argparse.Namespace, stack: Stack, seeded: Seeded,
           outcomes: list[Outcome]) -> str:
    writer = ("Lua script in Redis (HMGET + one HSET per update, pipelined every 5 ms; "
              "`writtenAtMs` is Redis TIME at the write)" if args.writer == "redis" else
              "`updateShadow` mutations over HTTP, 32 in flight (`writtenAtMs` is the "
              "writer's clock when it sent each)")
    subscription = (f"- Subscription: `{QUERY}` with `ids: [device i mod "
                    f"{len(seeded.devices)}]`; {len(seeded.devices)} demo devices "
                    f"({len(seeded.active)} ACTIVE with a seeded shadow; the writer's first "
                    f"update gives the others one), so {len(seeded.devices)} cohorts.")
    if args.subscription == "telemetry":
        writer = (f"NDJSON bodies POSTed to `/ingest` every {TELEMETRY_TICK * 1e3:.0f} ms "
                  "with the readings due, one request at a time (the reading's time is the "
                  "writer's clock at the send; its value numbers the device's readings)")
        subscription = (f"- Subscription: `{TELEMETRY_QUERY}` with `ids: [device i mod "
                        f"{len(seeded.devices)}]`, {len(seeded.devices)} demo devices; a "
                        "version is a reading's value, the final version the writer's last "
                        "value per device; latency = receipt minus the reading's time. "
                        "Updates/s below are readings/s.")
    lines = [delivery_table(outcomes), "", resource_table(outcomes), ""]
    if args.gateways > 1 or args.cluster:
        for o in outcomes:
            lines += [f"Per gateway, {o.config.subscribers:,} subscribers at "
                      f"{o.config.rate:g} updates/s:", "",
                      _fanout_cluster.gateway_table(o, args.gateways), ""]
    lines += [
        subscription,
        f"- Writer: {writer}, round-robin over the devices, {args.seconds:g} s per "
        f"configuration. Latency: receipt wall clock in the subscriber process minus "
        f"the write's time (`writtenAtMs`, or the reading's time), for every UPDATED "
        f"event (all columns) or only those received while the writer ran (the details).",
        "- Events: UPDATED events received; share of ideal = events / (versions a subscriber "
        "could have seen: its device's final version minus its SNAPSHOT's). Coalesced = "
        "versions skipped between consecutive events of a subscriber. Converged = "
        "subscribers whose last version equals the device's final version (in Redis, or the "
        "telemetry writer's last value) after "
        f"the writer stopped (waited at most {args.converge_timeout:g} s); convergence = "
        "receipt of that final version minus the writer's stop.",
        (f"- Clients: Node's `ws` (bench/_fanout_clients.mjs, Node {_node_version()}), "
         if args.client == "node" else
         f"- Clients: `websockets` {_version('websockets')} sans-I/O client protocol driven "
         f"by an asyncio.Protocol per socket, each message handled as it arrives "
         f"(bench/_fanout_clients.py), on uvloop, ")
        + f"compression {'off' if args.no_compression else 'permessage-deflate (as browsers)'}, "
        f"no client pings, {args.connect_parallel} handshakes in flight per process; "
        f"connect = connection_init, connection_ack, subscribe, first SNAPSHOT. Server: "
        + ("one `iotsphere serve` process" if args.gateways == 1 else
           f"{args.gateways} `iotsphere serve` processes on the same stores (subscriber i on "
           f"gateway i mod {args.gateways}; RSS and CPU columns above sum them)")
        + " (uvicorn, uvloop, websockets-sansio: the gateway's subclass with prepared "
          "frames, gateway/http/ws_protocol.py, where the code has it; log level INFO); "
        f"stores: {stack.how}. All on 127.0.0.1, on the same {os.cpu_count()} CPUs: the "
        f"gateway, the subscriber processes, the writer, Valkey and PostgreSQL compete.",
    ]
    if args.gc_freeze:
        lines.append("- **Experiment, not the gateway as shipped**: once every subscriber was "
                     "connected, the gateway process ran `gc.collect(); gc.freeze()` (through "
                     "a SIGUSR1 handler that the benchmark's launcher installed).")
    elif args.gc_stats:
        lines.append("- The gateway ran under a launcher that only logs its full garbage "
                     "collections (a `gc.callbacks` hook); the gateway code is unchanged.")
    for o in outcomes:
        lines += details(o)
    return "\n".join(lines)


def _node_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
    return "?"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


# ------------------------------------------------------------------------------ main

def _ints(text: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1000,10000, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("values must be >= 1")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 100,1000, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("rates must be > 0")
    return values




def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=_ints, default=[1000],
                        help="comma-separated subscriber counts (default 1000)")
    parser.add_argument("--rate", type=_floats, default=[1000.0],
                        help="comma-separated update rates per second (default 1000); every "
                             "(subscribers, rate) pair runs, each on a fresh gateway")
    parser.add_argument("--seconds", type=positive(float), default=30.0,
                        help="how long the writer runs per configuration (default 30)")
    parser.add_argument("--writer", choices=("redis", "mutation"), default="redis",
                        help="write straight into Redis (default) or via updateShadow")
    parser.add_argument("--subscription", choices=("shadow", "telemetry"), default="shadow",
                        help="shadowChanged (default) or telemetryChanged; telemetry "
                             "writes readings through POST /ingest (--writer is ignored)")
    parser.add_argument("--devices", type=positive(int), default=120,
                        help="devices to seed (default 120, the demo's)")
    parser.add_argument("--client-procs", type=int, default=0,
                        help="subscriber processes (default: 1 up to 2,500 subscribers, else 2)")
    parser.add_argument("--connect-parallel", type=positive(int), default=100,
                        help="handshakes in flight per subscriber process (default 100)")
    parser.add_argument("--step-timeout", type=positive(float), default=60.0,
                        help="time limit of one subscription's setup (default 60 s)")
    parser.add_argument("--connect-timeout", type=positive(float), default=900.0,
                        help="time limit for all subscriptions to open (default 900 s)")
    parser.add_argument("--converge-timeout", type=positive(float), default=30.0,
                        help="time limit to reach the final versions (default 30 s)")
    parser.add_argument("--no-compression", action="store_true",
                        help="do not offer permessage-deflate from the clients")
    parser.add_argument("--client", choices=("python", "node"), default="python",
                        help="subscriber processes: Python websockets (default; the figures "
                             "of record) or Node's ws from tests/js (lighter on the CPU the "
                             "gateway shares)")
    parser.add_argument("--profile-server", type=Path, metavar="DIR",
                        help="run the gateway under cProfile; its stats go to "
                             "DIR/gateway-s<subscribers>-r<rate>.prof (slows it down)")
    parser.add_argument("--gc-stats", action="store_true",
                        help="log the gateway's full garbage collections (gen 2) and their "
                             "pauses, and report them")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="experiment (implies --gc-stats): once every subscriber is "
                             "connected, the gateway runs gc.collect() and gc.freeze(), so "
                             "later full collections skip the objects alive then")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="also run each configuration against the gateway code of this "
                             "source tree (e.g. a git worktree of the old commit), first")
    parser.add_argument("--gateways", type=positive(int), default=1,
                        help="gateway processes on the same stores; subscriber i connects to "
                             "gateway i mod N (default 1)")
    parser.add_argument("--cluster", action="store_true",
                        help="shadows on a local 3-primary Valkey Cluster with a replica per "
                             "primary instead of the devstack's single Valkey")
    parser.add_argument("--failover-at", type=positive(float), metavar="SECONDS",
                        help="with --cluster: SIGKILL the primary holding the first device's "
                             "slot this long after the writer starts")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the gateway and subscriber logs (always kept on failure)")
    parser.add_argument("--write", action="store_true",
                        help=f"append a dated section to {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.failover_at is not None:
        if not args.cluster:
            parser.error("--failover-at needs --cluster")
        if len(args.subscribers) * len(args.rate) > 1 or args.baseline_tree is not None:
            parser.error("--failover-at runs one configuration: the failover leaves the "
                         "cluster a replica short for any next one")
        if args.subscription != "shadow" or args.writer != "redis":
            parser.error("--failover-at needs the shadow subscription and --writer redis")
    return args



async def run_all(configs: list[Config], stack: Stack, seeded: Seeded,
                  args: argparse.Namespace, log_dir: Path,
                  cluster: LocalCluster | None = None) -> list[Outcome]:
    outcomes = []
    for cfg in configs:
        # The baseline tree's gateway first, then this tree's, per configuration.
        for tree in ([args.baseline_tree] if args.baseline_tree else []) + [None]:
            outcome = await run_config(cfg, stack, seeded, args, log_dir, tree, cluster)
            outcomes.append(outcome)
            print(delivery_table([outcome]), file=sys.stderr, flush=True)
            if args.gateways > 1 or cluster is not None:
                print(_fanout_cluster.gateway_table(outcome, args.gateways), file=sys.stderr,
                      flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = [Config(s, r) for s in args.subscribers for r in args.rate]
    nofile = raise_nofile()
    need = max(args.subscribers) + 200
    if nofile < need:
        _say(f"warning: open-file limit {nofile} < {need}: the gateway may run out of sockets")
    stop_on_signals()
    log_dir = Path(tempfile.mkdtemp(prefix="iotsphere-fanout-log-"))
    keep = args.keep_logs
    started_on = _machine.code_version()
    try:
        with contextlib.ExitStack() as exits:
            _say("starting stores...")
            stack = exits.enter_context(stack_up(env_stores=True))
            cluster = None
            if args.cluster:
                _say("starting a local Valkey Cluster (3 primaries, a replica each)...")
                cluster = exits.enter_context(local_cluster(replicas=True))
                stack = dataclasses.replace(
                    stack, dsns={**stack.dsns, "redis": cluster.url},
                    how=f"{stack.how}; shadows on a local Valkey Cluster, 3 primaries with a "
                        f"replica each (gateway.runtime.valkey_cluster, cluster-node-timeout "
                        f"2 s)")
            _say(f"seeding {args.devices} devices...")
            # Telemetry plays no part here: a few minutes of it keep the seeding short.
            seeded = asyncio.run(seed_demo(stack.settings, "fanout", args.devices, 0.05))
            try:
                outcomes = asyncio.run(run_all(configs, stack, seeded, args, log_dir, cluster))
            except BaseException:
                keep = True
                raise
            info = machine_info(seeded)
            ended_on = info["Code"]
            if ended_on != started_on:  # others commit while it runs
                info["Code"] = f"{started_on} at the start, {ended_on} at the end"
            title = ", ".join(f"{c.subscribers:,} subs @ {c.rate:g}/s" for c in configs)
            if args.subscription == "telemetry":
                title = f"telemetryChanged, {title} readings"
            if args.gateways > 1:
                title += f", {args.gateways} gateways"
            if args.cluster:
                title += ", 3-primary Valkey Cluster"
            if args.failover_at is not None:
                title += f", a primary killed at {args.failover_at:g} s"
            body = report(args, stack, seeded, outcomes)
            print("\n".join(f"{k}: {v}" for k, v in info.items()))
            print()
            print(body)
            if any(o.log_count or o.total("laggard_count") for o in outcomes):
                keep = True
            if args.write:
                append_results(dated_section(f"fanout, {title}", info, body))
                _say(f"\nappended to {RESULTS}")
    except KeyboardInterrupt:
        _say("\ninterrupted; everything started was stopped")
        return 130
    except BenchError as exc:
        _say(f"bench failed: {exc}")
        return 1
    finally:
        _kill_children()
        if keep:
            _say(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
