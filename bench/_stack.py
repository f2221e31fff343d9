"""The one way every benchmark gets its stores, its data and its gateway server.

- ``stack_up()``: the four stores. An embedded devstack (gateway.runtime.devstack: PostgreSQL 18 and
  Valkey) in a fresh temp dir, stopped and removed afterwards; or, with ``env_stores=True``,
  the stores named by IOTSPHERE_REGISTRY_DSN, _ASSETS_DSN, _TELEMETRY_DSN and _REDIS_URL
  when all four are set (what is seeded for the benchmark then stays in them).
- ``tenant_with_devices()`` (bare ACTIVE devices) or ``seed_demo()`` (the demo fleet of
  gateway.runtime.demo.seed_fleet: asset tree, shadows, telemetry): migrates first.
- ``Server``: the gateway as ``iotsphere serve`` in its own process and session on a free
  127.0.0.1 port with every DSN set (so nothing embedded starts: it migrates and serves),
  ready once GET /readyz answers 200; stopped with SIGINT (uvicorn's graceful shutdown),
  killed if that takes too long. It gets SIGTERM should the benchmark die.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from uuid import UUID

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

from bench._machine import machine_info  # noqa: E402
from bench._procs import (  # noqa: E402
    child_preexec,
    cpu_seconds,
    proc_status,
    with_descendants,
)
from gateway.runtime.devstack import free_port  # noqa: E402,F401 - the benchmarks take it from here
from gateway.settings import Settings  # noqa: E402

HOST = "127.0.0.1"
DSN_ENV = {
    "registry": "IOTSPHERE_REGISTRY_DSN", "assets": "IOTSPHERE_ASSETS_DSN",
    "telemetry": "IOTSPHERE_TELEMETRY_DSN", "redis": "IOTSPHERE_REDIS_URL",
}
SERVER_START_TIMEOUT = 90.0
SERVER_STOP_TIMEOUT = 30.0
START_MARK = "=== bench: gateway started"  # in the log before each start attempt


class BenchError(RuntimeError):
    """The benchmark could not run, or what it measured was wrong."""


# ------------------------------------------------------------------------------ stores

@dataclass(frozen=True)
class Stack:
    dsns: dict[str, str]  # registry, assets, telemetry, redis
    how: str
    data_dir: Path | None = None  # the devstack's: its processes work there

    @property
    def settings(self) -> Settings:
        """IOTSPHERE_* from the environment (pool sizes, timeouts...) with these stores."""
        base = Settings.from_env()
        unlimited = {} if "IOTSPHERE_RATE_LIMIT" in os.environ else {"rate_limit": 0.0}
        return Settings(**{**base.__dict__, **unlimited, "registry_dsn": self.dsns["registry"],
                           "assets_dsn": self.dsns["assets"],
                           "telemetry_dsn": self.dsns["telemetry"],
                           "redis_url": self.dsns["redis"]})

    @property
    def env(self) -> dict[str, str]:
        return {DSN_ENV[store]: dsn for store, dsn in self.dsns.items()}


@contextlib.contextmanager
def stack_up(*, env_stores: bool = False) -> Iterator[Stack]:
    given = {store: os.environ.get(var, "") for store, var in DSN_ENV.items()}
    if env_stores and all(given.values()):
        yield Stack(given, "IOTSPHERE_* DSNs from the environment")
        return
    from gateway.runtime.devstack import DevStack

    # As root, PostgreSQL runs as a system user that must be able to traverse the dir.
    data_dir = Path(tempfile.mkdtemp(prefix="iotsphere-bench-"))
    try:
        data_dir.chmod(0o711)
        with DevStack(data_dir) as ep:
            yield Stack({"registry": ep.dsn("registry"), "assets": ep.dsn("assets"),
                         "telemetry": ep.dsn("telemetry"), "redis": ep.redis_url},
                        "embedded devstack (gateway.runtime.devstack)", data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ------------------------------------------------------------------------------ data

async def _migrate(settings: Settings) -> None:
    from gateway.stores.migrations import migrate_all

    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    await migrate_all({"registry": settings.registry_dsn, "assets": settings.assets_dsn,
                       "telemetry": settings.telemetry_dsn})


async def tenant_with_devices(settings: Settings, devices: int) -> tuple[UUID, str, list[UUID]]:
    """Migrates the stores, then creates a tenant with ``devices`` ACTIVE devices."""
    from gateway.auth.callers import create_tenant_with_admin_key
    from gateway.stores import open_stores

    await _migrate(settings)
    async with open_stores(settings) as stores:
        tenant_id, key = await create_tenant_with_admin_key(stores.registry, "bench")
        ids = []
        for n in range(devices):
            row = await stores.registry.insert_device(
                tenant_id, serial=f"B{n:05d}", name=f"bench {n}", type="sensor",
                status="ACTIVE")
            ids.append(row["id"])
        return tenant_id, key, ids


@dataclass
class Seeded:
    key: str  # the tenant's admin API key
    tenant_id: str
    tenant: str  # its name: <prefix>-<time>-<pid>
    devices: list[str]
    active: list[str]  # the ACTIVE ones: each has a seeded shadow
    readings: int
    seconds: float  # how long seeding took
    pg_version: str
    valkey_version: str


async def seed_demo(settings: Settings, prefix: str, devices: int, hours: float) -> Seeded:
    """Migrates, creates a tenant and its admin key and seeds the demo fleet with ``hours``
    of one-minute telemetry; then ANALYZE, so the planner sees the data as it will be."""
    from gateway.auth.callers import create_tenant_with_admin_key
    from gateway.runtime.demo import seed_fleet
    from gateway.stores import open_stores

    await _migrate(settings)
    async with open_stores(settings) as stores:
        name = f"{prefix}-{datetime.now(UTC):%Y%m%d%H%M%S}-{os.getpid()}"
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
        for store in (stores.registry, stores.assets, stores.telemetry):
            async with store.pool.acquire() as conn:
                await conn.execute("ANALYZE")
    return Seeded(key, str(tenant_id), name, [str(d) for d in fleet.devices],
                  [str(d) for d in fleet.active], int(readings), seconds,
                  f"PostgreSQL {pg_version}", valkey)


# ------------------------------------------------------------------------------ server

@dataclass
class Server:
    """The gateway in its own process. ``launcher`` replaces the program that runs
    ``serve --host --port`` (a wrapper that instruments the process, cProfile...);
    ``workers`` > 1 is ``iotsphere serve --workers N``: its supervisor and N workers, each
    with its own SO_REUSEPORT socket."""

    stack: Stack
    log_path: Path
    workers: int = 1
    launcher: list[str] | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_level: str = "WARNING"
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            self._spawn()
            if self._wait_ready():
                return
            self.stop()
        raise BenchError(f"the gateway did not start; tail of {self.log_path}:\n{self.tail()}")

    def _command(self) -> list[str]:
        program = self.launcher
        if program is None:
            exe = Path(sys.executable).parent / "iotsphere"
            program = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.runtime.cli"]
        workers = ["--workers", str(self.workers)] if self.workers > 1 else []
        return [*program, "serve", "--host", HOST, "--port", str(self.port), *workers,
                *self.extra_args]

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in DSN_ENV.values() and k != "IOTSPHERE_PORT"}
        env.update(self.stack.env)
        env["IOTSPHERE_DATA_DIR"] = str(self.log_path.parent)  # nothing is written there
        env["IOTSPHERE_LOG_LEVEL"] = self.log_level
        # Benchmarks drive one key far past a client's fair share: measure the gateway,
        # not the per-key rate limit (IOTSPHERE_RATE_LIMIT in the environment still wins).
        env.setdefault("IOTSPHERE_RATE_LIMIT", "0")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env.update(self.env)
        with self.log_path.open("ab") as log:
            log.write(f"{START_MARK} on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self._command(), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True, preexec_fn=child_preexec)

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

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory(self) -> dict[str, int]:
        """VmRSS, VmHWM... of the server process, KiB."""
        return proc_status(self.pid) if self.proc is not None else {}

    def rss_kib(self, name: str = "VmRSS") -> int:
        return self.memory().get(name, 0)

    def cpu_seconds(self) -> float:
        """CPU seconds of the server and its workers."""
        return sum(cpu_seconds(p) for p in with_descendants(self.pid)) if self.proc else 0.0

    def nofile(self) -> str:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    return line.split()[3]
        return "?"

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def log_findings(self, limit: int = 25) -> tuple[int, list[str]]:
        """Log lines at WARNING or above, and tracebacks, since the last start attempt (a
        failed attempt is retried): how many, and the first ones."""
        count, first = 0, list[str]()
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            for line in text[max(0, text.rfind(START_MARK)):].splitlines():
                if any(m in line for m in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback",
                                           "Error:")):
                    count += 1
                    if len(first) < limit:
                        first.append(line[:400])
        return count, first

    def stop(self) -> int | None:
        """Stops the server; returns its exit code. SIGINT, as a Ctrl-C: uvicorn shuts down
        gracefully, then re-raises it, which ``iotsphere serve`` takes as a normal end."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        return proc.returncode


# ------------------------------------------------------------------------------ report

def machine() -> str:
    info = machine_info("PostgreSQL 18 and Valkey 8.1 (embedded)", ())
    return (f"{info['CPU']}, {info['Cores']}, {info['RAM']}, {info['Python']}, "
            f"{info['Stores']}, code {info['Code']}")


RESULTS = ROOT / "bench" / "RESULTS.md"


def dated_section(title: str, info: dict[str, str], body: str) -> str:
    """A section titled with the time, the machine as a table, then ``body``."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    return f"## {stamp}: {title}\n\n| machine | |\n|---|---|\n{machine}\n\n{body}\n"


def append_results(section: str) -> None:
    """Appends a section to bench/RESULTS.md (others append theirs too: never rewrite)."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with RESULTS.open("a") as fh:
        fh.write("\n" + section.strip("\n") + "\n")
