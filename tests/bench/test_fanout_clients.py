"""bench/_fanout_clients.py, the fan-out bench's subscriber: its sockets against the
gateway on a real socket (handshake, permessage-deflate, the graphql-transport-ws setup,
every update counted and timed, convergence, the closing handshake), against a real
websockets server that sends what the gateway never does (a ping, a binary message,
invalid UTF-8, a close), and its per-event accounting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench._fanout_clients import Clients, Subscriber
from bench.fanout import MUTATION, QUERY
from gateway.live.hub import ShadowHub
from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant


@pytest.fixture
async def device(stores: Stores, tenant: Tenant) -> UUID:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    return fleet.active[0]


def job(url: str, devices: list[str], count: int, compression: str | None,
        key: str = "k") -> dict[str, Any]:
    return {"url": url, "key": key, "query": QUERY, "field": "shadowChanged",
            "devices": devices, "first": 0, "count": count, "stride": 1, "parallel": 2,
            "step_timeout": 30.0, "compression": compression, "samples": "unused"}


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_subscribers_count_every_update_and_converge(
    served: tuple[str, ShadowHub], gateway: Gateway, tenant: Tenant, device: UUID,
    compression: str | None,
) -> None:
    address, hub = served
    clients = Clients(job(f"ws://{address}/graphql", [str(device)], 3, compression,
                          tenant.key))
    try:
        await clients.open_all()
        assert clients.failures == []
        assert all(sub.ready and sub.snapshots == 1 for sub in clients.subs)
        for sub in clients.subs:
            assert sub.ws is not None
            extensions = sub.ws.conn.extensions
            assert [e.name for e in extensions] == (
                ["permessage-deflate"] if compression else [])
        first = clients.subs[0].first_version
        assert first is not None
        version = first
        for n in range(3):
            body = await gateway.query(MUTATION, {
                "id": str(device), "reported": {"n": n, "writtenAtMs": time.time() * 1e3}},
                key=tenant.key)
            version = body["data"]["updateShadow"]["version"]
        await clients.converge({str(device): version}, time.time(), 30.0)
        assert hub.frames.prepared >= 3 * 3  # the hub's prepared frames reached them
        for sub in clients.subs:
            assert (sub.last, sub.converged_at is not None) == (version, True)
            assert sub.events + sub.coalesced == version - first
            assert (sub.backwards, sub.errors, sub.closed) == (0, 0, None)
        assert len(clients.samples) == 2 * sum(sub.events for sub in clients.subs)
        assert all(ms >= 0 for ms in clients.samples[1::2])
    finally:
        await clients.close_all()
    assert all(sub.ws is not None and sub.ws.lost.done() for sub in clients.subs)
    assert all(sub.closed is None for sub in clients.subs)  # closed by us, cleanly


SNAPSHOT = {"id": "1", "type": "next", "payload": {"data": {"shadowChanged": {
    "kind": "SNAPSHOT", "deviceId": "d", "version": 1, "shadow": {"reported": {}}}}}}


def updated(version: int) -> bytes:
    return orjson.dumps({"id": "1", "type": "next", "payload": {"data": {"shadowChanged": {
        "kind": "UPDATED", "deviceId": "d", "version": version,
        "shadow": {"reported": {"writtenAtMs": time.time() * 1e3}}}}}})


async def scripted(then: list[bytes | str]) -> AsyncIterator[tuple[str, list[Any]]]:
    """A websockets server that answers the setup, then sends ``then`` (bytes as text
    frames, str prefixed "binary:" as binary) and records what the client sends back
    and how the socket ended."""
    seen: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            assert orjson.loads(await ws.recv())["type"] == "connection_init"
            await ws.send('{"type":"connection_ack"}')
            assert orjson.loads(await ws.recv())["type"] == "subscribe"
            await ws.send(orjson.dumps(SNAPSHOT).decode())
            for item in then:
                if isinstance(item, str):
                    await ws.send(item.removeprefix("binary:").encode())
                else:
                    await ws.send(item, text=True)
            async for message in ws:
                seen.append(message)
        except ConnectionClosed:
            pass
        seen.append(("closed", ws.protocol.close_code))

    async with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol("graphql-transport-ws")],
                     compression="deflate") as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/", seen


async def run_scripted(then: list[bytes | str]) -> tuple[Subscriber, Clients, list[Any]]:
    async for url, seen in scripted(then):
        clients = Clients(job(url, ["d"], 1, "deflate"))
        await clients.open_all()
        assert clients.failures == []
        sub = clients.subs[0]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sub.closed is not None or sub.last == 3:
                break
        await clients.close_all()
        await asyncio.sleep(0.05)
        return sub, clients, seen
    raise AssertionError("unreachable")


async def test_pings_are_answered_and_binary_messages_are_errors() -> None:
    sub, clients, seen = await run_scripted(
        [b'{"type":"ping"}', "binary:{}", updated(2), b'{"type":"pong"}', updated(3)])
    assert sub.last == 3 and sub.events == 2
    assert sub.errors == 1 and "binary" in clients.error_samples[0]
    assert seen[0] == '{"type":"pong"}'
    assert seen[-1] == ("closed", 1000) and sub.closed is None


async def test_invalid_utf8_fails_the_socket_with_1007() -> None:
    sub, _, seen = await run_scripted([updated(2), b'{"a":"\xed\xa0\x80"}', updated(3)])
    assert sub.last == 2
    assert sub.closed is not None and sub.closed.startswith("invalid UTF-8")
    assert seen[-1] == ("closed", 1007)


async def test_a_message_that_is_not_json_ends_the_subscriber() -> None:
    sub, _, seen = await run_scripted([b"{not json", updated(2)])
    assert sub.last == 1 and sub.closed is not None
    assert sub.closed.startswith("JSONDecodeError")
    assert seen[-1] == ("closed", 1000)


def test_versions_are_counted_as_received() -> None:
    clients = Clients(job("ws://unused/", ["d"], 1, None))
    sub = clients.subs[0]
    sub.last = 5

    def next_(kind: str, version: int, written: float | None = 1.0) -> None:
        reported = {} if written is None else {"writtenAtMs": written}
        clients.on_next(sub, {"type": "next", "payload": {"data": {"shadowChanged": {
            "kind": kind, "version": version, "shadow": {"reported": reported}}}}}, 1.0)

    next_("UPDATED", 6)
    next_("UPDATED", 9)  # 7 and 8 coalesced
    next_("UPDATED", 9)  # again: backwards
    next_("SNAPSHOT", 9)  # a snapshot at the version held is not
    next_("SNAPSHOT", 8)  # but below it is
    next_("UPDATED", 10, None)  # no write time: no sample
    assert (sub.events, sub.snapshots, sub.coalesced, sub.backwards) == (4, 2, 2, 2)
    assert sub.last == 10 and len(clients.samples) == 2 * 3
    clients.on_next(sub, {"type": "next", "payload": {"errors": [{"message": "x"}]}}, 1.0)
    assert sub.errors == 1 and clients.error_samples
    clients.finals, clients.pending = {"d": 11}, 1
    next_("UPDATED", 11)
    assert sub.converged_at == 1.0 and clients.all_converged.is_set()
