"""Subscriptions under stress against a real server: a Redis restart mid-subscription (a
dedicated Valkey, since the suite's shared one must stay up), a slow consumer next to a
fast one, and a shadow read failing during an asset-filter refresh."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as redis
import websockets

from gateway.app import create_app
from gateway.errors import StoreUnavailable
from gateway.live.hub import ShadowHub
from gateway.runtime.demo import seed_fleet
from gateway.runtime.devstack import valkey_bin
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.shadows import ShadowDoc, shadow_key
from tests.conftest import Gateway, Tenant
from tests.live.test_subscriptions import report, snapshots, subscribe
from tests.support.live_server import TransportWS, free_port, lifespan_state, serve


class Valkey:
    """A Valkey of the test's own on a fixed port, which the test may kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.dir, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.dir / "valkey.log").open("ab")
        self.process = subprocess.Popen(
            [str(valkey_bin()), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    async def ready(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(500):  # bounded: up to ~10 s
                assert self.process is not None and self.process.poll() is None
                try:
                    await client.ping()
                    return
                except (redis.ConnectionError, OSError):
                    await asyncio.sleep(0.02)
            raise AssertionError(f"valkey did not start on port {self.port}")
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[Valkey]:
    server = Valkey(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def hset(version: int, reported: dict[str, Any]) -> dict[str, Any]:
    """A shadow hash as another Redis client would write it."""
    return {"desired": b"{}", "reported": orjson.dumps(reported), "metadata": b"{}",
            "version": version, "updatedAt": datetime.now(UTC).isoformat()}


async def test_redis_restart_is_followed_by_a_snapshot_and_live_events(
    settings: Settings, tenant: Tenant, valkey: Valkey
) -> None:
    await valkey.ready()
    own = dataclasses.replace(settings, redis_url=valkey.url)
    direct = redis.Redis.from_url(valkey.url)
    async with open_stores(own) as stores:
        fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                                 machines=1)
        device = fleet.active[0]
        key = shadow_key(tenant.id, device)
        app = create_app(own, stores=stores)
        kept = lifespan_state(app)
        try:
            async with serve(app) as address, TransportWS.connect(address, tenant.key) as ws:
                hub: ShadowHub = kept["state"]["hub"]
                await subscribe(ws, {"ids": [str(device)]})
                assert (await snapshots(ws, 1))[str(device)]["version"] == 1

                # A change whose notification is lost: Redis does not send it, then dies.
                await direct.config_set("notify-keyspace-events", "")
                await direct.hset(key, mapping=hset(5, {"while": "down"}))
                await direct.save()  # the restarted server starts from this data
                valkey.kill()
                valkey.start()
                await valkey.ready()
                await direct.aclose()
                direct = redis.Redis.from_url(valkey.url)

                event = await ws.next_event(timeout=30)
                assert (event["kind"], event["version"]) == ("SNAPSHOT", 5)
                assert event["shadow"]["reported"] == {"while": "down"}
                assert hub.reconnects >= 1
                # The restarted server forgot the keyspace config; the hub set it again.
                flags = (await direct.config_get("notify-keyspace-events"))[
                    "notify-keyspace-events"]
                assert "K" in flags

                await direct.hset(key, mapping=hset(6, {"after": "restart"}))
                event = await ws.next_event()
                assert (event["kind"], event["version"]) == ("UPDATED", 6)
                async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                    gateway = Gateway(http)
                    assert await report(gateway, tenant, device, "via gateway") == 7
                event = await ws.next_event()
                assert (event["kind"], event["version"]) == ("UPDATED", 7)
        finally:
            await direct.aclose()


@asynccontextmanager
async def connect_slow(address: str, key: str) -> AsyncIterator[TransportWS]:
    """A client that buffers almost nothing: a tiny receive window, one queued message."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    async with websockets.connect(f"ws://{address}/graphql", sock=sock, max_queue=1,
                                  compression=None,
                                  subprotocols=["graphql-transport-ws"]) as ws:
        client = TransportWS(ws)
        await client.send({"type": "connection_init",
                           "payload": {"Authorization": f"Bearer {key}"}})
        yield client


async def test_a_slow_consumer_does_not_delay_a_fast_one(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = fleet.active[0]
    updates = 200
    # What the slow socket can hold in flight is bounded by the kernel's largest send
    # buffer (tcp_wmem max) plus small client and server buffers. Events are sized (and
    # incompressible) so that all of it holds well under half of the updates.
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])  # noqa: ASYNC240
    size = max(16_384, (wmem_max + 1_048_576) * 4 // updates)
    doc = "subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) " \
          "{ kind version shadow { reported } } }"
    app = create_app(settings, stores=stores)
    kept = lifespan_state(app)
    async with serve(app) as address, TransportWS.connect(address, tenant.key) as fast, \
            connect_slow(address, tenant.key) as slow:
        for ws in (slow, fast):
            assert (await ws.receive())["type"] == "connection_ack"
            await ws.subscribe(doc, {"ids": [str(device)]})
            assert (await ws.next_event())["kind"] == "SNAPSHOT"
        hub = kept["state"]["hub"]
        (cohort,) = hub._cohorts.values()
        prepared, waited = hub.frames.prepared, hub.frames.waited
        # The slow client reads nothing more until every update reached the fast one.
        for version in range(2, updates + 2):
            await stores.shadows.put(tenant.id, ShadowDoc(
                device, version, {}, {"blob": os.urandom(size // 2).hex()}, {},
                datetime.now(UTC)))
            event = await fast.next_event()
            assert (event["kind"], event["version"]) == ("UPDATED", version)
            assert all(m.backlog <= 1 for m in cohort.members)  # one device: one pending
        final = updates + 1
        # The fast socket's frames were written prepared; the slow one's paused transport
        # took the ASGI send, which waited for it to drain (gateway.http.ws_protocol).
        assert hub.frames.prepared - prepared >= updates
        assert hub.frames.waited > waited

        received = []
        while not received or received[-1] != final:
            received.append((await slow.next_event(timeout=30))["version"])
        assert received == sorted(set(received))
        assert len(received) < updates // 2, len(received)


async def test_a_failed_read_during_an_asset_refresh_does_not_stop_the_hub(
    settings: Settings, stores: Stores, gateway: Gateway, tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=4, hours=0.05, sites=2, lines=1,
                             machines=1)
    inside, moved = fleet.devices[2], fleet.devices[3]
    app = create_app(settings, stores=stores)
    async with serve(app) as address, TransportWS.connect(address, tenant.key) as ws:
        await subscribe(ws, {"asset": str(fleet.assets["Site 1"])})
        await snapshots(ws, 2)
        read = stores.shadows.get_with_versions
        failed = asyncio.Event()

        async def failing(*args: Any) -> Any:
            failed.set()
            raise StoreUnavailable("shadows", "ConnectionError")

        monkeypatch.setattr(stores.shadows, "get_with_versions", failing)
        body = await gateway.query(
            "mutation($d: ID!, $a: ID!) { attachDevice(deviceId: $d, assetId: $a) { id } }",
            {"d": str(moved), "a": str(fleet.assets["Machine 1.1.1"])}, key=tenant.key)
        assert "errors" not in body, body
        await asyncio.wait_for(failed.wait(), 10)  # the refresh's snapshot read failed
        monkeypatch.setattr(stores.shadows, "get_with_versions", read)

        assert await report(gateway, tenant, inside, 1) == 2
        event = await ws.next_event()
        assert (event["deviceId"], event["version"]) == (str(inside), 2)
        # The attached device missed its SNAPSHOT; its next change is its first delivery.
        await report(gateway, tenant, moved, 1)
        event = await ws.next_event()
        assert (event["deviceId"], event["kind"], event["version"]) == (
            str(moved), "SNAPSHOT", 2)
