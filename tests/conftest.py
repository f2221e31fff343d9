"""Real stores for the whole suite, fresh state for every test.

Servers come from, in order: ``IOTSPHERE_TEST_PG_DSN`` + ``IOTSPHERE_TEST_REDIS_URL`` (an
existing PostgreSQL superuser DSN and Redis), testcontainers when a Docker engine answers,
or the embedded devstack. Each test gets its three databases cloned from migrated
templates and a flushed Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from gateway.app import create_app
from gateway.auth.callers import create_tenant_with_admin_key
from gateway.live.hub import ShadowHub
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.migrations import STORES, migrate
from tests.support.lifespan import Lifespan
from tests.support.live_server import serve_gateway

# Property tests (hypothesis) run from one seed per run, chosen here unless given, printed
# in the header and beside every failure, so any failing run can be replayed exactly.
HYPOTHESIS_SEED = "hypothesis_seed"


@pytest.hookimpl(tryfirst=True)  # before hypothesis's plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption(HYPOTHESIS_SEED, None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption(HYPOTHESIS_SEED)
    return f"hypothesis seed: {seed} (replay with --hypothesis-seed={seed})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and item.get_closest_marker("hypothesis") is not None:
        seed = item.config.getoption(HYPOTHESIS_SEED)
        report.sections.append(("hypothesis seed", f"replay with --hypothesis-seed={seed}"))
    return report


@dataclass(frozen=True)
class Servers:
    pg_dsn: str  # a superuser DSN; its database part is replaced per use
    redis_url: str
    how: str

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.pg_dsn)
        return urlunsplit(parts._replace(path="/" + database))


def _docker_available() -> bool:
    """A Docker engine answers /_ping on its socket (or DOCKER_HOST is set explicitly)."""
    if os.environ.get("DOCKER_HOST"):
        return True
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect("/var/run/docker.sock")
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in sock.recv(1024)
    except OSError:
        return False


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    pg, rd = os.environ.get("IOTSPHERE_TEST_PG_DSN"), os.environ.get("IOTSPHERE_TEST_REDIS_URL")
    if pg and rd:
        yield Servers(pg, rd, "environment")
        return
    with ExitStack() as stack:
        if _docker_available():
            from testcontainers.postgres import PostgresContainer
            from testcontainers.redis import RedisContainer

            pgc = stack.enter_context(PostgresContainer("postgres:17", driver=None))
            rdc = stack.enter_context(RedisContainer("redis:7"))
            url = f"redis://{rdc.get_container_host_ip()}:{rdc.get_exposed_port(6379)}/0"
            yield Servers(pgc.get_connection_url(), url, "testcontainers")
            return
        from gateway.runtime.devstack import DevStack

        # Not under pytest's 0700 tmp dirs: as root, PostgreSQL runs as a system user that
        # must be able to reach its data dir.
        data_dir = Path(tempfile.mkdtemp(prefix="iotsphere-test-"))
        data_dir.chmod(0o711)
        stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        endpoints = stack.enter_context(DevStack(data_dir, databases=()))
        yield Servers(endpoints.dsn("postgres"), endpoints.redis_url, "embedded")


@pytest.fixture(scope="session")
async def templates(servers: Servers) -> AsyncIterator[dict[str, str]]:
    """Migrated template databases, one per store, built once per run and dropped at its
    end (on TimescaleDB every database left behind keeps a job scheduler running)."""
    names = {store: f"tpl_{store}_{os.getpid()}" for store in STORES}
    admin = await asyncpg.connect(servers.dsn("postgres"))
    try:
        for store, name in names.items():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
            conn = await asyncpg.connect(servers.dsn(name))
            try:
                await migrate(conn, store)
                await _stop_timescale_scheduler(conn)
            finally:
                await conn.close()
            # Nothing may connect to a template while it is cloned. TimescaleDB answers
            # CREATE DATABASE .. TEMPLATE by restarting the template's scheduler, which then
            # connects to it ("source database is being accessed by other users",
            # timescale/timescaledb#4048); it leaves databases that refuse connections alone.
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    finally:
        await admin.close()
    client = redis.Redis.from_url(servers.redis_url)
    # The shadow hub needs keyspace events; servers from elsewhere may not have them on.
    await client.config_set("notify-keyspace-events", "KA")
    await client.aclose()
    yield names
    await _drop(servers, list(names.values()))


async def _stop_timescale_scheduler(conn: asyncpg.Connection) -> None:
    """Stops TimescaleDB's job scheduler of this database, where the extension is in it.
    Its clones start without one (tests call the jobs they need themselves)."""
    if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"):
        await conn.execute("SELECT _timescaledb_functions.stop_background_workers()")


_counter = itertools.count()
_drops: set[asyncio.Task[None]] = set()


async def _drop(servers: Servers, names: list[str]) -> None:
    admin = await asyncpg.connect(servers.dsn("postgres"))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def _dropped_at_end() -> AsyncIterator[None]:
    yield
    await asyncio.gather(*_drops)


@pytest.fixture
async def settings(
    servers: Servers, templates: dict[str, str], _dropped_at_end: None
) -> AsyncIterator[Settings]:
    n = next(_counter)
    names = {store: f"t{os.getpid()}_{n}_{store}" for store in STORES}
    admin = await asyncpg.connect(servers.dsn("postgres"))
    try:
        for store, name in names.items():
            await admin.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{templates[store]}" STRATEGY WAL_LOG'
            )
    except BaseException:
        await _drop(servers, list(names.values()))  # the ones created before the failure
        raise
    finally:
        await admin.close()
    client = redis.Redis.from_url(servers.redis_url)
    await client.flushdb()
    await client.aclose()
    yield Settings(
        registry_dsn=servers.dsn(names["registry"]), assets_dsn=servers.dsn(names["assets"]),
        telemetry_dsn=servers.dsn(names["telemetry"]), redis_url=servers.redis_url,
        pool_min_size=1, pool_max_size=4,
    )
    # Dropping takes as long as creating; the next test need not wait for it.
    task = asyncio.create_task(_drop(servers, list(names.values())))
    _drops.add(task)
    task.add_done_callback(_drops.discard)


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[Stores]:
    async with open_stores(settings) as opened:
        yield opened


@dataclass
class Gateway:
    """An HTTP client over the app, speaking GraphQL."""

    http: httpx.AsyncClient

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, key: str | None,
        trace: bool = False,
    ) -> httpx.Response:
        headers = {"X-IoTSphere-Trace": "1"} if trace else {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def query(
        self, query: str, variables: dict[str, Any] | None = None, *, key: str | None,
        trace: bool = False,
    ) -> dict[str, Any]:
        response = await self.post(query, variables, key=key, trace=trace)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def gateway(settings: Settings, stores: Stores) -> AsyncIterator[Gateway]:
    # The app shares the test's adapters, so a test can inject a fault at the adapter seam.
    app = create_app(settings, stores=stores)
    async with Lifespan(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield Gateway(http)


@pytest.fixture
async def served(settings: Settings, stores: Stores) -> AsyncIterator[tuple[str, ShadowHub]]:
    """The gateway on a real loopback socket (uvicorn, the gateway's WebSocket protocol):
    its address and its subscription hub."""
    async with serve_gateway(settings, stores) as address_and_hub:
        yield address_and_hub


AppClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app_client(settings: Settings, stores: Stores) -> AppClient:
    """``async with app_client(max_body_bytes=...) as http``: an HTTP client over an app
    whose settings differ from the test's in the given fields."""
    @asynccontextmanager
    async def open_client(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(dataclasses.replace(settings, **overrides), stores=stores)
        async with Lifespan(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                yield http
    return open_client


@dataclass(frozen=True)
class Tenant:
    id: Any
    key: str


@pytest.fixture
async def tenant(stores: Stores) -> Tenant:
    tenant_id, key = await create_tenant_with_admin_key(stores.registry, "tenant-a")
    return Tenant(tenant_id, key)


@pytest.fixture
async def other_tenant(stores: Stores) -> Tenant:
    tenant_id, key = await create_tenant_with_admin_key(stores.registry, "tenant-b")
    return Tenant(tenant_id, key)
