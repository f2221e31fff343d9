"""What the ingest and telemetry benchmarks share: embedded stores in a temporary dir, a
migrated tenant with devices, the gateway as a separate server process, machine facts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._machine import machine_info  # noqa: E402
from gateway.auth import create_tenant_with_admin_key  # noqa: E402
from gateway.devstack import DevStack  # noqa: E402
from gateway.migrate import migrate_all  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.stores import open_stores  # noqa: E402

STORES = ("registry", "assets", "telemetry")


@dataclass(frozen=True)
class Stack:
    settings: Settings
    env: dict[str, str]


@contextmanager
def embedded_stack() -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="iotsphere-bench-"))
    data_dir.chmod(0o711)
    try:
        with DevStack(data_dir) as ep:
            dsns = {s: ep.dsn(s) for s in STORES}
            settings = Settings(registry_dsn=dsns["registry"], assets_dsn=dsns["assets"],
                                telemetry_dsn=dsns["telemetry"], redis_url=ep.redis_url)
            env = {f"IOTSPHERE_{s.upper()}_DSN": d for s, d in dsns.items()}
            env["IOTSPHERE_REDIS_URL"] = ep.redis_url
            yield Stack(settings, env)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def tenant_with_devices(settings: Settings, devices: int) -> tuple[UUID, str, list[UUID]]:
    """Migrates the stores, then creates a tenant with ``devices`` ACTIVE devices."""
    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    await migrate_all({"registry": settings.registry_dsn, "assets": settings.assets_dsn,
                       "telemetry": settings.telemetry_dsn})
    async with open_stores(settings) as stores:
        tenant_id, key = await create_tenant_with_admin_key(stores.registry, "bench")
        ids = []
        for n in range(devices):
            row = await stores.registry.insert_device(
                tenant_id, serial=f"B{n:05d}", name=f"bench {n}", type="sensor",
                status="ACTIVE")
            ids.append(row["id"])
        return tenant_id, key, ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def rss_kib(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def gateway_server(stack: Stack, log: Path) -> Iterator[Server]:
    """``iotsphere serve`` with every DSN set (nothing embedded), on a free port."""
    port = free_port()
    env = {**os.environ, **stack.env, "IOTSPHERE_PORT": str(port),
           "IOTSPHERE_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "iotsphere"), "serve"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited: see {log}")
            try:
                if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready within 60 s: see {log}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def machine() -> str:
    info = machine_info("PostgreSQL 18 and Valkey 8.1 (embedded)", ())
    return (f"{info['CPU']}, {info['Cores']}, {info['RAM']}, {info['Python']}, "
            f"{info['Stores']}, code {info['Code']}")


def append_results(section: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n")
