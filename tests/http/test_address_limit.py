"""Failed authentication is limited per client address, across replicas through Redis:
a flood without a valid credential is answered 429 without registry round trips (counted
by the gateway's own per-request StoreCalls), and the limit fails open."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import websockets

from gateway.app import create_app
from gateway.errors import Unauthenticated
from gateway.http.address_limit import AddressLimit, AuthFailuresLimited, authenticate_limited
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from tests.conftest import Tenant
from tests.support.lifespan import Lifespan
from tests.support.live_server import TransportWS, free_port, serve
from tests.support.store_calls import RequestCalls, count_requests

BURST = 20
TYPENAME = {"query": "{ __typename }"}


@asynccontextmanager
async def replica(settings: Settings, stores: Stores
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, RequestCalls]]:
    # A tiny refill rate: the bucket does not refill noticeably during a test.
    app = create_app(dataclasses.replace(settings, auth_failure_burst=BURST,
                                         auth_failure_rate_limit=0.001), stores=stores)
    calls = count_requests(app)
    async with Lifespan(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http, calls


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _bad_key() -> str:
    return "iot_" + secrets.token_urlsafe(32)


async def test_an_unauthenticated_flood_is_answered_429_without_registry_round_trips(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with replica(settings, stores) as (http, calls):
        answers = [await http.post("/graphql", json=TYPENAME) for _ in range(3 * BURST)]
    assert [a.status_code for a in answers] == [401] * BURST + [429] * (2 * BURST)
    refusal = answers[-1]
    assert int(refusal.headers["retry-after"]) >= 1
    [error] = refusal.json()["errors"]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert error["extensions"]["limit"] == "authFailureRate"
    assert calls.total("registry") == 0 and len(calls.requests) == 3 * BURST


async def test_a_flood_of_distinct_bad_keys_costs_one_lookup_each_until_the_limit(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with replica(settings, stores) as (http, calls):
        answers = [(await http.post("/graphql", json=TYPENAME, headers=_bearer(_bad_key())))
                   .status_code for _ in range(3 * BURST)]
        # A client behind the same address whose key this replica has verified goes on;
        # a valid key it has not verified yet waits with the flood.
        assert (await http.post("/graphql", json=TYPENAME, headers=_bearer(tenant.key))
                ).status_code == 429
    # Every bad key costs one lookup until the bucket is empty; the one that finds it
    # empty is answered 429 (its lookup done), and from then on nothing is looked up.
    assert answers == [401] * BURST + [429] * (2 * BURST)
    assert calls.per_request("registry") == [1] * (BURST + 1) + [0] * (2 * BURST - 1) + [0]


async def test_a_key_verified_before_the_flood_keeps_working(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with replica(settings, stores) as (http, calls):
        assert (await http.post("/graphql", json=TYPENAME, headers=_bearer(tenant.key))
                ).status_code == 200
        for _ in range(BURST + 1):
            await http.post("/graphql", json=TYPENAME)
        assert (await http.post("/graphql", json=TYPENAME)).status_code == 429
        ok = await http.post("/graphql", json=TYPENAME, headers=_bearer(tenant.key))
    assert ok.status_code == 200 and calls.requests[-1].registry == 0


async def test_the_budget_is_shared_by_replicas(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with open_stores(settings) as other_stores, \
            replica(settings, stores) as (first, _), \
            replica(settings, other_stores) as (second, calls):
        for _ in range(BURST):
            assert (await first.post("/graphql", json=TYPENAME)).status_code == 401
        # The other replica has seen no failure yet, but Redis has: its first is refused,
        # and from then on it refuses before any lookup.
        answers = [(await second.post("/graphql", json=TYPENAME, headers=_bearer(_bad_key())))
                   .status_code for _ in range(5)]
    assert answers == [429] * 5
    assert calls.per_request("registry") == [1, 0, 0, 0, 0]


async def test_ingest_is_limited_too(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with replica(settings, stores) as (http, _):
        statuses = [(await http.post("/ingest", content=b"x", headers=_bearer(_bad_key())))
                    .status_code for _ in range(BURST + 2)]
    assert statuses == [401] * BURST + [429] * 2


async def test_the_limit_fails_open_when_redis_does_not_answer(
    settings: Settings, tenant: Tenant
) -> None:
    dead = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                               auth_failure_burst=1, auth_failure_rate_limit=0.001)
    limit = AddressLimit()
    async with open_stores(dead) as stores:
        for _ in range(10):
            with pytest.raises(Unauthenticated):
                await authenticate_limited(stores, dead, limit, None, "10.0.0.1")
    # The control: with Redis answering, the same budget refuses the second failure.
    live = dataclasses.replace(dead, redis_url=settings.redis_url)
    async with open_stores(live) as stores:
        with pytest.raises(Unauthenticated):
            await authenticate_limited(stores, live, AddressLimit(), None, "10.0.0.1")
        with pytest.raises(AuthFailuresLimited):
            await authenticate_limited(stores, live, AddressLimit(), None, "10.0.0.1")


async def test_websocket_connection_inits_are_limited_too(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    limited = dataclasses.replace(settings, auth_failure_burst=2,
                                  auth_failure_rate_limit=0.001)
    reasons = []
    async with serve(create_app(limited, stores=stores)) as address:
        for _ in range(3):
            async with TransportWS.connect(address, _bad_key()) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.receive()
                assert closed.value.rcvd is not None
                reasons.append((closed.value.rcvd.code, closed.value.rcvd.reason))
    assert [code for code, _ in reasons] == [4403] * 3
    assert [reason.startswith("Too many requests without a valid credential")
            for _, reason in reasons] == [False, False, True], reasons
