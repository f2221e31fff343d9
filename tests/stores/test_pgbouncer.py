"""The gateway through PgBouncer in transaction pooling mode (Debian's 1.18: no
``max_prepared_statements``, so asyncpg runs with ``PG_STATEMENT_CACHE=0``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Servers, Tenant
from tests.support.lifespan import Lifespan
from tests.support.pgbouncer import pgbouncer


@pytest.fixture(scope="module")
def bouncer(servers: Servers) -> Iterator[str]:
    """A DSN of PgBouncer (2 server connections per database) in front of the tests' server."""
    with pgbouncer(servers.pg_dsn, pool_size=2) as dsn:
        yield dsn


def _through(bouncer: str, dsn: str | None) -> str:
    assert dsn is not None
    return urlunsplit(urlsplit(dsn)._replace(netloc=urlsplit(bouncer).netloc))


def _bounced(settings: Settings, bouncer: str) -> Settings:
    return dataclasses.replace(
        settings, registry_dsn=_through(bouncer, settings.registry_dsn),
        assets_dsn=_through(bouncer, settings.assets_dsn),
        telemetry_dsn=_through(bouncer, settings.telemetry_dsn),
        pg_statement_cache=0, pool_min_size=1, pool_max_size=6)


async def test_named_statements_break_behind_transaction_pooling(
        bouncer: str, settings: Settings) -> None:
    """Why the setting exists: a statement asyncpg prepared (and cached) on one server
    connection is unknown on the next one PgBouncer hands out; with the cache off it works.
    A second client holds the first server connection in a transaction, so the first
    client's next query gets the other one."""
    dsn = _through(bouncer, settings.registry_dsn)
    query = "SELECT count(*) FROM devices WHERE tenant_id = $1"

    async def second_query_elsewhere(cache: int) -> None:
        client = await asyncpg.connect(dsn, statement_cache_size=cache)
        holder = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            assert await client.fetchval(query, None) == 0
            async with holder.transaction():
                await holder.execute("SELECT 1")  # now holds that server connection
                assert await client.fetchval(query, None) == 0
        finally:
            await client.close()
            await holder.close()

    with pytest.raises(asyncpg.PostgresError, match="prepared statement"):
        await second_query_elsewhere(100)  # asyncpg's default
    await second_query_elsewhere(0)


REGISTER = """mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) {
    device { id } } }"""
READ = """query { devices(first: 10) { totalCount edges { node { id name metadata
    shadow { version } latest { metric value } } } } }"""


async def test_read_write_and_ingest_paths_through_pgbouncer(
        bouncer: str, settings: Settings, stores: Stores, tenant: Tenant) -> None:
    app = create_app(_bounced(settings, bouncer))  # its own pools, all through PgBouncer
    auth = {"Authorization": f"Bearer {tenant.key}"}
    async with Lifespan(app) as manager, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://gw") as http:
        async def gql(query: str, variables: dict[str, object] | None = None) -> dict:
            response = await http.post("/graphql", headers=auth,
                                       json={"query": query, "variables": variables or {}})
            assert response.status_code == 200, response.text
            body = response.json()
            assert "errors" not in body, body
            return body["data"]  # type: ignore[no-any-return]

        ids = []
        for n in range(3):  # writes: registry row + asset profile, across both stores
            data = await gql(REGISTER, {"input": {"serial": f"PB-{n}", "name": f"pb{n}",
                                                  "type": "sensor", "metadata": {"n": n}}})
            ids.append(data["registerDevice"]["device"]["id"])
        await gql("""mutation($id: ID!) { updateDevice(id: $id, input: {name: "renamed",
            metadata: {n: 9}}) { id } }""", {"id": ids[0]})
        await gql("""mutation($d: ID!) { updateShadow(deviceId: $d, reported: {on: true})
            { version } }""", {"d": ids[0]})
        now = datetime.now(UTC).replace(microsecond=0)
        readings = [{"deviceId": d, "metric": "temp", "time": (now - timedelta(minutes=m))
                     .isoformat(), "value": float(m)} for d in ids for m in (1, 2)]
        data = await gql("""mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r)
            { accepted } }""", {"r": readings})
        assert data["ingestTelemetry"]["accepted"] == 6
        lines = b"\n".join(orjson.dumps({"deviceId": d, "metric": "hum", "time": (
            now - timedelta(minutes=m)).isoformat(), "value": 50.0 + m})
            for d in ids for m in range(5))
        response = await http.post("/ingest", content=lines + b"\n", headers={
            **auth, "Content-Type": "application/x-ndjson"})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 15

        # Reads, 8 at once over 2 server connections: statements land on either.
        for data in await asyncio.gather(*(gql(READ) for _ in range(8))):
            page = data["devices"]
            assert page["totalCount"] == 3
            by_id = {edge["node"]["id"]: edge["node"] for edge in page["edges"]}
            assert by_id[ids[0]]["name"] == "renamed"
            assert by_id[ids[0]]["metadata"] == {"n": 9}
            assert by_id[ids[0]]["shadow"]["version"] == 1
            assert {r["metric"] for r in by_id[ids[1]]["latest"]} == {"temp", "hum"}
        series = await gql("""query($d: ID!) { device(id: $d) { telemetry(metric: "hum")
            { stats { count } } } }""", {"d": ids[2]})
        assert series["device"]["telemetry"]["stats"]["count"] == 5
    stored = await stores.telemetry.pool.fetchval("SELECT count(*) FROM readings")
    assert stored == 21
