"""The per-key rate limit: a token bucket in the real Valkey, shared by replicas, spent by
HTTP operations, WebSocket subscribe messages and POST /ingest; fails open without Redis."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from uuid import uuid4

import httpx
import redis.asyncio as redis
import websockets

from gateway.app import create_app
from gateway.auth.callers import Caller
from gateway.http import rate_limit
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import AppClient, Tenant
from tests.support.live_server import TransportWS, free_port, serve

QUERY = {"query": "{ __typename }"}
# Refills one operation per 1,000 s: nothing refills during a test.
SLOW = {"rate_limit": 0.001, "rate_burst": 3}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _refusal(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    [error] = response.json()["errors"]
    extensions: dict[str, Any] = error["extensions"]
    assert (extensions["code"], extensions["limit"]) == ("LIMIT_EXCEEDED", "rateLimit")
    assert extensions["retryAfter"] == int(response.headers["retry-after"])
    return extensions


async def test_operations_over_the_burst_are_429_per_key(
    app_client: AppClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with app_client(**SLOW) as http:
        statuses = [(await http.post("/graphql", json=QUERY, headers=_auth(tenant.key)))
                    .status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await http.post("/graphql", json=QUERY, headers=_auth(tenant.key))
        # One operation at 0.001/s: about 1,000 s to wait.
        assert 900 <= _refusal(refused)["retryAfter"] <= 1000
        # Another key (here of another tenant) has its own bucket.
        other = await http.post("/graphql", json=QUERY, headers=_auth(other_tenant.key))
        assert other.status_code == 200


async def test_a_batch_spends_one_per_operation(app_client: AppClient, tenant: Tenant) -> None:
    async with app_client(**SLOW) as http:
        batch = await http.post("/graphql", json=[QUERY, QUERY], headers=_auth(tenant.key))
        assert batch.status_code == 200 and len(batch.json()) == 2
        # One token left: a batch of two is refused whole, a single operation still runs.
        _refusal(await http.post("/graphql", json=[QUERY, QUERY], headers=_auth(tenant.key)))
        single = await http.post("/graphql", json=QUERY, headers=_auth(tenant.key))
        assert single.status_code == 200


async def test_two_replicas_share_one_budget(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    """Two app instances (as two gateway processes would be) over the same Redis."""
    limited = dataclasses.replace(settings, rate_limit=0.001, rate_burst=4)
    async with serve(create_app(limited, stores=stores)) as one, \
            serve(create_app(limited, stores=stores)) as two, \
            httpx.AsyncClient() as http:
        statuses = []
        for n in range(6):
            address = (one, two)[n % 2]
            response = await http.post(f"http://{address}/graphql", json=QUERY,
                                       headers=_auth(tenant.key))
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_the_bucket_refills_with_time(
    app_client: AppClient, stores: Stores, tenant: Tenant
) -> None:
    async with app_client(rate_limit=1.0, rate_burst=2) as http:
        for _ in range(2):
            assert (await http.post("/graphql", json=QUERY,
                                    headers=_auth(tenant.key))).status_code == 200
        _refusal(await http.post("/graphql", json=QUERY, headers=_auth(tenant.key)))
        # Ten seconds pass for the bucket (its clock is moved back, not the test's).
        [key] = [k async for k in stores.shadows.client.scan_iter(match="iot:*:ratelimit:*")]
        assert str(tenant.id) in key.decode()
        at = int(await stores.shadows.client.hget(key, "at") or 0)
        await stores.shadows.client.hset(key, "at", str(at - 10_000_000))
        statuses = [(await http.post("/graphql", json=QUERY, headers=_auth(tenant.key)))
                    .status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # refilled to the burst, not beyond


async def test_zero_turns_the_limit_off(app_client: AppClient, tenant: Tenant) -> None:
    async with app_client(rate_limit=0, rate_burst=1) as http:
        for _ in range(5):
            assert (await http.post("/graphql", json=QUERY,
                                    headers=_auth(tenant.key))).status_code == 200


async def test_subscribe_messages_spend_the_budget(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    sub = 'subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) { kind } }'
    limited = dataclasses.replace(settings, rate_limit=0.001, rate_burst=2)
    async with serve(create_app(limited, stores=stores)) as address:
        async with TransportWS.connect(address, tenant.key) as ws:
            assert (await ws.receive())["type"] == "connection_ack"
            codes = []
            for _ in range(3):
                op = await ws.subscribe(sub, {"ids": [unknown]})
                message = await ws.receive()
                assert (message["type"], message["id"]) == ("error", op), message
                codes.append(message["payload"][0]["extensions"]["code"])
            # Two ran (and found no such device); the third was refused before running.
            assert codes == ["NOT_FOUND", "NOT_FOUND", "LIMIT_EXCEEDED"]
        async with websockets.connect(f"ws://{address}/graphql",
                                      subprotocols=["graphql-ws"]) as legacy:  # type: ignore[list-item]
            await legacy.send(json.dumps({"type": "connection_init",
                                          "payload": _auth(tenant.key)}))
            assert json.loads(await legacy.recv())["type"] == "connection_ack"
            await legacy.send(json.dumps({"id": "1", "type": "start", "payload": {
                "query": sub, "variables": {"ids": [unknown]}}}))
            message = json.loads(await legacy.recv())
            while message["type"] == "ka":
                message = json.loads(await legacy.recv())
            assert message["type"] == "error"
            assert message["payload"]["extensions"]["limit"] == "rateLimit"


async def test_ingest_requests_spend_the_budget(app_client: AppClient, tenant: Tenant) -> None:
    headers = {**_auth(tenant.key), "Content-Type": "application/x-ndjson"}
    async with app_client(rate_limit=0.001, rate_burst=1) as http:
        first = await http.post("/ingest", content=b"", headers=headers)
        assert first.status_code == 200, first.text
        _refusal(await http.post("/ingest", content=b"", headers=headers))


async def test_redis_down_lets_requests_through_and_counts_it() -> None:
    class DeadShadows:
        def __init__(self) -> None:
            # Nothing listens there: every command fails to connect.
            self.client = redis.Redis(port=free_port(), socket_connect_timeout=0.2)

    dead = DeadShadows()
    caller = Caller(tenant_id=uuid4(), role="admin", key_id=uuid4())
    before = rate_limit.UNAVAILABLE._value.get()
    try:
        for _ in range(3):
            await rate_limit.take(dead, Settings(rate_burst=1), caller)
    finally:
        await dead.client.aclose()
    assert rate_limit.UNAVAILABLE._value.get() == before + 3
