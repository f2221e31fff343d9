"""Read replicas for real: a streaming standby of the stores' primary serves the reads of
queries that tolerate lag, and is left out while it lags past the bound or is down.

Which server answered is proven by pausing the standby's replay
(``pg_wal_replay_pause()``): it keeps the old value while the primary has the new one.
The pair (tests/support/pg_replica.py) holds all three stores' databases, cloned per test
from migrated templates; the shadows use the suite's Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.auth.callers import create_tenant_with_admin_key
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.migrations import STORES, migrate
from gateway.stores.read_replica import ReadReplica
from tests.conftest import Servers
from tests.support.lifespan import Lifespan
from tests.support.pg_replica import PgPair
from tests.support.tcp_proxy import proxy

REGISTER = """mutation($serial: String!, $name: String!) {
  registerDevice(input: {serial: $serial, name: $name, type: "sensor"}) { device { id } } }"""
RENAME = """mutation($id: ID!, $name: String!) {
  updateDevice(id: $id, input: {name: $name}) { name } }"""
DEVICES = """query Devices { devices(first: 10) { totalCount edges { node { name } } } }"""
SEARCH = """query Search($text: String!) {
  devices(first: 10, filter: {search: $text}) { totalCount edges { node { name } } } }"""
CREATE_ASSET = """mutation($name: String!, $parent: ID) {
  createAsset(input: {name: $name, kind: "site", parentId: $parent}) {
    id parent { children { name } } } }"""
ASSET_CHILDREN = """query Children($id: ID!) { node(id: $id) { ... on Asset {
  children { name } } } }"""

_counter = itertools.count()


@pytest.fixture(scope="module")
def pair() -> Iterator[PgPair]:
    pg = PgPair()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@pytest.fixture(scope="module")
async def templates(pair: PgPair) -> dict[str, str]:
    names = {store: f"tpl_{store}" for store in STORES}
    admin = await asyncpg.connect(pair.dsn("primary", "postgres"))
    try:
        for store, name in names.items():
            await admin.execute(f'CREATE DATABASE "{name}"')
            conn = await asyncpg.connect(pair.dsn("primary", name))
            try:
                await migrate(conn, store)
            finally:
                await conn.close()
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    finally:
        await admin.close()
    return names


@dataclass
class Replicated:
    """Settings with read DSNs on the standby; ``gateway(**overrides)`` serves them."""

    pair: PgPair
    settings: Settings

    @asynccontextmanager
    async def gateway(self, **overrides: Any) -> AsyncIterator[tuple[Stores, Client]]:
        settings = dataclasses.replace(self.settings, **overrides)
        async with open_stores(settings) as stores:
            app = create_app(settings, stores=stores)
            async with Lifespan(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport,
                                             base_url="http://gw") as http:
                    yield stores, Client(http)


@pytest.fixture
async def replicated(pair: PgPair, templates: dict[str, str],
                     servers: Servers) -> AsyncIterator[Replicated]:
    n = next(_counter)
    names = {store: f"t{os.getpid()}_{n}_{store}" for store in STORES}
    admin = await asyncpg.connect(pair.dsn("primary", "postgres"))
    try:
        for store, name in names.items():
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{templates[store]}"')
    finally:
        await admin.close()
    client = redis.Redis.from_url(servers.redis_url)
    await client.flushdb()
    await client.aclose()
    await pair.caught_up()
    try:
        yield Replicated(pair, Settings(
            registry_dsn=pair.dsn("primary", names["registry"]),
            assets_dsn=pair.dsn("primary", names["assets"]),
            telemetry_dsn=pair.dsn("primary", names["telemetry"]),
            registry_read_dsn=pair.dsn("standby", names["registry"]),
            assets_read_dsn=pair.dsn("standby", names["assets"]),
            telemetry_read_dsn=pair.dsn("standby", names["telemetry"]),
            redis_url=servers.redis_url, pool_min_size=1, pool_max_size=4,
            store_timeout=2.0, read_replica_max_lag=30.0, read_replica_probe_interval=0.1,
        ))
    finally:
        if not (pair.root / "standby" / "postmaster.pid").exists():
            await asyncio.to_thread(pair.start_standby)
        await pair.pause_replay(False)
        admin = await asyncpg.connect(pair.dsn("primary", "postgres"))
        try:
            for name in names.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Client:
    http: httpx.AsyncClient

    async def post(self, body: Any, key: str, *, trace: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        if trace:
            headers["X-IoTSphere-Trace"] = "1"
        response = await self.http.post("/graphql", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def run(self, query: str, key: str, trace: bool = False, **variables: Any
                  ) -> dict[str, Any]:
        body = await self.post({"query": query, "variables": variables}, key, trace=trace)
        assert "errors" not in body, body
        result: dict[str, Any] = body
        return result

    async def names(self, key: str) -> list[str]:
        data = (await self.run(DEVICES, key))["data"]["devices"]
        return sorted(edge["node"]["name"] for edge in data["edges"])


def _replica(stores: Stores, store: str = "registry") -> ReadReplica:
    replica = getattr(stores, store).read_replica
    assert replica is not None
    return replica


async def _until(check: Callable[[], bool | Awaitable[bool]], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(0.05)


def _reads(server: str, store: str = "registry") -> float:
    value = REGISTRY.get_sample_value(
        "iotsphere_lagging_reads_total", {"store": store, "server": server})
    return value or 0.0


async def _device(client: Client, key: str, serial: str, name: str) -> str:
    data = await client.run(REGISTER, key, serial=serial, name=name)
    return str(data["data"]["registerDevice"]["device"]["id"])


async def test_queries_read_the_replica_and_writes_read_their_own(
        replicated: Replicated) -> None:
    """With replay paused, a query sees the standby's old name; the mutation, and a query
    after it in the same batch, see the new one from the primary."""
    async with replicated.gateway() as (stores, client):
        _, key = await create_tenant_with_admin_key(stores.registry, "a")
        device = await _device(client, key, "s-1", "old")
        await replicated.pair.caught_up()
        await _until(_replica(stores).usable)
        await replicated.pair.pause_replay(True)

        batch = await client.post([
            {"query": RENAME, "variables": {"id": device, "name": "new"}},
            {"query": DEVICES}], key)
        assert batch[0]["data"]["updateDevice"]["name"] == "new"
        assert [e["node"]["name"] for e in batch[1]["data"]["devices"]["edges"]] == ["new"]

        before = _reads("replica")
        assert await client.names(key) == ["old"]  # the paused standby answered
        assert _reads("replica") == before + 1

        await replicated.pair.pause_replay(False)
        await _until(lambda: _names_are(client, key, ["new"]))


async def _names_are(client: Client, key: str, names: list[str]) -> bool:
    return await client.names(key) == names


async def test_a_mutation_reads_its_own_write_through_lag_tolerant_fields(
        replicated: Replicated) -> None:
    """``Asset.children`` is a lag-tolerant read (the asset tree); inside the mutation
    that created a child it comes from the primary, in a later query from the standby."""
    async with replicated.gateway() as (stores, client):
        _, key = await create_tenant_with_admin_key(stores.registry, "a")
        site = (await client.run(CREATE_ASSET, key, name="site", parent=None)
                )["data"]["createAsset"]["id"]
        await replicated.pair.caught_up()
        await _until(_replica(stores, "assets").usable)
        await replicated.pair.pause_replay(True)

        created = await client.run(CREATE_ASSET, key, name="hall", parent=site)
        assert created["data"]["createAsset"]["parent"]["children"] == [{"name": "hall"}]
        later = await client.run(ASSET_CHILDREN, key, id=site)
        assert later["data"]["node"]["children"] == []  # the paused standby's tree


async def test_a_replica_past_the_lag_bound_is_left_out(replicated: Replicated) -> None:
    async with replicated.gateway(read_replica_max_lag=1.0) as (stores, client):
        _, key = await create_tenant_with_admin_key(stores.registry, "a")
        device = await _device(client, key, "s-1", "old")
        await replicated.pair.caught_up()
        replica = _replica(stores)
        await _until(replica.usable)
        await asyncio.sleep(1.5)  # an idle primary does not make its standby lag
        assert replica.usable()
        await replicated.pair.pause_replay(True)
        await client.run(RENAME, key, id=device, name="new")

        await _until(lambda: not replica.usable(), within=5.0)
        lag = replica.lag()
        assert lag is not None and lag > 1.0
        await _until(lambda: REGISTRY.get_sample_value(  # set by the next probe
            "iotsphere_read_replica_in_use", {"store": "registry"}) == 0, within=2.0)
        before = _reads("primary")
        assert await client.names(key) == ["new"]  # fresh, from the primary
        assert _reads("primary") == before + 1

        await replicated.pair.pause_replay(False)
        await _until(replica.usable)
        before = _reads("replica")
        assert await client.names(key) == ["new"]
        assert _reads("replica") == before + 1


async def test_a_stopped_replica_is_left_out_and_taken_back(replicated: Replicated) -> None:
    """No error while the standby is down, the same store calls counted, and its reads
    come back to it once it answers again."""
    async with replicated.gateway() as (stores, client):
        _, key = await create_tenant_with_admin_key(stores.registry, "a")
        await _device(client, key, "s-1", "one")
        await replicated.pair.caught_up()
        replica = _replica(stores)
        await _until(replica.usable)
        served = await client.run(DEVICES, key, trace=True)
        calls = served["extensions"]["storeCalls"]

        await asyncio.to_thread(replicated.pair.stop_standby)
        before = _reads("primary")
        for _ in range(3):  # the first finds the standby gone, the others skip it
            answered = await client.run(DEVICES, key, trace=True)
            assert answered["data"] == served["data"]
            assert answered["extensions"]["storeCalls"] == calls
        assert _reads("primary") == before + 3
        assert not replica.usable()
        ready = await client.http.get("/readyz")  # still ready: the primary serves
        assert ready.status_code == 200
        [registry] = [s for s in ready.json()["stores"] if s["store"] == "registry"]
        assert registry["readReplica"] == {"inUse": False, "lagSeconds": None}

        await asyncio.to_thread(replicated.pair.start_standby)
        await _until(replica.usable)
        before = _reads("replica")
        answered = await client.run(DEVICES, key, trace=True)
        assert answered["data"] == served["data"]
        assert answered["extensions"]["storeCalls"] == calls
        assert _reads("replica") == before + 1
        [registry] = [s for s in (await client.http.get("/readyz")).json()["stores"]
                      if s["store"] == "registry"]
        assert registry["readReplica"]["inUse"] is True


async def test_a_hung_replica_costs_its_reads_no_error(replicated: Replicated) -> None:
    """A standby that accepts but stops answering (a proxy that stops forwarding): the read
    that meets it waits out STORE_TIMEOUT and is answered by the primary; later reads skip
    it; once it answers again it is used again."""
    standby = urlsplit(replicated.settings.registry_read_dsn or "")
    assert standby.hostname and standby.port
    async with proxy(standby.hostname, standby.port) as front:
        through = urlunsplit(standby._replace(netloc=f"postgres@127.0.0.1:{front.port}"))
        async with replicated.gateway(registry_read_dsn=through, store_timeout=1.0) as (
                stores, client):
            _, key = await create_tenant_with_admin_key(stores.registry, "a")
            await _device(client, key, "s-1", "one")
            await replicated.pair.caught_up()
            replica = _replica(stores)
            await _until(replica.usable)

            front.hang()
            before = _reads("primary")
            assert await client.names(key) == ["one"]
            assert await client.names(key) == ["one"]
            assert _reads("primary") == before + 2
            assert not replica.usable()

            front.resume()
            await _until(replica.usable)
            before = _reads("replica")
            assert await client.names(key) == ["one"]
            assert _reads("replica") == before + 1


async def test_tenants_stay_apart_on_the_replica(replicated: Replicated) -> None:
    async with replicated.gateway() as (stores, client):
        _, key_a = await create_tenant_with_admin_key(stores.registry, "a")
        _, key_b = await create_tenant_with_admin_key(stores.registry, "b")
        await _device(client, key_a, "a-1", "a-device")
        await _device(client, key_b, "b-1", "b-secret")
        await replicated.pair.caught_up()
        await _until(_replica(stores).usable)

        before = _reads("replica")
        assert await client.names(key_a) == ["a-device"]
        assert await client.names(key_b) == ["b-secret"]
        found = await client.run(SEARCH, key_a, text="b-secret")
        assert found["data"]["devices"]["totalCount"] == 0
        assert _reads("replica") == before + 3


INGEST = """mutation($readings: [ReadingInput!]!) { ingestTelemetry(readings: $readings) {
  accepted } }"""
LATEST = """query Latest($id: ID!) { device(id: $id) { latest { metric value } } }"""


async def test_telemetry_reads_the_replica(replicated: Replicated) -> None:
    """Latest values come from the telemetry standby: a reading ingested while its replay
    is paused shows once replay resumes."""
    async with replicated.gateway() as (stores, client):
        _, key = await create_tenant_with_admin_key(stores.registry, "a")
        device = await _device(client, key, "s-1", "one")

        def reading(value: float) -> dict[str, Any]:
            now = datetime.now(UTC).isoformat()
            return {"deviceId": device, "metric": "temperature", "time": now, "value": value}

        await client.run(INGEST, key, readings=[reading(1.0)])
        await replicated.pair.caught_up()
        await _until(_replica(stores, "telemetry").usable)
        await replicated.pair.pause_replay(True)
        await client.run(INGEST, key, readings=[reading(2.0)])

        before = _reads("replica", "telemetry")
        latest = (await client.run(LATEST, key, id=device))["data"]["device"]["latest"]
        assert latest == [{"metric": "temperature", "value": 1.0}]
        assert _reads("replica", "telemetry") == before + 1

        await replicated.pair.pause_replay(False)
        await _until(lambda: _latest_is(client, key, device, 2.0))


async def _latest_is(client: Client, key: str, device: str, value: float) -> bool:
    latest = (await client.run(LATEST, key, id=device))["data"]["device"]["latest"]
    return bool(latest == [{"metric": "temperature", "value": value}])


async def test_a_read_dsn_naming_a_primary_is_never_used(replicated: Replicated) -> None:
    """A server that is not a standby cannot tell its lag: it is left out, reads work."""
    primary_registry = replicated.settings.registry_dsn
    async with replicated.gateway(registry_read_dsn=primary_registry) as (stores, client):
        _, key = await create_tenant_with_admin_key(stores.registry, "a")
        await _device(client, key, "s-1", "one")
        await asyncio.sleep(0.3)  # a few probes
        assert not _replica(stores).usable()
        assert await client.names(key) == ["one"]
