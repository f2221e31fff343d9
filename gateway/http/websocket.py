"""Admission of WebSocket operations: the per-key rate limit and the persisted-operation
rules apply to each ``subscribe`` (graphql-transport-ws) and ``start`` (legacy
graphql-ws) message as they do to an HTTP request. A refused operation gets the
protocol's ``error`` message for its id; the socket and its other operations go on."""

from __future__ import annotations

from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from gateway.errors import BadUserInput, GatewayError
from gateway.http import rate_limit
from gateway.http.persisted import PersistedOperations


async def admit(persisted: PersistedOperations, context: Any, payload: dict[str, Any]) -> None:
    """Raises the GatewayError that refuses the operation; otherwise leaves in ``payload``
    the document to run (a persisted one for a hash-only message)."""
    await rate_limit.take(context.stores.shadows, context.settings, context.caller)
    extensions = payload.get("extensions")
    query = persisted.resolve(payload.get("query"),
                              extensions if isinstance(extensions, dict) else None,
                              getattr(context, "tenant_id", None))
    if query is None:
        raise BadUserInput("The operation has no query")
    payload["query"] = query


def _persisted(view: Any) -> PersistedOperations:
    """The view's manifest (``GatewayGraphQL.persisted``; the handlers type the view as
    Strawberry's base class)."""
    persisted: PersistedOperations = view.persisted
    return persisted


class SocketRefused(Exception):
    """``on_ws_connect`` refuses the connection: closed with 4403 and ``reason`` (Strawberry's
    own ConnectionRejectionError closes with a bare "Forbidden")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # A close frame's reason is at most 123 bytes of UTF-8.
        self.reason = reason.encode()[:123].decode(errors="ignore")


class TransportWSHandler(BaseGraphQLTransportWSHandler[Any, None]):
    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except SocketRefused as refused:
            await self.websocket.close(code=4403, reason=refused.reason)

    async def handle_subscribe(self, message: Any) -> None:
        if (self.connection_acknowledged and message["id"] not in self.operations
                and isinstance(message["payload"], dict)):
            try:
                await admit(_persisted(self.view), self.context, message["payload"])
            except GatewayError as error:
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [error.formatted]})
                return
        await super().handle_subscribe(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Any, None]):
    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except SocketRefused as refused:
            await self.send_message(
                {"type": "connection_error", "payload": {"message": refused.reason}})
            await self.websocket.close(code=1011, reason="")

    async def handle_start(self, message: Any) -> None:
        if self.connection_acknowledged and isinstance(message["payload"], dict):
            try:
                await admit(_persisted(self.view), self.context, message["payload"])
            except GatewayError as error:
                await self.send_message(
                    {"type": "error", "id": message["id"], "payload": error.formatted})
                return
        await super().handle_start(message)
