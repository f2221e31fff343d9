"""A real uvicorn server on loopback for WebSocket tests, and a small graphql-transport-ws
client (the protocol's own messages, so tests read like the spec)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
import websockets
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.http.ws_protocol import WS_PROTOCOL
from gateway.live.hub import ShadowHub
from gateway.runtime.devstack import free_port
from gateway.settings import Settings
from gateway.stores import Stores


@asynccontextmanager
async def serve(app: Starlette, ws: str = WS_PROTOCOL) -> AsyncIterator[str]:
    """Serves ``app`` on a free loopback port; yields its base URL (ws://...). ``ws``:
    uvicorn's WebSocket protocol, the gateway's unless a test names another."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", ws=ws))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def serve_gateway(settings: Settings, stores: Stores,
                        ws: str = WS_PROTOCOL) -> AsyncIterator[tuple[str, ShadowHub]]:
    """The gateway for ``settings`` on the test's stores, served by ``serve``; yields its
    address and its subscription hub."""
    app = create_app(settings, stores=stores)
    kept = lifespan_state(app)
    async with serve(app, ws) as address:
        yield address, kept["state"]["hub"]


class TransportWS:
    """graphql-transport-ws over one socket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._next_id = 0

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, address: str, key: str | None, *, origin: str | None = None
    ) -> AsyncIterator[TransportWS]:
        headers = {"Origin": origin} if origin else None
        async with websockets.connect(
            f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"],
            additional_headers=headers,
        ) as ws:
            client = cls(ws)
            payload = {"Authorization": f"Bearer {key}"} if key else {}
            await client.send({"type": "connection_init", "payload": payload})
            yield client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        self._next_id += 1
        op_id = str(self._next_id)
        await self.send({"id": op_id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables or {}}})
        return op_id

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next `next` payload's shadowChanged event (skipping pings)."""
        while True:
            message = await self.receive(timeout)
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            event: dict[str, Any] = message["payload"]["data"]["shadowChanged"]
            return event


def lifespan_state(app: Starlette) -> dict[str, Any]:
    """Keeps the state the app's lifespan yields (stores, settings, hub): once ``serve`` has
    started ``app``, the returned dict's ``"state"`` is it."""
    captured: dict[str, Any] = {}

    class _Keep:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                captured["state"] = scope["state"]
            await self.inner(scope, receive, send)

    app.add_middleware(_Keep)
    return captured


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Waits (bounded) for ``predicate`` to hold; fails the test if it never does."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
