"""The ``iotsphere`` command: serve, migrate, tenant create/list."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway.runtime.banner import banner, base_url, exposure_warning
from gateway.runtime.workers import configure_logging, export, log_level
from gateway.settings import Settings, SettingsError

if TYPE_CHECKING:
    from gateway.stores import Stores

log = logging.getLogger("gateway.runtime.cli")


@contextmanager
def resolved_settings(settings: Settings, *, share: bool = True) -> Iterator[Settings]:
    """Settings with every DSN filled in: the operator's, or the embedded stack's for those
    left unset. Embedded servers this process started stop when the block ends; beside a
    live gateway on the same DATA_DIR its servers are used (``share``) or, for a second
    ``serve``, refused (DevStackBusy)."""
    if not settings.embedded:
        yield settings
        return
    from gateway.runtime.devstack import DevStack

    with DevStack(settings.data_dir, share=share) as endpoints:
        yield settings.with_stores(
            registry=endpoints.dsn("registry"), assets=endpoints.dsn("assets"),
            telemetry=endpoints.dsn("telemetry"), redis=endpoints.redis_url,
        )


def _migrate(settings: Settings) -> dict[str, list[str]]:
    from gateway.stores.migrations import migrate_all

    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    return asyncio.run(migrate_all({
        "registry": settings.registry_dsn, "assets": settings.assets_dsn,
        "telemetry": settings.telemetry_dsn,
    }, settings.metadata_range_paths))


async def _move_shadow_keys(settings: Settings) -> int:
    """Moves shadows of the old per-tenant key layout (every run: an old replica may have
    written since the last one)."""
    from gateway.stores.redis_client import connect_url
    from gateway.stores.shadow_layout import move_old_layout

    assert settings.redis_url
    client = connect_url(settings.redis_url)
    try:
        return await move_old_layout(client)
    finally:
        await client.aclose()


def _dev_key(settings: Settings) -> str:
    """The demo tenant's admin key, created on first start and kept in DATA_DIR/admin-key."""
    from gateway.writes.tenants import ensure_demo_tenant, read_key_file, write_key_file

    key_file = settings.data_dir / "admin-key"
    known = read_key_file(key_file)
    key = asyncio.run(ensure_demo_tenant(settings, known))
    if key != known:
        write_key_file(key_file, key)
    return key


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Resolves the stores once in this process, then runs the workers: in this process
    for one, as child processes for more. Embedded stores stop after the last worker."""
    settings = replace(
        settings, host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        workers=args.workers or settings.workers,
    )
    # SIGTERM unwinds like Ctrl-C (uvicorn re-raises it once it has shut down), so the
    # embedded stores below are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    embedded = settings.embedded
    warning = exposure_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        with resolved_settings(settings, share=False) as ready:
            if embedded or args.demo:
                # External stores are migrated by each worker's lifespan, which starts
                # even while one is down and migrates it when it comes back.
                _migrate(ready)
            dev_key = _dev_key(ready) if embedded else None
            if args.demo:
                from gateway.runtime.demo import prepare_demo

                asyncio.run(_with_stores(ready, prepare_demo))
            export(ready, ready.data_dir / "admin-key" if dev_key else None)
            with _demo_simulator(ready) if args.demo else nullcontext():
                return _run_workers(ready, dev_key)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM before or after serving; everything above has stopped
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def uvicorn_ws(settings: Settings) -> str:
    """uvicorn's WebSocket implementation for ``WS_COMPRESSION``: the gateway's
    websockets-sansio with prepared frames for subscription results (``shared``), or
    uvicorn's own, which compresses per socket with context takeover (``per-socket``)."""
    from gateway.http.ws_protocol import WS_PROTOCOL

    return WS_PROTOCOL if settings.ws_compression == "shared" else "websockets-sansio"


def _run_workers(settings: Settings, dev_key: str | None) -> int:
    """Binds the port, prints the banner (so a port clash shows only the error), then
    serves until Ctrl-C or SIGTERM."""
    import uvicorn

    from gateway.runtime import supervisor

    config = uvicorn.Config(
        "gateway.runtime.workers:app", factory=True, host=settings.host, port=settings.port,
        # uvicorn's own lines (started, listening, stopping) stay at INFO: few, and what
        # an operator and the process tests wait for. Its access line per request
        # follows IOTSPHERE_LOG_LEVEL like the gateway's request lines.
        log_level="info", access_log=log_level() <= logging.INFO,
        ws=uvicorn_ws(settings),
        # In-flight requests get the grace period; bodies stop a little earlier
        # (gateway/runtime/draining.py).
        timeout_graceful_shutdown=max(int(math.ceil(settings.shutdown_grace)), 1),
    )
    try:
        if settings.workers == 1:
            # No SO_REUSEPORT here: a second gateway on this port must fail, not share it.
            family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
            sockets = [socket.create_server((settings.host, settings.port), family=family,
                                            backlog=2048)]
        else:
            sockets = supervisor.reuseport_sockets(settings.host, settings.port,
                                                   settings.workers)
    except OSError as exc:
        print(f"iotsphere: cannot listen on {settings.host}:{settings.port}: "
              f"{os.strerror(exc.errno) if exc.errno else exc}", file=sys.stderr)
        return 1
    port = sockets[0].getsockname()[1]
    print(banner(settings, port, dev_key), flush=True)
    if settings.workers == 1:
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s (Press CTRL+C to quit)", base_url(settings.host, port))
        try:
            uvicorn.Server(config).run(sockets=sockets)
        finally:
            sockets[0].close()
    else:
        supervisor.run(config, sockets, settings.shutdown_grace)
    return 0


async def _with_stores(settings: Settings, work: Callable[[Stores, Settings], Awaitable[None]]
                       ) -> None:
    from gateway.stores import open_stores

    async with open_stores(settings) as stores:
        await work(stores, settings)


@contextmanager
def _demo_simulator(settings: Settings) -> Iterator[None]:
    """The demo simulator on its own event loop in a thread of this process: one for any
    number of workers, stopped before the stores are."""
    from gateway.runtime.demo import run_demo

    loop = asyncio.new_event_loop()
    task = loop.create_task(_with_stores(settings, run_demo))

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("demo simulator stopped")
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="demo-simulator", daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    with resolved_settings(settings) as ready:
        for store, versions in _migrate(ready).items():
            print(f"{store}: {'applied ' + ', '.join(versions) if versions else 'up to date'}")
        moved = asyncio.run(_move_shadow_keys(ready))
        print(f"shadows: {f'moved {moved} keys to' if moved else 'up to date in'} "
              "the per-device key layout")
    return 0


def cmd_tenant(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.writes.tenants import TenantNameError, create_tenant, list_tenants

    with resolved_settings(settings) as ready:
        _migrate(ready)
        if args.action == "create":
            try:
                tenant_id, key = asyncio.run(create_tenant(ready, args.name))
            except TenantNameError as exc:
                print(f"iotsphere: {exc}", file=sys.stderr)
                return 1
            print(f"tenant {args.name.strip()} ({tenant_id})")
            print(f"admin key (shown once, store it now): {key}")
        else:
            for row in asyncio.run(list_tenants(ready)):
                print(f"{row['id']}  {row['name']}  {row['created_at'].isoformat()}")
    return 0


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


_DESCRIPTION = "IoTSphere Gateway: one GraphQL API over devices, assets, telemetry and shadows."
_EPILOG = """\
examples:
  iotsphere serve --demo             gateway with demo data on http://127.0.0.1:8000/graphql
  iotsphere tenant create acme       a tenant and its admin key (printed once)
  iotsphere tenant list
  iotsphere migrate                  apply pending migrations

Settings come from IOTSPHERE_* environment variables (docs/configuration.md). Without
IOTSPHERE_*_DSN the stores are embedded, kept in IOTSPHERE_DATA_DIR (default .iotsphere);
a command run beside a gateway serving that directory uses its stores.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iotsphere", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the gateway (embedded stores when DSNs are unset)",
                           description="Run the gateway. Without IOTSPHERE_*_DSN settings it "
                           "starts embedded PostgreSQL and Valkey in IOTSPHERE_DATA_DIR.")
    serve.add_argument("--demo", action="store_true",
                       help="seed demo data once and keep a simulator running")
    serve.add_argument("--host", help="address to listen on (default: IOTSPHERE_HOST, "
                       "else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: IOTSPHERE_PORT, "
                       "else 8000; 0 picks a free one)")
    serve.add_argument("--workers", type=_positive, metavar="N",
                       help="worker processes (default: IOTSPHERE_WORKERS, else 1)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)
    tenant = sub.add_parser("tenant", help="create or list tenants")
    tenant_sub = tenant.add_subparsers(dest="action", required=True)
    create = tenant_sub.add_parser("create", help="create a tenant and print its admin key")
    create.add_argument("name")
    tenant_sub.add_parser("list", help="list tenants")
    tenant.set_defaults(func=cmd_tenant)

    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"iotsphere: {exc}", file=sys.stderr)
        return 2
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    from gateway.runtime.devstack import DevStackError

    try:
        return int(args.func(args, settings))
    except DevStackError as exc:
        print(f"iotsphere: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
