"""telemetryChanged against a real server, Redis and PostgreSQL: a SNAPSHOT of the last
values first, then what both ingest paths commit (ingestTelemetry and POST /ingest),
announced through Redis; never another tenant's readings; the per-subscription rate
bound coalesces a burst to its newest reading."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gateway.live.hub import ShadowHub
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.shadows import telemetry_channel
from tests.conftest import Gateway, Tenant
from tests.support.live_server import TransportWS, serve_gateway, wait_until

SUB = """subscription($ids: [ID!]!, $metrics: [String!]) {
  telemetryChanged(deviceIds: $ids, metrics: $metrics) {
    kind deviceId readings { metric time value }
  }
}"""
INGEST = """mutation($r: [ReadingInput!]!) {
  ingestTelemetry(readings: $r) { accepted rejected { reason } } }"""




async def seeded(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                            machines=1)


async def next_event(ws: TransportWS, timeout: float = 15.0) -> dict[str, Any]:  # noqa: ASYNC109
    while True:
        message = await ws.receive(timeout)
        if message["type"] == "ping":
            await ws.send({"type": "pong"})
            continue
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        event: dict[str, Any] = message["payload"]["data"]["telemetryChanged"]
        return event


def now_text(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


async def ingest_mutation(gateway: Gateway, tenant: Tenant, readings: list[dict[str, Any]]
                          ) -> None:
    body = await gateway.query(INGEST, {"r": readings}, key=tenant.key)
    assert body["data"]["ingestTelemetry"]["accepted"] == len(readings), body


async def ingest_bulk(gateway: Gateway, tenant: Tenant, readings: list[dict[str, Any]]
                      ) -> None:
    response = await gateway.http.post(
        "/ingest", content="\n".join(json.dumps(r) for r in readings).encode(),
        headers={"Authorization": f"Bearer {tenant.key}",
                 "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200 and response.json()["accepted"] == len(readings), (
        response.text)


async def test_snapshot_then_both_ingest_paths(
    served: tuple[str, ShadowHub], gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    address, hub = served
    fleet = await seeded(stores, tenant)
    device = str(fleet.active[0])
    async with TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [device], "metrics": ["temperature", "vibration"]})
        snapshot = await next_event(ws)
        assert snapshot["kind"] == "SNAPSHOT" and snapshot["deviceId"] == device
        last = (await stores.telemetry.latest(tenant.id, [fleet.active[0]],
                                              ["temperature", "vibration"]))[0]
        assert [(r["metric"], r["value"]) for r in snapshot["readings"]] == [
            (row["metric"], row["value"]) for row in last]

        # ingestTelemetry: the new reading arrives, the other metric keeps its last value.
        await ingest_mutation(gateway, tenant, [
            {"deviceId": device, "metric": "temperature", "time": now_text(-2), "value": 1.5},
            {"deviceId": device, "metric": "temperature", "time": now_text(-1), "value": 2.5},
        ])
        event = await next_event(ws)
        values = {r["metric"]: r["value"] for r in event["readings"]}
        assert event["kind"] == "UPDATED" and values["temperature"] == 2.5
        # A metric not chosen moves nothing: no event for it.
        await ingest_mutation(gateway, tenant, [
            {"deviceId": device, "metric": "pressure", "time": now_text(-1), "value": 9.0}])
        # POST /ingest: the same subscription sees the bulk path's batch.
        await ingest_bulk(gateway, tenant, [
            {"deviceId": device, "metric": "vibration", "time": now_text(), "value": 7.25}])
        event = await next_event(ws)
        values = {r["metric"]: r["value"] for r in event["readings"]}
        assert values == {**values, "temperature": 2.5, "vibration": 7.25}
        assert "pressure" not in values
    await wait_until(lambda: hub.subscriber_count == 0 and not hub.telemetry.cohorts)


async def test_another_tenants_readings_never_arrive(
    served: tuple[str, ShadowHub], gateway: Gateway, stores: Stores, tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    address, _ = served
    mine = await seeded(stores, tenant)
    theirs = await seeded(stores, other_tenant)
    device = str(mine.active[0])
    async with TransportWS.connect(address, other_tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [device]})  # my device, their key
        message = await ws.receive()
        assert message["type"] == "error", message
        assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
    async with TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [device], "metrics": ["temperature"]})
        assert (await next_event(ws))["kind"] == "SNAPSHOT"
        # Their readings, and an announcement on their channel naming my device: neither
        # reaches my subscription. Then one of mine does, and it is the next event.
        await ingest_mutation(gateway, other_tenant, [
            {"deviceId": str(d), "metric": "temperature", "time": now_text(-1), "value": -1}
            for d in theirs.active])
        forged = [[device, "temperature", now_text(-0.5), -2.0]]
        await stores.shadows.client.publish(telemetry_channel(other_tenant.id),
                                            json.dumps(forged))
        await ingest_bulk(gateway, tenant, [
            {"deviceId": device, "metric": "temperature", "time": now_text(), "value": 3.0}])
        event = await next_event(ws)
        assert event["readings"] == [
            {"metric": "temperature", "time": event["readings"][0]["time"], "value": 3.0}]


async def test_a_burst_coalesces_under_the_rate_bound(
    settings: Settings, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    # One event per 2 s at most: 12 batches committed back to back arrive as fewer events,
    # the last of which holds the newest reading (nothing newest is ever dropped).
    bounded = dataclasses.replace(settings, telemetry_events_per_second=0.5)
    fleet = await seeded(stores, tenant)
    device = str(fleet.active[0])
    async with serve_gateway(bounded, stores) as (address, _), TransportWS.connect(
            address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [device], "metrics": ["temperature"]})
        assert (await next_event(ws))["kind"] == "SNAPSHOT"
        batches = 12
        await asyncio.gather(*(ingest_mutation(gateway, tenant, [
            {"deviceId": device, "metric": "temperature", "time": now_text(n - batches),
             "value": float(n)}]) for n in range(batches)))
        events = []
        while not events or events[-1]["readings"][0]["value"] != batches - 1:
            events.append(await next_event(ws, timeout=30))
        assert len(events) < batches, events
        assert [e["readings"][0]["value"] for e in events] == sorted(
            e["readings"][0]["value"] for e in events)


async def test_refusals(served: tuple[str, ShadowHub], stores: Stores, tenant: Tenant) -> None:
    address, _ = served
    fleet = await seeded(stores, tenant)
    device = str(fleet.active[0])
    async with TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        for variables, code in [({"ids": [device], "metrics": ["bad metric"]}, "BAD_USER_INPUT"),
                                ({"ids": []}, "BAD_USER_INPUT")]:
            await ws.subscribe(SUB, variables)
            message = await ws.receive()
            assert message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] == code


async def test_over_sse(served: tuple[str, ShadowHub], gateway: Gateway, stores: Stores,
                        tenant: Tenant) -> None:
    """The HTTP stream transports serve it through the same hub."""
    address, _ = served
    fleet = await seeded(stores, tenant)
    device = str(fleet.active[0])
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
        async with http.stream(
            "POST", "/graphql",
            json={"query": SUB, "variables": {"ids": [device], "metrics": ["temperature"]}},
            headers={"Accept": "text/event-stream", "Authorization": f"Bearer {tenant.key}"},
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            events = []
            while len(events) < 2:
                line = await asyncio.wait_for(anext(lines), 30)
                if line.startswith("data: ") and line != "data: ":
                    events.append(json.loads(line[6:])["data"]["telemetryChanged"])
                    if len(events) == 1:
                        await ingest_bulk(gateway, tenant, [{
                            "deviceId": device, "metric": "temperature", "time": now_text(),
                            "value": 4.5}])
    assert [e["kind"] for e in events] == ["SNAPSHOT", "UPDATED"]
    assert events[1]["readings"][0]["value"] == 4.5
