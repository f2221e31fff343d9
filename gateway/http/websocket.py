"""Strawberry's two WebSocket protocol handlers, with the gateway's admission and its
frame writer beneath them.

Admission: the per-key rate limit and the persisted-operation rules apply to each
``subscribe`` (graphql-transport-ws) and ``start`` (legacy graphql-ws) message as they do
to an HTTP request. A refused operation gets the protocol's ``error`` message for its id;
the socket and its other operations go on.

Frames: a ``shadowChanged`` subscription is not run as Strawberry's operation task. The
handler joins it to the hub's cohort with a ``SocketFrames`` sink (``GatewaySchema.
subscribe_frames``) and keeps it in its operations (so ids, the per-connection limit,
``complete``/``stop`` and the socket's end work as the protocols say); the hub's writer
then sends its ``next``/``data`` frames (``gateway.live.frames``). Everything else
(queries, mutations, telemetryChanged) runs through Strawberry as before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from starlette.websockets import WebSocket
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from gateway.errors import BadUserInput, GatewayError
from gateway.http import rate_limit
from gateway.http.persisted import PersistedOperations
from gateway.http.ws_frames import PREPARED_FRAMES, PreparedHead
from gateway.live.cohorts import Mailbox
from gateway.live.payload import PreparedPayload


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


class SocketFrames:
    """One subscription's frames on one socket (a ``gateway.live.frames.FrameSink``): the
    protocol's message with the operation's id, the payload spliced in. Written as a
    prepared frame when the server offers it (``gateway.http.ws_protocol``), else sent
    as text through the ASGI send."""

    __slots__ = ("_ended", "_head", "_websocket", "_write")

    def __init__(self, websocket: WebSocket, head: str, ended: Callable[[], None]) -> None:
        self._websocket = websocket
        self._head = PreparedHead(head)
        self._ended = ended
        prepared = (websocket.scope.get("extensions") or {}).get(PREPARED_FRAMES)
        self._write: Callable[[PreparedHead, PreparedPayload], bool] | None = (
            prepared["write"] if prepared else None)

    def write(self, payload: PreparedPayload) -> bool:
        return self._write is not None and self._write(self._head, payload)

    def send(self, payload: PreparedPayload) -> Coroutine[Any, Any, None]:
        return self._websocket.send(
            {"type": "websocket.send", "text": (self._head.raw + payload.plain).decode()})

    def ended(self) -> None:
        self._ended()


class _LiveOperations:
    """The handler's subscriptions whose frames the hub writes, by operation id."""

    def __init__(self) -> None:
        self.members: dict[str, Mailbox] = {}
        self._messages: set[asyncio.Task[None]] = set()

    def leave(self, context: Any, operation_id: str) -> bool:
        member = self.members.pop(operation_id, None)
        if member is None:
            return False
        context.hub.leave(member)
        return True

    def later(self, message: Coroutine[Any, Any, None]) -> None:
        """Sends a message from a callback (the hub ended a subscription)."""
        async def send() -> None:
            with contextlib.suppress(Exception):  # the socket is closing anyway
                await message
        task = asyncio.ensure_future(send())
        self._messages.add(task)
        task.add_done_callback(self._messages.discard)


async def _join_frames(handler: Any, operation_id: str, query: str,
                       variables: dict[str, Any] | None, operation_name: str | None,
                       head: str) -> Mailbox | list[Any] | None:
    """The operation joined with the hub writing its frames, its refusal (errors), or
    None: Strawberry runs it. Runs in the operation's task, as Strawberry's would: the
    socket's other messages (``complete``, ``ping``, more subscribes) go on meanwhile."""
    sink = SocketFrames(handler.websocket.ws, head,
                        lambda: handler.frames_ended(operation_id))
    joined: Mailbox | list[Any] | None = await handler.schema.subscribe_frames(
        query, variables, handler.context, operation_name, sink)
    return joined


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


class TransportWSHandler(BaseGraphQLTransportWSHandler[Any, None]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live = _LiveOperations()

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

    async def run_operation(self, operation: Operation[Any, None]) -> None:
        """The operation's task: joins a shadowChanged subscription to its cohort and
        ends (the operation stays registered, its frames written by the hub); anything
        else runs as Strawberry runs it."""
        try:
            joined = await _join_frames(
                self, operation.id, operation.query, operation.variables,
                operation.operation_name,
                f'{{"id":{_json(operation.id)},"type":"next","payload":')
        except Exception as error:  # as Strawberry's task does: logged, then `complete`
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message(
                    {"id": operation.id, "type": "complete"})
            raise
        if joined is None:
            await super().run_operation(operation)
        elif isinstance(joined, list):
            await operation.send_initial_errors(joined)
        else:
            self.live.members[operation.id] = joined

    def frames_ended(self, operation_id: str) -> None:
        if self.live.leave(self.context, operation_id):
            self.operations.pop(operation_id, None)
            self.live.later(self.send_message({"id": operation_id, "type": "complete"}))

    async def cleanup_operation(self, operation_id: str) -> None:
        if self.live.leave(self.context, operation_id):
            self.operations.pop(operation_id, None)  # `complete` from the client: no reply
            return
        await super().cleanup_operation(operation_id)


class LegacyWSHandler(BaseGraphQLWSHandler[Any, None]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live = _LiveOperations()

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

    async def handle_async_results(self, operation_id: str, query: str,
                                   operation_name: str | None,
                                   variables: dict[str, object] | None) -> None:
        """The operation's task: as TransportWSHandler.run_operation. A joined operation
        keeps its (finished) task in ``tasks``, so the id and the per-connection limit
        count it as Strawberry counts its own."""
        try:
            joined = await _join_frames(
                self, operation_id, query, variables, operation_name,
                f'{{"type":"data","id":{_json(operation_id)},"payload":')
        except asyncio.CancelledError:  # stopped while joining
            self.tasks.pop(operation_id, None)
            await self.send_message({"type": "complete", "id": operation_id})
            return
        if joined is None:
            await super().handle_async_results(operation_id, query, operation_name,
                                               variables)
        elif isinstance(joined, list):
            self.tasks.pop(operation_id, None)
            await self.send_message(
                {"type": "error", "id": operation_id, "payload": joined[0].formatted})
        else:
            self.live.members[operation_id] = joined

    def frames_ended(self, operation_id: str) -> None:
        if self.live.leave(self.context, operation_id):
            self.tasks.pop(operation_id, None)
            self.live.later(self.send_message({"type": "complete", "id": operation_id}))

    async def cleanup_operation(self, operation_id: str) -> None:
        if self.live.leave(self.context, operation_id):
            # `stop`, a restarted id or the socket's end: `complete`, as Strawberry's
            # cancelled operation task sends.
            self.tasks.pop(operation_id, None)
            with contextlib.suppress(Exception):  # the socket may be gone
                await self.send_message({"type": "complete", "id": operation_id})
            return
        await super().cleanup_operation(operation_id)
