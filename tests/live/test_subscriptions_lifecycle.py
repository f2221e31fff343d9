"""How subscriptions start and end against a real server: authentication from
connection_init, the origin check, client complete/close and server shutdown (nothing left
in the hub), and cohorts shared by subscribers of the same document and variables."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from uuid import UUID

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.app import create_app
from gateway.live.cohorts import Cohort, ShadowChange
from gateway.live.hub import ShadowHub
from gateway.loaders import Loaders
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.live.test_subscriptions import SUB, report, snapshots, subscribe
from tests.support.live_server import TransportWS, lifespan_state, serve, wait_until

ALLOWED = "https://dashboard.example"


@dataclasses.dataclass
class Served:
    address: str
    hub: ShadowHub


@pytest.fixture
async def served(settings: Settings, stores: Stores) -> AsyncIterator[Served]:
    app = create_app(dataclasses.replace(settings, allowed_origins=(ALLOWED,)), stores=stores)
    kept = lifespan_state(app)
    async with serve(app) as address:
        yield Served(address, kept["state"]["hub"])


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> Fleet:
    return await seed_fleet(stores, tenant.id, devices=4, hours=0.05, sites=2, lines=1,
                            machines=1)


def empty(hub: ShadowHub) -> bool:
    """No member, no cohort and nothing indexed: nothing of a subscription is left."""
    indexed = [*hub._by_device.values(), *hub._tenant_wide.values(), *hub._by_asset.values()]
    return hub.subscriber_count == 0 and not hub._cohorts and not any(indexed)


async def closed_with(ws: TransportWS) -> int | None:
    """Reads until the server closes the socket; the code of its close frame (None: the
    connection dropped without one)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.ws.recv(), 10)
    return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.parametrize(("key", "reason"), [
    (None, "Missing Authorization header: send 'Authorization: Bearer <key>'"),
    ("iot_not-a-real-key", "Invalid API key"),
])
async def test_connection_init_without_a_valid_key_is_closed_4403_saying_why(
    served: Served, key: str | None, reason: str
) -> None:
    """The close reason says what HTTP's 401 says: a missing key or an invalid one."""
    async with TransportWS.connect(served.address, key) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, reason)


@pytest.mark.parametrize("origin", ["same-host", ALLOWED])
async def test_same_host_and_allowed_origins_are_accepted(
    served: Served, tenant: Tenant, origin: str
) -> None:
    origin = f"http://{served.address}" if origin == "same-host" else origin
    async with TransportWS.connect(served.address, tenant.key, origin=origin) as ws:
        assert (await ws.receive())["type"] == "connection_ack"


async def test_a_foreign_origin_is_refused_at_the_handshake(
    served: Served, tenant: Tenant
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with TransportWS.connect(served.address, tenant.key,
                                       origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_complete_and_close_leave_nothing_behind(
    served: Served, gateway: Gateway, tenant: Tenant, fleet: Fleet
) -> None:
    device = str(fleet.devices[2])
    async with TransportWS.connect(served.address, tenant.key) as ws:
        op = await subscribe(ws, {"ids": [device]})
        await snapshots(ws, 1)
        assert served.hub.subscriber_count == 1
        await ws.send({"id": op, "type": "complete"})
        await wait_until(lambda: empty(served.hub))
        # A change of the device sends nothing for the completed operation: the next
        # messages on the (still usable) socket are the new subscription's SNAPSHOTs.
        await report(gateway, tenant, device, "after complete")
        await ws.subscribe(SUB, {"asset": str(fleet.assets["Site 1"])})
        first = await snapshots(ws, 2)
        assert first[device]["version"] == 2
        assert served.hub.subscriber_count == 1
    # Closing the socket (with that subscription live) cleans up too.
    await wait_until(lambda: empty(served.hub))


async def test_server_shutdown_closes_sockets_cleanly(
    settings: Settings, stores: Stores, tenant: Tenant, fleet: Fleet
) -> None:
    app = create_app(settings, stores=stores)
    kept = lifespan_state(app)
    async with AsyncExitStack() as server:
        address = await server.enter_async_context(serve(app))
        hub: ShadowHub = kept["state"]["hub"]
        async with TransportWS.connect(address, tenant.key) as a, \
                TransportWS.connect(address, tenant.key) as b:
            for ws in (a, b):
                await subscribe(ws, {})
                await snapshots(ws, 4)
            assert hub.subscriber_count == 2
            stopping = asyncio.create_task(server.aclose())
            codes = [await closed_with(ws) for ws in (a, b)]
            await asyncio.wait_for(stopping, 30)
    assert codes == [1012, 1012]  # "service restart": a close frame, not a dropped socket
    assert empty(hub)


async def test_same_document_and_variables_share_one_cohort_and_execution(
    served: Served, gateway: Gateway, tenant: Tenant, fleet: Fleet
) -> None:
    hub = served.hub
    device = str(fleet.devices[2])
    async with TransportWS.connect(served.address, tenant.key) as a, \
            TransportWS.connect(served.address, tenant.key) as b:
        for ws in (a, b):
            await subscribe(ws, {"ids": [device]})
            await snapshots(ws, 1)
        assert len(hub._cohorts) == 1
        (cohort,) = hub._cohorts.values()
        assert len(cohort.members) == 2
        calls = count_executions(cohort)

        await report(gateway, tenant, device, 1)
        for ws in (a, b):
            event = await ws.next_event()
            assert (event["kind"], event["version"]) == ("UPDATED", 2)
        assert calls == ["UPDATED"]

        # Other variables, or another document: cohorts of their own.
        await a.subscribe(SUB, {"ids": [device, str(fleet.devices[0])]})
        await snapshots(a, 2)
        await b.subscribe(SUB.replace("delta", ""), {"ids": [device]})
        await snapshots(b, 1)
        assert len(hub._cohorts) == 3
        assert sorted(len(c.members) for c in hub._cohorts.values()) == [1, 1, 2]
    await wait_until(lambda: empty(hub))


def count_executions(cohort: Cohort) -> list[str]:
    calls: list[str] = []
    execute = cohort._execute

    async def counted(change: ShadowChange, kind: str) -> Any:
        calls.append(kind)
        return await execute(change, kind)

    cohort._execute = counted
    return calls


async def test_concurrent_first_subscribers_of_an_asset_share_one_cohort(
    served: Served, tenant: Tenant, fleet: Fleet
) -> None:
    """Two subscribers of one asset arrive together: both resolve the asset's devices
    before either cohort exists. They must still end up in one indexed cohort."""
    hub = served.hub
    resolve = hub._asset_devices
    arrived, both = 0, asyncio.Event()

    async def gated(tenant_id: UUID, asset_id: UUID) -> set[UUID]:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        return await resolve(tenant_id, asset_id)

    hub._asset_devices = gated  # type: ignore[method-assign]
    async with TransportWS.connect(served.address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        site = {"asset": str(fleet.assets["Site 1"])}
        await ws.subscribe(SUB, site)
        await ws.subscribe(SUB, site)
        await snapshots(ws, 4)
        assert len(hub._cohorts) == 1
        assert hub.subscriber_count == 2
        assert sum(len(c) for c in hub._by_device.values()) == 2  # Site 1's two devices
    await wait_until(lambda: empty(hub))


async def test_a_query_over_a_websocket_releases_its_loaders_once_answered(
    served: Served, tenant: Tenant, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an HTTP request does: the rows a query loaded are dropped when it is answered,
    not left with graphql-core's cyclic execution context for a full collection."""
    released: list[Loaders] = []
    release = Loaders.release

    def counted(self: Loaders) -> None:
        released.append(self)
        release(self)

    monkeypatch.setattr(Loaders, "release", counted)
    async with TransportWS.connect(served.address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        assert not released
        op = await ws.subscribe("{ devices(first: 2) { edges { node { name asset { name } } } } }")
        answer = await ws.receive()
        assert answer["type"] == "next" and answer["id"] == op, answer
        assert len(answer["payload"]["data"]["devices"]["edges"]) == 2
        assert (await ws.receive()) == {"id": op, "type": "complete"}
    assert released, "the query's loaders were never released"
