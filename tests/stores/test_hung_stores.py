"""Stores that hang rather than stop (a TCP proxy that keeps the connections open and
stops forwarding), and the registry outage grace running out: a hung asset store costs
its fields within STORE_TIMEOUT, not the request; a hung Redis lets rate-limited requests
through (fail open); a key the registry verified outlives a registry outage for exactly
AUTH_OUTAGE_GRACE (on an injected clock: no waiting, no time asserted)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.key_cache import VerifiedKeys
from tests.conftest import Tenant
from tests.support.lifespan import Lifespan
from tests.support.tcp_proxy import TcpProxy, proxy

BOTH = {"query": "{ devices { totalCount } assets { totalCount } }"}
ASSETS = {"query": "{ assets { totalCount } }"}
DEVICES = {"query": "{ devices { totalCount } }"}


def _through(url: str, front: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{front.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2
                                     else host))


def _target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Stores]]:
    async with open_stores(settings) as opened:
        app = create_app(settings, stores=opened)
        async with Lifespan(app) as manager, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://gw") as http:
            yield http, opened


async def _ask(http: httpx.AsyncClient, key: str | None, body: dict[str, Any]
               ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await http.post("/graphql", json=body, headers=headers)


async def test_a_hung_asset_store_costs_its_fields_within_the_store_timeout(
    settings: Settings, tenant: Tenant
) -> None:
    async with proxy(*_target(settings.assets_dsn or "")) as front:
        hung = dataclasses.replace(settings, assets_dsn=_through(settings.assets_dsn or "",
                                                                 front),
                                   store_timeout=1.0, request_timeout=120.0)
        async with gateway(hung) as (http, _):
            assert (await _ask(http, tenant.key, BOTH)).json() == {
                "data": {"devices": {"totalCount": 0}, "assets": {"totalCount": 0}}}
            front.hang()
            response = await _ask(http, tenant.key, BOTH)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["data"] == {"devices": {"totalCount": 0}, "assets": None}
            [error] = body["errors"]
            assert error["extensions"]["code"] == "STORE_UNAVAILABLE"
            assert "assets" in error["message"]
            front.resume()

            async def whole() -> bool:
                answer = (await _ask(http, tenant.key, BOTH)).json()
                return "errors" not in answer

            # Back once the store answers again (breaker cool-down, fresh connections).
            for _ in range(100):
                if await whole():
                    break
                await asyncio.sleep(0.1)
            assert await whole()


async def test_a_hung_redis_lets_requests_through_the_rate_limits(
    settings: Settings, tenant: Tenant
) -> None:
    unavailable = "iotsphere_rate_limit_unavailable_total"
    async with proxy(*_target(settings.redis_url or "")) as front:
        hung = dataclasses.replace(settings, redis_url=_through(settings.redis_url or "", front),
                                   rate_limit=0.001, rate_burst=2, auth_failure_burst=1,
                                   auth_failure_rate_limit=0.001)
        async with gateway(hung) as (http, _):
            assert (await _ask(http, tenant.key, DEVICES)).status_code == 200
            front.hang()
            before = REGISTRY.get_sample_value(unavailable) or 0.0
            # With Redis answering, the third request would be refused (burst 2), and
            # the second failure from this address too (burst 1).
            statuses = [(await _ask(http, tenant.key, DEVICES)).status_code
                        for _ in range(3)]
            failures = [(await _ask(http, None, DEVICES)).status_code for _ in range(3)]
            assert statuses == [200] * 3 and failures == [401] * 3
            assert (REGISTRY.get_sample_value(unavailable) or 0.0) - before == 6
            front.resume()


async def test_the_registry_outage_grace_runs_out(settings: Settings, tenant: Tenant) -> None:
    now = [0.0]
    async with proxy(*_target(settings.registry_dsn or "")) as front:
        cut = dataclasses.replace(settings, registry_dsn=_through(settings.registry_dsn or "",
                                                                  front),
                                  api_key_cache_ttl=0.0, auth_outage_grace=60.0)
        async with gateway(cut) as (http, opened):
            opened.registry.verified_keys = VerifiedKeys(grace=60.0, clock=lambda: now[0])
            assert (await _ask(http, tenant.key, ASSETS)).status_code == 200  # verified at 0
            front.cut()
            now[0] = 59.0
            within = await _ask(http, tenant.key, ASSETS)
            assert within.json() == {"data": {"assets": {"totalCount": 0}}}, within.text
            now[0] = 60.5
            after = await _ask(http, tenant.key, ASSETS)
            assert after.status_code == 503, after.text
            assert after.json()["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
            front.resume()
