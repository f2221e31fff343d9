"""Two gateway replicas that share nothing but the stores' servers (each its own pools,
Redis client, hub, key cache): what one does, the other sees and enforces."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, serve

SUB = "subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) { kind version } }"
UPDATE = """mutation($d: ID!) { updateShadow(deviceId: $d, reported: {n: 1}) { version } }"""
CREATE = """mutation { createApiKey(input: {name: "r", role: VIEWER}) {
    secret apiKey { id } } }"""
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    shared = dataclasses.replace(settings, rate_limit=0.01, rate_burst=6,
                                 api_key_cache_ttl=60.0)
    async with serve(create_app(shared)) as a, serve(create_app(shared)) as b:
        yield a, b


async def _post(address: str, key: str, query: str, variables: dict[str, object] | None = None
                ) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        return await http.post("/graphql", headers={"Authorization": f"Bearer {key}"},
                               json={"query": query, "variables": variables or {}})


async def test_a_subscription_on_one_replica_sees_writes_through_the_other(
        replicas: tuple[str, str], stores: Stores, tenant: Tenant) -> None:
    a, b = replicas
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = str(fleet.active[0])
    async with TransportWS.connect(b, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [device]})
        assert (await ws.next_event())["kind"] == "SNAPSHOT"
        for version in (2, 3):
            body = (await _post(a, tenant.key, UPDATE, {"d": device})).json()
            assert body["data"]["updateShadow"]["version"] == version
            assert await ws.next_event() == {"kind": "UPDATED", "version": version}


async def test_the_rate_limit_and_a_revocation_hold_across_replicas(
        replicas: tuple[str, str], tenant: Tenant) -> None:
    a, b = replicas
    created = (await _post(a, tenant.key, CREATE)).json()["data"]["createApiKey"]
    key, key_id = created["secret"], created["apiKey"]["id"]
    query = "{ devices { totalCount } }"
    # A burst of 6 (refilling 1 per 100 s): 3 on each replica pass, the 7th is refused.
    for address in (a, b, a, b, a, b):
        assert (await _post(address, key, query)).status_code == 200
    refused = await _post(a, key, query)
    assert refused.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"

    # b verified (and cached) the key; a revokes it: b refuses it at once.
    assert "errors" not in (await _post(a, tenant.key, REVOKE, {"id": key_id})).json()
    after = await _post(b, key, query)
    assert after.status_code == 401
    assert after.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
