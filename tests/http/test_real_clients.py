"""Frontend clients from npm against a live gateway (tests/js/clients.mjs): graphql-sse and
Apollo Client's multipart subscriptions, Apollo's cache updated by a mutation's result and
by shadowChanged events (a watched query follows them through the normalized cache), and
urql paging an ordered, filtered connection forward and back. Installed on first use;
under CI=true a missing node/npm fails instead of skipping."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.app import create_app
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.live.test_subscriptions import report
from tests.support.js import JS, npm_ready
from tests.support.live_server import serve

CLIENTS = ("@apollo/client", "@urql/core", "graphql-sse", "rxjs")


@pytest.fixture
async def address(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    async with serve(create_app(settings, stores=stores)) as addr:
        yield addr


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=4, hours=0.05, sites=1, lines=1,
                            machines=1)


async def _node(*args: str) -> asyncio.subprocess.Process:
    await asyncio.to_thread(npm_ready, *CLIENTS)
    return await asyncio.create_subprocess_exec(
        "node", str(JS / "clients.mjs"), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(os.environ))


async def _line(node: asyncio.subprocess.Process) -> dict[str, Any]:
    assert node.stdout is not None and node.stderr is not None
    line = await asyncio.wait_for(node.stdout.readline(), 30)
    assert line, (await node.stderr.read()).decode()
    value: dict[str, Any] = json.loads(line)
    return value


async def _finish(node: asyncio.subprocess.Process) -> None:
    try:
        code = await asyncio.wait_for(node.wait(), 30)
        assert node.stderr is not None
        assert code == 0, (await node.stderr.read()).decode()
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


@pytest.mark.parametrize("mode", ["sse", "multipart"])
async def test_subscription_over_http_streams(
    address: str, gateway: Gateway, fleet: Fleet, tenant: Tenant, mode: str
) -> None:
    device = str(fleet.active[0])
    node = await _node(mode, f"http://{address}/graphql", tenant.key, device, "3")
    try:
        events = [await _line(node)]
        for n in range(2):
            await report(gateway, tenant, device, n)
            events.append(await _line(node))
    finally:
        await _finish(node)
    assert [(e["kind"], e["deviceId"], e["version"]) for e in events] == [
        ("SNAPSHOT", device, 1), ("UPDATED", device, 2), ("UPDATED", device, 3)]


async def test_apollo_cache_takes_the_mutation_result(
    address: str, fleet: Fleet, tenant: Tenant
) -> None:
    device = str(fleet.active[0])
    node = await _node("apollo-cache", f"http://{address}/graphql", tenant.key, device)
    try:
        before = (await _line(node))["before"]
        cached = (await _line(node))["cached"]
    finally:
        await _finish(node)
    assert cached["id"] == before["id"] == device
    assert cached["version"] == before["version"] + 1
    assert cached["desired"]["fan"] == "high"


async def test_urql_pages_an_ordered_filtered_connection_both_ways(
    address: str, gateway: Gateway, fleet: Fleet, tenant: Tenant
) -> None:
    node = await _node("urql-pages", f"http://{address}/graphql", tenant.key)
    try:
        pages = await _line(node)
    finally:
        await _finish(node)
    body = await gateway.query("""{ devices(first: 100, orderBy: {field: NAME, direction: DESC},
        filter: {or: [{status: [ACTIVE]}, {lastSeenAt: {never: true}}]}) {
        edges { node { name } } } }""", key=tenant.key)
    expected = [e["node"]["name"] for e in body["data"]["devices"]["edges"]]
    assert len(expected) >= 3
    assert pages == {"forward": expected, "backward": expected}


async def test_apollo_watched_query_follows_shadow_changed_through_the_cache(
    address: str, gateway: Gateway, fleet: Fleet, tenant: Tenant
) -> None:
    """Apollo Client 4 watches `device { shadow { id version } }` and subscribes to
    shadowChanged (multipart over HttpLink). An update made elsewhere reaches the watched
    query through Apollo's normalized cache (the event's Shadow, keyed by its id, is the
    object Device:<id>.shadow points to): each new version shows there, and the query was
    sent once (no refetch)."""
    device = str(fleet.active[0])
    node = await _node("apollo-live-cache", f"http://{address}/graphql", tenant.key, device,
                       "3")
    try:
        first = await _line(node)
        assert await _line(node) == {"ready": True}
        versions = [first["watched"]["version"]]
        seen = [first]
        for n in range(2):
            versions.append(await report(gateway, tenant, device, f"live-{n}"))
            seen.append(await _line(node))
    finally:
        await _finish(node)
    assert [s["watched"]["version"] for s in seen] == versions
    assert versions == list(range(versions[0], versions[0] + 3))
    assert seen[-1]["watched"]["reported"]["n"] == "live-1"
    assert {s["watched"]["id"] for s in seen} == {first["watched"]["id"]}
    # Sent once, the subscription once; nothing refetched the watched query.
    assert seen[-1]["sent"] == {"DeviceShadow": 1, "ShadowLive": 1}
