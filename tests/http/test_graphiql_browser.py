"""GraphiQL in a real browser: Debian's headless Chromium driven over the DevTools protocol
by puppeteer-core (tests/js/graphiql.mjs). The page loads with no request leaving the
machine, the dev key is prefilled, the Explorer opens, a typed query shows data, and a
subscription shows its SNAPSHOT and then the UPDATED event of a mutation made outside the
page (which the bundled graphql-ws 5.10 client only accepts with a well-formed
connection_ack)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.browser import chromium_with_puppeteer, dev_origin, run_page_script

QUERY = "{ devices(first: 3) { edges { node { name } } } }"


@pytest.fixture(scope="session")
def chromium() -> str:
    return chromium_with_puppeteer()


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=3, hours=0.05, sites=1, lines=1,
                            machines=1)


@pytest.fixture
async def origin(settings: Settings, stores: Stores, tenant: Tenant) -> AsyncIterator[str]:
    # The dev key of embedded mode: prefilled for this loopback browser.
    async with dev_origin(settings, stores, tenant.key) as url:
        yield url


async def drive(chromium: str, origin: str, key: str, device: str) -> dict[str, Any]:
    return await run_page_script("graphiql.mjs", chromium, origin, key, device, QUERY,
                                 limit=180)


async def test_graphiql_in_chromium_runs_queries_and_subscriptions_offline(
    chromium: str, origin: str, tenant: Tenant, fleet: Fleet
) -> None:
    device = str(fleet.active[0])
    report = await drive(chromium, origin, tenant.key, device)

    assert report["errors"] == [], report["errors"]
    assert report["foreign"] == [], f"requests leaving the machine: {report['foreign']}"
    assert any(url.endswith("/graphiql-static/graphiql.min.js") for url in report["requests"])
    assert f"ws://{origin.removeprefix('http://')}/graphql" in report["requests"]
    assert any(f'"Authorization": "Bearer {tenant.key}"' in text for text in report["tools"])
    assert report["typed"][0] == QUERY

    assert report.get("explorer") and "devices" in report["explorer"], report.get("explorer")

    answer = json.loads(report["query"])
    names = [e["node"]["name"] for e in answer["data"]["devices"]["edges"]]
    assert len(names) == 3 and all(names), answer

    snapshot, updated = (json.loads(text) for text in report["events"])
    assert snapshot["data"]["shadowChanged"] == {"kind": "SNAPSHOT", "deviceId": device,
                                                 "version": 1}
    assert report["mutation"] == {"data": {"updateShadow": {"version": 2}}}
    assert updated["data"]["shadowChanged"] == {"kind": "UPDATED", "deviceId": device,
                                                "version": 2}
