"""The GraphQL view: builds a fresh ``Context`` per HTTP request or WebSocket connection
and hands HTTP to ``gateway.http.graphql`` (GraphQL-over-HTTP rules) and WebSockets to
``gateway.http.websocket``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.types.unset import UNSET

from gateway.context import Context, new_context
from gateway.errors import GatewayError
from gateway.http import graphql as graphql_http
from gateway.http.address_limit import authenticate_limited
from gateway.http.persisted import PersistedOperations
from gateway.http.websocket import LegacyWSHandler, SocketRefused, TransportWSHandler
from gateway.loaders import Loaders

TRACE_HEADER = "x-iotsphere-trace"


class _TextFrames(ASGIWebSocketAdapter):
    """Sends every WebSocket message as a text frame, as both GraphQL WebSocket protocols
    require: ``encode_json`` returns bytes (for HTTP), which Strawberry would send as
    binary frames that the graphql-ws client cannot read."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GatewayGraphQL(GraphQL[Context, None]):
    """Builds a fresh context (and loaders) per HTTP request from what the auth layer put
    on the request state. HTTP requests are served by ``gateway.http.graphql`` (GraphQL
    over HTTP status codes and media types, batches, persisted operations, rate limit);
    WebSocket operations are admitted by ``gateway.http.websocket``."""

    websocket_adapter_class = _TextFrames
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    persisted = PersistedOperations("off", {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        response = await graphql_http.serve(self, Request(scope, receive))
        await response(scope, receive, send)

    def encode_json(self, data: object) -> bytes:
        # orjson: several times faster than json on a 100-device dashboard response.
        return orjson.dumps(data)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state = request.state
        if isinstance(request, WebSocket):
            # Built once per connection; the caller comes with connection_init.
            return new_context(state.stores, state.settings, None, request=request,
                               hub=state.hub)
        context = new_context(
            state.stores, state.settings, state.caller, calls=state.calls,
            trace=request.headers.get(TRACE_HEADER) == "1", request=request, hub=state.hub,
        )
        context.request_id = state.request_id
        return context

    async def on_ws_connect(self, context: Context) -> Any:
        """Authenticates a WebSocket from its connection_init payload; a refusal closes
        the socket with 4403 and the reason HTTP's 401 would give.

        Returns UNSET: connection_ack then carries no payload. ``None`` would be sent as
        ``"payload": null``, which the graphql-ws 5.x client bundled in GraphiQL 2.x
        refuses as an invalid message (every subscription in the IDE failed)."""
        params = context.connection_params or {}
        authorization = params.get("Authorization") or params.get("authorization")
        request = context.request
        client = request.client if isinstance(request, WebSocket) else None
        try:
            context.caller = await authenticate_limited(
                context.stores, context.settings,
                getattr(request.state, "address_limit", None) if request else None,
                authorization if isinstance(authorization, str) else None,
                client.host if client else None,
            )
        except GatewayError as exc:
            raise SocketRefused(exc.message) from exc
        context.loaders = Loaders(context.stores, context.caller.tenant_id)
        sockets = getattr(context.request.state, "sockets", None) if context.request else None
        if sockets is not None and isinstance(context.request, WebSocket):
            sockets.add(context.caller, context.request)
        return UNSET
