"""Subscriptions over HTTP streams: graphql-sse's distinct connections mode and Apollo's
multipart protocol, against a real server, with the WebSocket's rules: snapshot then
events, the caller's tenant only, refusals as ordinary JSON errors, and streams that hold
no execution slot."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.live.test_subscriptions import report
from tests.support.live_server import serve

SUB = """subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) {
  kind deviceId version shadow { id reported } } }"""
SSE = "text/event-stream"
MULTIPART = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'


@pytest.fixture
async def address(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    async with serve(create_app(settings, stores=stores)) as addr:
        yield addr


@asynccontextmanager
async def _stream(address: str, key: str | None, accept: str, query: str,
                  variables: dict[str, Any] | None = None
                  ) -> AsyncIterator[tuple[httpx.Response, AsyncIterator[dict[str, Any]]]]:
    """The response and, for a stream, its results one by one (heartbeats skipped)."""
    headers = {"Accept": accept}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http, \
            http.stream("POST", "/graphql", json={"query": query, "variables": variables or {}},
                        headers=headers) as response:
        yield response, (_sse(response) if accept == SSE else _multipart(response))


async def _sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") or line == "data:":
            data = line[len("data:"):].strip()
            yield {"event": event, "data": json.loads(data) if data else None}


async def _multipart(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    delimiter = "\r\n--graphql"
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while (start := buffer.find(delimiter)) >= 0 and (
                end := buffer.find(delimiter, start + len(delimiter))) >= 0:
            part, buffer = buffer[start + len(delimiter):end], buffer[end:]
            body = part.split("\r\n\r\n", 1)[1]
            if json.loads(body) != {}:  # {} is a heartbeat
                yield json.loads(body)
        if buffer.startswith(delimiter + "--"):
            return


async def _next(results: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(results.__anext__(), 10)


def _event(kind: str, result: dict[str, Any]) -> dict[str, Any]:
    payload = result["data"] if kind == SSE else result["payload"]
    if kind == SSE:
        assert result["event"] == "next", result
    event: dict[str, Any] = payload["data"]["shadowChanged"]
    return event


@pytest.mark.parametrize("accept", [SSE, MULTIPART])
async def test_snapshot_then_updates_over_a_stream(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant, accept: str
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = str(fleet.active[0])
    async with _stream(address, tenant.key, accept, SUB, {"ids": [device]}) as (resp, results):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith(accept.split(";")[0].split(",")[0])
        snap = _event(accept, await _next(results))
        assert (snap["kind"], snap["deviceId"], snap["shadow"]["id"]) == ("SNAPSHOT", device,
                                                                         device)
        body = await gateway.query(
            'mutation($d: ID!) { updateShadow(deviceId: $d, reported: {mode: "idle"}) '
            '{ version } }', {"d": device}, key=tenant.key)
        version = body["data"]["updateShadow"]["version"]
        event = _event(accept, await _next(results))
        assert (event["kind"], event["version"]) == ("UPDATED", version)
        assert event["shadow"]["reported"]["mode"] == "idle"


@pytest.mark.parametrize("accept", [SSE, MULTIPART])
async def test_a_query_over_a_stream_answers_once_and_ends(
    address: str, tenant: Tenant, accept: str
) -> None:
    async with _stream(address, tenant.key, accept, "{ devices { totalCount } }") as (
            resp, results):
        assert resp.status_code == 200
        items = [item async for item in results]
    first = items[0]["data"] if accept == SSE else items[0]["payload"]
    assert first == {"data": {"devices": {"totalCount": 0}}}
    if accept == SSE:
        assert [i["event"] for i in items] == ["next", "complete"]


async def test_refusals_are_json_errors_and_tenants_stay_apart(
    address: str, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=1, hours=0.05, sites=1, lines=1,
                             machines=1)
    mine = str(fleet.devices[0])
    async with _stream(address, None, SSE, SUB, {"ids": [mine]}) as (resp, _):
        assert resp.status_code == 401
    # Another tenant's device is NOT_FOUND, before any stream starts.
    async with _stream(address, other_tenant.key, SSE, SUB, {"ids": [mine]}) as (resp, _):
        await resp.aread()
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    async with _stream(address, tenant.key, MULTIPART, "subscription { nope }") as (resp, _):
        await resp.aread()
        assert resp.status_code == 400  # a validation failure, as for any request
        assert resp.json()["errors"][0]["message"].startswith("Cannot query field")


async def test_streams_hold_no_execution_slot(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    app = create_app(dataclasses.replace(settings, max_concurrent_requests=2), stores=stores)
    fleet = await seed_fleet(stores, tenant.id, devices=1, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = str(fleet.devices[0])
    async with serve(app) as addr:
        streams = [_stream(addr, tenant.key, SSE, SUB, {"ids": [device]}) for _ in range(4)]
        opened = [await s.__aenter__() for s in streams]
        try:
            for _, results in opened:
                assert _event(SSE, await _next(results))["kind"] == "SNAPSHOT"
            async with httpx.AsyncClient(base_url=f"http://{addr}", timeout=10) as http:
                response = await http.post("/graphql", json={"query": "{ __typename }"},
                                           headers={"Authorization": f"Bearer {tenant.key}"})
                assert response.json() == {"data": {"__typename": "Query"}}
        finally:
            for s in streams:
                await s.__aexit__(None, None, None)


CREATE_KEY = """mutation { createApiKey(input: {name: "stream", role: VIEWER}) {
  secret apiKey { id } } }"""
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"


@pytest.mark.parametrize("accept", [SSE, MULTIPART])
async def test_revoking_the_key_ends_its_streams(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant,
    accept: str
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=1, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = str(fleet.devices[0])
    created = (await gateway.query(CREATE_KEY, key=tenant.key))["data"]["createApiKey"]
    async with _stream(address, created["secret"], accept, SUB, {"ids": [device]}) as (
            resp, results), _stream(address, tenant.key, accept, SUB, {"ids": [device]}) as (
            _, kept):
        assert _event(accept, await _next(results))["kind"] == "SNAPSHOT"
        assert _event(accept, await _next(kept))["kind"] == "SNAPSHOT"
        body = await gateway.query(REVOKE_KEY, {"id": created["apiKey"]["id"]}, key=tenant.key)
        assert body["data"]["revokeApiKey"]["revokedAt"]
        ended = await _next(results)
        payload = ended["data"] if accept == SSE else ended
        assert payload["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert payload["errors"][0]["message"] == "Credential revoked"
        rest = [item async for item in results]
        if accept == SSE:
            assert [i["event"] for i in rest] == ["complete"]
        # The other key's stream of the same device lives on.
        await report(gateway, tenant, device, 1)
        assert _event(accept, await _next(kept))["kind"] == "UPDATED"


WHOLE_TENANT = """subscription { shadowChanged { kind deviceId version } }"""


async def test_a_whole_tenant_stream_sees_its_tenant_only(
    address: str, gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                            machines=1)
    theirs = await seed_fleet(stores, other_tenant.id, devices=2, hours=0.05, sites=1,
                              lines=1, machines=1)
    watched = {str(d) for d in theirs.devices}  # every live device, shadow or not
    async with _stream(address, other_tenant.key, SSE, WHOLE_TENANT) as (resp, results):
        assert resp.status_code == 200
        snapshots = [_event(SSE, await _next(results)) for _ in watched]
        assert {e["deviceId"] for e in snapshots} == watched
        assert {e["kind"] for e in snapshots} == {"SNAPSHOT"}
        # Our device changes first: were it delivered there, it would come first.
        await report(gateway, tenant, mine.active[0], 1)
        await report(gateway, other_tenant, theirs.active[0], 1)
        event = _event(SSE, await _next(results))
        assert (event["kind"], event["deviceId"]) == ("UPDATED", str(theirs.active[0]))


@pytest.mark.parametrize("accept", [SSE, MULTIPART])
async def test_a_stream_with_no_first_event_still_answers(
    address: str, tenant: Tenant, accept: str
) -> None:
    """A whole-tenant stream over a tenant with no live device has no snapshot to send:
    headers and a heartbeat go out anyway (the client waited forever before)."""
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http, \
            http.stream("POST", "/graphql", json={"query": WHOLE_TENANT},
                        headers={"Accept": accept,
                                 "Authorization": f"Bearer {tenant.key}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(accept.split(";")[0])
        chunk = await asyncio.wait_for(response.aiter_raw().__anext__(), 10)
        assert chunk.startswith(b":\n\n" if accept == SSE else b"\r\n--graphql")
