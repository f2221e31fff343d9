"""The application each uvicorn worker process serves, built from the environment.

``iotsphere serve`` resolves the stores once (starting the embedded ones, migrating,
creating the demo tenant and its data), puts every DSN into the environment (``export``),
and hands uvicorn the factory ``gateway.runtime.workers:app``. With ``--workers N`` uvicorn spawns
N processes that each call it: every worker has its own pools and its own subscription hub.
Nothing a request needs lives only in one worker: API keys, shadows and telemetry are in
the stores, and each hub hears every shadow change from Redis keyspace notifications, so
a mutation served by one worker reaches subscribers on all of them.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from starlette.types import ASGIApp

from gateway import tracing
from gateway.runtime.draining import DrainGuard
from gateway.settings import PREFIX, Settings

# Where the embedded demo tenant's admin key is (GraphiQL's prefilled header). Not a
# setting: only `iotsphere serve` sets it, for its own workers.
DEV_KEY_FILE = "_IOTSPHERE_DEV_KEY_FILE"


def export(settings: Settings, dev_key_file: Path | None) -> None:
    """Puts what the parent resolved into the environment its workers inherit."""
    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    assert settings.redis_url
    os.environ.update({
        PREFIX + "REGISTRY_DSN": settings.registry_dsn,
        PREFIX + "ASSETS_DSN": settings.assets_dsn,
        PREFIX + "TELEMETRY_DSN": settings.telemetry_dsn,
        PREFIX + "REDIS_URL": settings.redis_url,
    })
    if dev_key_file is not None:
        os.environ[DEV_KEY_FILE] = str(dev_key_file)


def log_level() -> int:
    """``IOTSPHERE_LOG_LEVEL`` as a number (an unknown name is INFO's): the gateway's
    loggers' level, and whether uvicorn writes access lines (at WARNING it wrote one per
    request all the same: 2% of a subset request's CPU, py-spy at c8)."""
    level = logging.getLevelName(os.environ.get("IOTSPHERE_LOG_LEVEL", "INFO").upper())
    return level if isinstance(level, int) else logging.INFO


def configure_logging() -> None:
    """Gateway log lines (JSON request lines included) to stderr, in the CLI and in each
    spawned worker, which starts with no logging set up."""
    logging.basicConfig(level=log_level(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def app() -> ASGIApp:
    """uvicorn's factory: the gateway for the settings in the environment."""
    from gateway.app import create_app
    from gateway.writes.tenants import read_key_file

    configure_logging()
    settings = Settings.from_env()
    if settings.embedded:
        raise RuntimeError(
            "gateway.runtime.workers:app needs every DSN; start it with `iotsphere serve`"
        )
    tracing.configure(settings)
    key_file = os.environ.get(DEV_KEY_FILE)
    dev_key = read_key_file(Path(key_file)) if key_file else None
    built = create_app(settings, dev_key=dev_key)
    # Long-lived objects (schema, modules) leave the GC's view, and young collections run
    # less often: GC measured 17-40 ms of a 100-device dashboard request with the defaults.
    # Full collections must still come often enough: with (50_000, 20, 20) cyclic garbage
    # piled up between them (soak RSS 172 -> 233 MiB in 4 minutes, levelling off at ~254).
    # Each full collection walks every live object, though, which with 10,000 subscribers
    # stalls fan-out: (50_000, 5, 2) kept the soak at 126 -> 144 MiB but took the 10,000 x
    # 100/s fan-out p99 from 455 ms to 4.2 s. (50_000, 10, 5): soak 147 -> 166 MiB, fan-out
    # p99 403 ms, throughput unchanged. Measurements in bench/RESULTS.md (soak). Since
    # then the garbage those full collections were for is gone at its source (each
    # request's rows are released when it is answered; bench/RESULTS.md, "Memory that
    # levels off"); the thresholds stay until the fan-out is measured without them.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 5)
    return DrainGuard(built, settings.shutdown_grace)
