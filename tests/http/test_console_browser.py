"""The fleet console (/console) in a real browser: Debian's headless Chromium driven by
puppeteer-core (tests/js/console.mjs). The console loads with no request leaving the
machine; a shadow change made from outside shows in the fleet table within 1 s; a reading
posted to /ingest shows on the device chart within 1 s; saving the desired state with a
stale expectedVersion shows the conflict and saves nothing. CONSOLE_SCREENSHOTS=<dir>
writes console.png, device.png and conflict.png there (docs/ holds the committed ones)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.app import create_app
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.browser import chromium_with_puppeteer, dev_origin, run_page_script


@pytest.fixture(scope="session")
def chromium() -> str:
    return chromium_with_puppeteer()


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=6, hours=24, sites=2, lines=1,
                            machines=1)


@pytest.fixture
async def origin(settings: Settings, stores: Stores, tenant: Tenant) -> AsyncIterator[str]:
    async with dev_origin(settings, stores, tenant.key) as url:
        yield url


async def drive(chromium: str, origin: str, key: str, device: str) -> dict[str, Any]:
    shots = [os.environ["CONSOLE_SCREENSHOTS"]] if os.environ.get("CONSOLE_SCREENSHOTS") else []
    return await run_page_script("console.mjs", chromium, origin, key, device, *shots,
                                 limit=200)


async def test_console_live_table_chart_and_conflict(
    chromium: str, origin: str, tenant: Tenant, fleet: Fleet
) -> None:
    device = str(fleet.active[0])
    report = await drive(chromium, origin, tenant.key, device)

    assert report["errors"] == [], report["errors"]
    assert report["foreign"] == [], f"requests leaving the machine: {report['foreign']}"
    assert f"{origin}/console-static/console.js" in report["requests"]
    assert set(report["rows"]) == {str(d) for d in fleet.devices}

    assert "errors" not in report["update"], report["update"]
    assert report["shadowSeen"], f"not in the table within 1 s ({report['shadowMs']} ms)"

    assert report["points"] > 100  # 24 h of 5-minute buckets from the rollup
    assert report["ingest"]["accepted"] == 1, report["ingest"]
    assert report["chartSeen"], f"not on the chart within 1 s ({report['chartMs']} ms)"

    assert report["conflict"] and "Conflict" in report["conflict"], report["conflict"]
    assert report["desiredAfter"]["mode"] == "boost"  # the stale save stored nothing


async def test_console_prefills_the_dev_key_only_for_loopback(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    import httpx

    app = create_app(settings, stores=stores, dev_key=tenant.key)
    from tests.support.lifespan import Lifespan

    async with Lifespan(app) as manager:
        for client, prefilled in ((("127.0.0.1", 5000), True), (("203.0.113.9", 5000), False)):
            transport = httpx.ASGITransport(app=manager.app, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                page = await http.get("/console")
                assert page.status_code == 200
                assert (tenant.key in page.text) is prefilled
                script = await http.get("/console-static/console.js")
                assert script.status_code == 200 and "telemetryChanged" in script.text
