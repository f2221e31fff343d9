"""PostGraphile v5 beside the gateway, for bench/vs_postgraphile.py: its Node install, its
database, its server process and the autocannon runs that load both servers.

- ``ensure_node_modules()``: bench/postgraphile/ holds package.json and package-lock.json
  (PostGraphile, pg, autocannon and Node 22 itself, the npm package ``node``); ``npm ci``
  runs there when node_modules is missing or older than the lock file.
- ``copy_fleet()``: one tenant's devices (registry DB) with their profile (asset DB:
  asset_id, metadata...) and its assets, copied into ONE new database on the registry's
  server with the foreign keys PostGraphile turns into relations (devices.asset_id ->
  assets, assets.parent_id -> assets). Same columns, same values.
- ``PostGraphile``: bench/postgraphile/server.mjs in its own process and session, ready
  once it answers a GraphQL request; SIGTERM to stop, SIGKILL to the group if that hangs.
- ``autocannon()``: one run of bench/postgraphile/load.mjs against a URL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx
import orjson

from bench._procs import child_preexec
from bench._stack import HOST, ROOT, BenchError, free_port

NODE_DIR = ROOT / "bench" / "postgraphile"
NODE = NODE_DIR / "node_modules" / ".bin" / "node"
NODE_MAJOR = "v22."
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


# ------------------------------------------------------------------------------ Node

def ensure_node_modules() -> str:
    """Installs bench/postgraphile's packages when needed; returns Node's version."""
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        # The machine's own npm runs the install; the `node` package's install script puts
        # the Node 22 binary under node_modules/.bin.
        try:
            done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                  cwd=NODE_DIR, capture_output=True, text=True, timeout=900)
        except FileNotFoundError:
            raise BenchError("npm is not installed (apt-get install npm)") from None
        if done.returncode != 0:
            raise BenchError(f"npm ci in {NODE_DIR} failed:\n{done.stderr[-3000:]}")
    version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip() if NODE.exists() else ""
    if not version.startswith(NODE_MAJOR):
        raise BenchError(f"{NODE} is {version or 'missing'}, expected Node 22 "
                         f"(delete {NODE_DIR / 'node_modules'} and rerun)")
    return version


def package_version(name: str) -> str:
    """The installed version of an npm package of bench/postgraphile."""
    try:
        meta = orjson.loads((NODE_DIR / "node_modules" / name / "package.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return "?"
    return str(meta.get("version", "?"))


# ------------------------------------------------------------------------------ database

SCHEMA = """
CREATE TABLE assets (
    tenant_id   uuid NOT NULL,
    id          uuid PRIMARY KEY,
    parent_id   uuid REFERENCES assets (id),
    path        uuid[] NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,
    attributes  jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX assets_parent ON assets (parent_id);
-- The registry's devices row and the asset DB's device_profiles row side by side.
CREATE TABLE devices (
    tenant_id        uuid NOT NULL,
    id               uuid PRIMARY KEY,
    serial           text NOT NULL,
    name             text NOT NULL,
    type             text NOT NULL,
    status           text NOT NULL,
    firmware_version text,
    labels           text[] NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_seen_at     timestamptz,
    asset_id         uuid REFERENCES assets (id),
    metadata         jsonb,
    capabilities     jsonb
);
-- The gateway's page order (created_at, id), indexed as in the registry.
CREATE INDEX devices_page ON devices (created_at, id);
CREATE INDEX devices_asset ON devices (asset_id);
"""
ASSET_COLUMNS = ["tenant_id", "id", "parent_id", "path", "name", "kind", "attributes",
                 "created_at", "updated_at"]
DEVICE_COLUMNS = ["tenant_id", "id", "serial", "name", "type", "status", "firmware_version",
                  "labels", "created_at", "updated_at", "last_seen_at"]
PROFILE_COLUMNS = ["asset_id", "metadata", "capabilities"]


def database_dsn(server_dsn: str, database: str) -> str:
    return urlsplit(server_dsn)._replace(path=f"/{database}").geturl()


async def copy_fleet(registry_dsn: str, assets_dsn: str, tenant_id: UUID | str,
                     database: str) -> tuple[str, int, int]:
    """(Re)creates ``database`` on the registry's server and copies the tenant's devices and
    assets into it; returns its DSN and the device and asset counts."""
    tenant = UUID(str(tenant_id))
    admin = await asyncpg.connect(registry_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
        devices = await admin.fetch(
            f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices WHERE tenant_id = $1", tenant)
    finally:
        await admin.close()
    source = await asyncpg.connect(assets_dsn)
    try:
        # Parents before children, so the self-reference holds row by row.
        assets = await source.fetch(
            f"SELECT {', '.join(ASSET_COLUMNS)} FROM assets WHERE tenant_id = $1 "
            "ORDER BY cardinality(path), id", tenant)
        profiles = {r["device_id"]: r for r in await source.fetch(
            f"SELECT device_id, {', '.join(PROFILE_COLUMNS)} FROM device_profiles "
            "WHERE tenant_id = $1", tenant)}
    finally:
        await source.close()
    dsn = database_dsn(registry_dsn, database)
    target = await asyncpg.connect(dsn)
    try:
        await target.execute(SCHEMA)
        await target.copy_records_to_table(
            "assets", columns=ASSET_COLUMNS, records=[tuple(r) for r in assets])
        rows = []
        for device in devices:
            profile = profiles.get(device["id"])
            extra = tuple(profile[c] for c in PROFILE_COLUMNS) if profile else (None,) * 3
            rows.append((*device, *extra))
        await target.copy_records_to_table(
            "devices", columns=DEVICE_COLUMNS + PROFILE_COLUMNS, records=rows)
        await target.execute("ANALYZE")
    finally:
        await target.close()
    return dsn, len(devices), len(assets)


async def drop_database(registry_dsn: str, database: str) -> None:
    admin = await asyncpg.connect(registry_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


# ------------------------------------------------------------------------------ server

@dataclass
class PostGraphile:
    """bench/postgraphile/server.mjs over ``dsn`` on a free 127.0.0.1 port."""

    dsn: str
    log_path: Path
    probe: bytes  # a GraphQL request body that must answer 200 once the server is ready
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def __enter__(self) -> PostGraphile:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            env = {**os.environ, "DATABASE_URL": self.dsn, "HOST": HOST,
                   "PORT": str(self.port), "NODE_ENV": "production"}
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [str(NODE), str(NODE_DIR / "server.mjs")], cwd=NODE_DIR, env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    preexec_fn=child_preexec)
            if self._wait_ready():
                return self
            self.stop()
        raise BenchError(f"PostGraphile did not start; tail of {self.log_path}:\n{self.tail()}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    answer = client.post(self.url, content=self.probe,
                                         headers={"content-type": "application/json"})
                    if answer.status_code == 200:
                        return True
                time.sleep(0.2)
        return False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


# ------------------------------------------------------------------------------ load

@dataclass
class Run:
    """One autocannon run: every response's latency (ms) and what came back."""

    seconds: float
    latencies: list[float]
    statuses: dict[str, int]
    sizes: dict[str, int]  # response bytes -> responses
    errors: int
    timeouts: int
    client_cpu_ms: float


def autocannon(url: str, body: bytes, headers: dict[str, str], connections: int,
               seconds: float) -> Run:
    spec = orjson.dumps({"url": url, "body": body.decode(), "headers": headers,
                         "connections": connections, "seconds": seconds})
    done = subprocess.run([str(NODE), str(NODE_DIR / "load.mjs"), spec.decode()],
                          cwd=NODE_DIR, capture_output=True, timeout=seconds + 120,
                          preexec_fn=child_preexec)
    if done.returncode != 0:
        raise BenchError(f"autocannon failed: {done.stderr.decode(errors='replace')[-2000:]}")
    out: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return Run(float(out["seconds"]), [float(x) for x in out["latencies"]], out["statuses"],
               out["sizes"], int(out["errors"]), int(out["timeouts"]), float(out["clientCpuMs"]))
