"""GraphQL over HTTP streams, for networks and clients without WebSockets: graphql-sse's
distinct connections mode (``Accept: text/event-stream``) and Apollo's multipart
subscriptions (``Accept: multipart/mixed;subscriptionSpec=1.0``).

One request carries one operation (POST JSON body or GET parameters, as for queries) and
the response streams its results until the subscription ends or the client goes away.
Everything a WebSocket operation passes passes here too, through the same code: the
caller authenticated from ``Authorization`` by the endpoint, the rate limit, persisted
operations, and ``GatewaySchema.stream`` (document limits, cost, the field's role rule,
tenant checks, the hub's cohorts and snapshot-then-events). A query or mutation sent
this way answers one result and ends. A refusal before the first result (bad document,
unknown device, limits) is an ordinary JSON error response with its HTTP status, which
both clients report as an error. A comment (SSE) or an empty part (multipart) every
``HEARTBEAT`` seconds keeps proxies from closing a quiet stream. Streams are kept in
``OpenSockets`` beside the WebSockets: revoking the key (or decommissioning the device,
or the JWT expiring) ends the stream with a FORBIDDEN (UNAUTHENTICATED) error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.types.execution import PreExecutionError

from gateway.errors import BadUserInput, Forbidden, GatewayError, Unauthenticated
from gateway.http import rate_limit
from gateway.http import spec as http_spec
from gateway.http.spec import RequestRefused
from gateway.live.sockets import REVOKED_CLOSE_CODE

if TYPE_CHECKING:
    from gateway.http.view import GatewayGraphQL

SSE = "text/event-stream"
MULTIPART = "multipart/mixed"
HEARTBEAT = 10.0
# How long a stream waits for its first result before sending headers without it.
FIRST_RESULT_WAIT = 1.0
_BOUNDARY = "graphql"


def streaming(accept: str | None) -> str | None:
    """SSE or MULTIPART when the Accept header asks for a stream, else None."""
    text = (accept or "").lower()
    if SSE in text:
        return SSE
    if MULTIPART in text and "subscriptionspec" in text:
        return MULTIPART
    return None


def _result_payload(result: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    return payload


def _sse(event: str, data: dict[str, Any] | None) -> bytes:
    body = orjson.dumps(data).decode() if data is not None else ""
    return f"event: {event}\ndata: {body}\n\n".encode()


def _part(data: dict[str, Any]) -> bytes:
    # Each part ends with the next boundary, so a client parses it on arrival (a part is
    # complete only once a boundary follows it).
    return (b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"
            + orjson.dumps(data) + f"\r\n--{_BOUNDARY}".encode())


class StreamHandle:
    """An open stream as ``OpenSockets`` keeps it: closing it (a revoked key, a device
    decommissioned, a JWT expired; codes as for WebSockets) ends the stream with an
    error the client sees."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.code = 0
        self.reason = ""

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.code, self.reason = code, reason or ""
        self.closed.set()

    def error(self) -> GatewayError:
        if self.code == REVOKED_CLOSE_CODE:
            return Forbidden(self.reason)
        return Unauthenticated(self.reason)


class _Closed:
    """What ``_with_heartbeats`` yields when the stream's handle was closed."""


async def _with_heartbeats(results: AsyncIterator[Any], closed: asyncio.Event,
                           pending: asyncio.Future[Any] | None = None) -> AsyncIterator[Any]:
    """The results, None whenever HEARTBEAT seconds pass without one, and a ``_Closed``
    (then nothing) once ``closed`` is set. The pending ``__anext__`` (``pending``: one
    already started) survives a heartbeat (cancelling it would end the subscription)."""
    closing = asyncio.ensure_future(closed.wait())
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(results.__anext__())
            done, _ = await asyncio.wait({pending, closing}, timeout=HEARTBEAT,
                                         return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                yield _Closed()
                return
            if not done:
                yield None
                continue
            try:
                result = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield result
    finally:
        closing.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(results, "aclose", None)
        if aclose is not None:
            await aclose()


async def _single(result: Any) -> AsyncIterator[Any]:
    yield result


async def _encoded(kind: str, first: asyncio.Future[Any], rest: AsyncIterator[Any],
                   handle: StreamHandle) -> AsyncIterator[bytes]:
    """The stream's bytes; ``first`` is the first result, done or still to come."""
    if kind == MULTIPART:
        yield f"\r\n--{_BOUNDARY}".encode()
    pending: asyncio.Future[Any] | None = first
    if first.done():
        pending = None
        yield _sse("next", _result_payload(first.result())) if kind == SSE else _part(
            {"payload": _result_payload(first.result())})
    else:
        # Headers and the boundary go out now (a client must not wait for the first event:
        # a whole-tenant stream over no live device has none); a heartbeat tells it so.
        yield b":\n\n" if kind == SSE else _part({})
    try:
        async for result in _with_heartbeats(rest, handle.closed, pending):
            if isinstance(result, _Closed):
                raise handle.error()
            if result is None:
                yield b":\n\n" if kind == SSE else _part({})
            elif kind == SSE:
                yield _sse("next", _result_payload(result))
            else:
                yield _part({"payload": _result_payload(result)})
    except GatewayError as error:  # e.g. the hub lost Redis: the client resubscribes
        yield (_sse("next", {"errors": [error.formatted]}) if kind == SSE
               else _part({"payload": None, "errors": [error.formatted]}))
    yield _sse("complete", None) if kind == SSE else b"--\r\n"  # closes the last boundary


async def serve_stream(view: GatewayGraphQL, request: Request, kind: str) -> Response:
    """Answers one operation as a stream (see the module docstring)."""
    state = request.state
    media = http_spec.JSON
    try:
        if request.method == "GET":
            read = http_spec.from_query_string(request.query_params.multi_items())
        else:
            read = await _post_body(request, state.settings)
    except RequestRefused as refused:
        return http_spec.error_response(refused.error, refused.status, media, refused.headers)
    if isinstance(read, list):
        return http_spec.error_response(
            BadUserInput("A stream carries one operation, not a batch"), 400, media)
    try:
        await rate_limit.take(state.stores.shadows, state.settings, state.caller)
    except rate_limit.RateLimited as limited:
        return http_spec.error_response(limited, 429, media, limited.headers)
    context = await view.get_context(request, None)
    try:
        query = view.persisted.resolve(read.query, read.extensions, context.tenant_id)
    except GatewayError as error:
        return http_spec.error_response(error, http_spec.request_error_status(
            [error.extensions.get("code", "")] if error.extensions else []), media)
    if query is None:
        return http_spec.error_response(BadUserInput("The request has no `query` parameter"),
                                        400, media)
    if request.method == "GET" and _is_mutation(query, read.operation_name):
        return http_spec.error_response(BadUserInput("Mutations must be sent with POST"), 405,
                                        media, {"Allow": "POST"})
    outcome = await view.schema.stream(
        query, variable_values=read.variables, context_value=context,
        operation_name=read.operation_name)
    results: AsyncIterator[Any] = (outcome if hasattr(outcome, "__anext__")
                                   else _single(outcome))
    # A refusal (parse, validation, limits, auth) comes at once and is answered as a JSON
    # error with its status; a first result that takes longer (no snapshot to send) starts
    # the stream without it.
    next_result = asyncio.ensure_future(results.__anext__())
    await asyncio.wait({next_result}, timeout=FIRST_RESULT_WAIT)
    if not next_result.done():
        first: Any = None
    else:
        try:
            first = next_result.result()
        except StopAsyncIteration:
            return http_spec.error_response(BadUserInput("The operation produced no result"),
                                            400, media)
    if first is not None and (isinstance(first, PreExecutionError)
                              or (first.data is None and first.errors)):
        await _close(results)
        codes = [(e.extensions or {}).get("code", "") for e in first.errors or []]
        return http_spec.respond({"errors": [e.formatted for e in first.errors or []]},
                                 http_spec.request_error_status(codes), media)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    content_type = (f"{SSE}; charset=utf-8" if kind == SSE else
                    f'{MULTIPART}; boundary="{_BOUNDARY}"; subscriptionSpec="1.0"')
    handle = StreamHandle()  # kept alive by the stream; OpenSockets holds it weakly
    sockets = getattr(state, "sockets", None)
    if sockets is not None and context.caller is not None:
        sockets.add(context.caller, handle)
    return StreamingResponse(_encoded(kind, next_result, results, handle), headers=headers,
                             media_type=content_type)


async def _post_body(request: Request, settings: Any) -> Any:
    if request.method != "POST":
        raise RequestRefused(405, BadUserInput(f"{request.method} is not served here"),
                             {"Allow": "GET, POST"})
    http_spec.check_content_type(request.headers.get("content-type"))
    return http_spec.from_body(await request.body(), settings.max_batch_operations)


def _is_mutation(query: str, operation_name: str | None) -> bool:
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return False  # the schema reports the syntax error
    return operation is not None and operation.operation is OperationType.MUTATION


async def _close(results: AsyncIterator[Any]) -> None:
    aclose = getattr(results, "aclose", None)
    if aclose is not None:
        await aclose()
