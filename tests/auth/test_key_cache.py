"""API keys answered from memory: a known key costs one registry lookup per
``API_KEY_CACHE_TTL``, a bad key one per TTL however often it is sent, and a revocation
(or a decommission) drops the key at once on the replica that made it and, through the
Redis announcement, on every other one. Counted in registry round trips, never in time."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gateway.app import create_app
from gateway.auth.callers import hash_key
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.key_cache import MAX_KEYS, BadKeys, VerifiedKeys
from tests.conftest import Gateway, Tenant
from tests.support.lifespan import Lifespan
from tests.support.live_server import wait_until
from tests.support.store_calls import RequestCalls, count_requests

TYPENAME = "{ __typename }"  # needs no store: every registry call is the key's lookup
CREATE = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { secret apiKey { id } } }"""
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"
DECOMMISSION = "mutation($id: ID!) { decommissionDevice(id: $id) { status } }"


@asynccontextmanager
async def counted_gateway(
    settings: Settings, stores: Stores
) -> AsyncIterator[tuple[httpx.AsyncClient, RequestCalls]]:
    app = create_app(settings, stores=stores)
    calls = count_requests(app)
    async with Lifespan(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http, calls


async def _post(http: httpx.AsyncClient, key: str, query: str = TYPENAME,
                variables: dict[str, Any] | None = None) -> httpx.Response:
    return await http.post("/graphql", json={"query": query, "variables": variables or {}},
                           headers={"Authorization": f"Bearer {key}"})


async def _key(gateway: Gateway, tenant: Tenant, **input: Any) -> tuple[str, str]:
    body = await gateway.query(CREATE, {"input": input}, key=tenant.key)
    assert "errors" not in body, body
    return body["data"]["createApiKey"]["apiKey"]["id"], body["data"]["createApiKey"]["secret"]


async def test_a_known_key_costs_one_registry_lookup(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with counted_gateway(settings, stores) as (http, calls):
        for _ in range(20):
            assert (await _post(http, tenant.key)).status_code == 200
    assert calls.per_request("registry") == [1] + [0] * 19


async def test_without_the_cache_every_request_asks(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    # The control: the counts above come from the cache, not from a request that never asks.
    async with open_stores(dataclasses.replace(settings, api_key_cache_ttl=0)) as uncached, \
            counted_gateway(settings, uncached) as (http, calls):
        for _ in range(5):
            assert (await _post(http, tenant.key)).status_code == 200
    assert calls.per_request("registry") == [1] * 5


async def test_a_flood_of_one_bad_key_costs_one_registry_lookup(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    bad = "iot_" + "x" * 43
    async with counted_gateway(settings, stores) as (http, calls):
        answers = [(await _post(http, bad)).status_code for _ in range(30)]
    assert answers == [401] * 30
    assert calls.total("registry") == 1


async def test_a_revoked_cached_key_is_refused_at_once_by_the_replica_that_revoked_it(
    settings: Settings, stores: Stores, gateway: Gateway, tenant: Tenant
) -> None:
    key_id, secret = await _key(gateway, tenant, name="dash", role="VIEWER")
    async with counted_gateway(settings, stores) as (http, calls):
        assert (await _post(http, secret)).status_code == 200
        assert (await _post(http, secret)).status_code == 200
        assert calls.per_request("registry") == [1, 0]  # cached now
        body = (await _post(http, tenant.key, REVOKE, {"id": key_id})).json()
        assert "errors" not in body, body
        refused = await _post(http, secret)
    assert refused.status_code == 401
    assert calls.requests[-1].registry == 1  # asked again, and told it is revoked


async def test_a_revocation_drops_the_key_on_every_replica(
    settings: Settings, stores: Stores, gateway: Gateway, tenant: Tenant
) -> None:
    key_id, secret = await _key(gateway, tenant, name="dash", role="VIEWER")
    # The other replica: its own stores and a cache that would hold the key for 10
    # minutes, so only the announcement can drop it within this test.
    other_settings = dataclasses.replace(settings, api_key_cache_ttl=600)
    async with open_stores(other_settings) as other_stores, \
            counted_gateway(other_settings, other_stores) as (http, calls):
        assert (await _post(http, secret)).status_code == 200
        assert (await _post(http, secret)).status_code == 200
        assert calls.per_request("registry") == [1, 0]
        body = await gateway.query(REVOKE, {"id": key_id}, key=tenant.key)
        assert "errors" not in body, body
        cached = other_stores.registry.verified_keys
        await wait_until(lambda: cached.fresh(hash_key(secret)) is None)
        assert (await _post(http, secret)).status_code == 401


async def test_a_decommissioned_devices_cached_key_is_refused(
    settings: Settings, stores: Stores, gateway: Gateway, tenant: Tenant
) -> None:
    body = await gateway.query('mutation { registerDevice(input: {serial: "s", name: "d", '
                               'type: "t"}) { device { id } } }', key=tenant.key)
    device = body["data"]["registerDevice"]["device"]["id"]
    _, secret = await _key(gateway, tenant, name="dev", role="DEVICE", deviceId=device)
    other_settings = dataclasses.replace(settings, api_key_cache_ttl=600)
    async with open_stores(other_settings) as other_stores, \
            counted_gateway(other_settings, other_stores) as (http, _):
        assert (await _post(http, secret)).status_code == 200
        assert (await _post(gateway.http, secret)).status_code == 200
        body = await gateway.query(DECOMMISSION, {"id": device}, key=tenant.key)
        assert "errors" not in body, body
        assert (await _post(gateway.http, secret)).status_code == 401  # this replica
        cached = other_stores.registry.verified_keys
        await wait_until(lambda: cached.fresh(hash_key(secret)) is None)
        assert (await _post(http, secret)).status_code == 401  # the other one


def test_fresh_entries_expire_before_the_outage_grace() -> None:
    now = [0.0]
    keys = VerifiedKeys(grace=60.0, fresh_for=5.0, clock=lambda: now[0])
    keys.remember(b"h", {"id": "k", "device_id": None})
    now[0] = 5.0
    assert keys.fresh(b"h") is not None
    now[0] = 5.1
    assert keys.fresh(b"h") is None and keys.recent(b"h") is not None
    now[0] = 60.1
    assert keys.recent(b"h") is None


def test_bad_keys_expire_and_stay_bounded() -> None:
    now = [0.0]
    bad = BadKeys(fresh_for=5.0, clock=lambda: now[0])
    bad.add(b"a")
    assert b"a" in bad and b"b" not in bad
    now[0] = 5.1
    assert b"a" not in bad
    for n in range(MAX_KEYS + 10):
        bad.add(n.to_bytes(4, "big"))
    assert (0).to_bytes(4, "big") not in bad and (MAX_KEYS + 9).to_bytes(4, "big") in bad
    bad.discard((MAX_KEYS + 9).to_bytes(4, "big"))
    assert (MAX_KEYS + 9).to_bytes(4, "big") not in bad
    off = BadKeys(fresh_for=0.0)
    off.add(b"x")
    assert b"x" not in off
