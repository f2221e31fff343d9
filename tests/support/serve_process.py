"""A real ``iotsphere serve`` process on the test's databases, for tests of what only a
process shows: several workers, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.settings import PREFIX, Settings
from tests.support.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Application startup complete"  # once per worker, before it accepts
LISTENING = "Uvicorn running on"  # once the socket is bound (after STARTED with one worker)


@dataclass
class GatewayProcess:
    proc: asyncio.subprocess.Process
    address: str  # host:port
    lines: list[str] = field(default_factory=list)  # stdout and stderr, as they come

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self, within: float = 60.0) -> int:
        """The exit code; fails the test (with the output) if the process outlives
        ``within`` seconds."""
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            raise AssertionError(f"gateway still running after {within}s:\n{self.output}") from None


def environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """This environment without IOTSPHERE_* variables, plus the test's stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    assert settings.redis_url
    env.update({
        PREFIX + "REGISTRY_DSN": settings.registry_dsn,
        PREFIX + "ASSETS_DSN": settings.assets_dsn,
        PREFIX + "TELEMETRY_DSN": settings.telemetry_dsn,
        PREFIX + "REDIS_URL": settings.redis_url,
        PREFIX + "POOL_MAX_SIZE": "4",
        PREFIX + "LOG_LEVEL": "WARNING",  # the request log lines would only be noise
    })
    env.update({PREFIX + key: value for key, value in overrides.items()})
    return env


@asynccontextmanager
async def gateway_process(
    settings: Settings, *args: str, workers: int = 1, **overrides: str
) -> AsyncIterator[GatewayProcess]:
    """``iotsphere serve --workers N *args`` on a free port; yields once every worker has
    started; kills whatever is left at the end."""
    data_dir = tempfile.mkdtemp(prefix="iotsphere-serve-")
    try:
        env = environment(settings, DATA_DIR=data_dir, **overrides)
        async with serve_process(env, "--workers", str(workers), *args,
                                 workers=workers) as gateway:
            yield gateway
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def embedded_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    """This environment without IOTSPHERE_* variables, so the CLI runs the embedded stores
    in ``data_dir``, as ``make run`` does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update({PREFIX + "DATA_DIR": str(data_dir), PREFIX + "LOG_LEVEL": "WARNING"})
    env.update({PREFIX + key: value for key, value in overrides.items()})
    return env


@asynccontextmanager
async def serve_process(
    env: dict[str, str], *args: str, workers: int = 1, port: int | None = None,
    within: float = 90.0,
) -> AsyncIterator[GatewayProcess]:
    """``iotsphere serve --host 127.0.0.1 --port P *args`` with ``env``; yields once every
    worker has started and the port is bound (or fails with the output after ``within``
    seconds); kills whatever is left at the end."""
    port = port or free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.runtime.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: workers included at cleanup
    )
    gateway = GatewayProcess(proc, f"127.0.0.1:{port}")

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            gateway.lines.append(line.decode(errors="replace").rstrip())

    reader = asyncio.create_task(collect())
    try:
        deadline = asyncio.get_running_loop().time() + within
        while gateway.output.count(STARTED) < workers or LISTENING not in gateway.output:
            if proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"gateway did not start:\n{gateway.output}")
            await asyncio.sleep(0.05)
        yield gateway
    finally:
        if proc.returncode is None:
            gateway.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        await asyncio.wait_for(reader, 10)
