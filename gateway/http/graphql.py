"""The HTTP half of the GraphQL view: read the request (GET or POST, one operation or a
batch), spend the caller's rate limit, resolve persisted operations, execute, and answer
with the media type and status code of ``gateway.http.spec``.

Strawberry's own HTTP handling answers every GraphQL response 200 as application/json
and refuses malformed requests in plain text; this replaces it for HTTP (WebSockets stay
Strawberry's). Operations of a batch run one after another, in order, sharing one
context (the caller's loaders batch across them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.errors import BadUserInput, GatewayError
from gateway.http import rate_limit, streams
from gateway.http import spec as http_spec
from gateway.http.spec import GRAPHQL_RESPONSE, Operation, RequestRefused
from gateway.settings import Settings
from gateway.stores.read_routing import lagging_reads

if TYPE_CHECKING:
    from gateway.http.view import GatewayGraphQL

_GET = frozenset({OperationType.QUERY})
_POST = frozenset({OperationType.QUERY, OperationType.MUTATION})


@dataclass
class _Answer:
    """One operation's GraphQL response, and what it says about the HTTP status."""

    payload: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


async def _read(request: Request, settings: Settings) -> list[Operation] | Operation:
    if request.method == "GET":
        return http_spec.from_query_string(request.query_params.multi_items())
    if request.method != "POST":
        raise RequestRefused(405, BadUserInput(f"{request.method} is not served here"),
                             {"Allow": "GET, POST"})
    http_spec.check_content_type(request.headers.get("content-type"))
    return http_spec.from_body(await request.body(), settings.max_batch_operations)


def _request_error(errors: list[GraphQLError], media: str) -> _Answer:
    """A response without ``data``: 200 under application/json (legacy), 4xx/5xx by code
    under application/graphql-response+json."""
    payload = {"errors": [e.formatted for e in errors]}
    if media != GRAPHQL_RESPONSE:
        return _Answer(payload)
    codes = [(e.extensions or {}).get("code", "") for e in errors]
    return _Answer(payload, http_spec.request_error_status(codes))


def _refused(status: int, error: GatewayError, headers: dict[str, str] | None = None
             ) -> _Answer:
    return _Answer({"errors": [error.formatted]}, status, headers or {})


async def _execute(view: GatewayGraphQL, request: Request, operation: Operation,
                   context: Any, media: str) -> _Answer:
    try:
        query = view.persisted.resolve(operation.query, operation.extensions,
                                       getattr(context, "tenant_id", None))
    except GatewayError as error:
        return _request_error([error], media)
    if query is None:
        return _refused(400, BadUserInput("The request has no `query` parameter"))
    get = request.method == "GET"
    # A query Strawberry accepted before runs from its prepared entry (a query is served
    # over GET and POST alike); None: Strawberry answers (resolvers.execution.prepared).
    prepared = getattr(view.schema, "prepared", None)
    result = None if prepared is None else await prepared.execute(
        query, operation.operation_name, operation.variables, context, operation.extensions)
    if result is not None:
        return _answer(result, media)
    try:
        result = await view.schema.execute(
            query, variable_values=operation.variables, context_value=context,
            operation_name=operation.operation_name,
            allowed_operation_types=_GET if get else _POST,
            operation_extensions=operation.extensions,
        )
    except InvalidOperationTypeError as exc:
        if get and exc.operation_type is OperationType.MUTATION:
            return _refused(405, BadUserInput("Mutations must be sent with POST"),
                            {"Allow": "POST"})
        return _request_error([BadUserInput(
            f"{exc.operation_type.value.capitalize()} operations are not served over "
            f"{request.method}: subscriptions use the WebSocket on /graphql")], media)
    except CannotGetOperationTypeError as exc:
        return _request_error([BadUserInput(exc.as_http_error_reason())], media)
    except MissingQueryError:
        return _refused(400, BadUserInput("The request has no `query` parameter"))
    return _answer(result, media)


def _answer(result: ExecutionResult, media: str) -> _Answer:
    errors = list(result.errors or [])
    if http_spec.is_request_error(result.data, errors):
        answer = _request_error(errors, media)
    else:
        answer = _Answer({"data": result.data})
        if errors:
            answer.payload["errors"] = [e.formatted for e in errors]
    if result.extensions:
        answer.payload["extensions"] = result.extensions
    return answer


async def serve(view: GatewayGraphQL, request: Request) -> Response:
    """Answers one authenticated GraphQL HTTP request (the endpoint has authenticated the
    caller and chosen the media type, both on ``request.state``)."""
    state = request.state
    if getattr(state, "stream", None) is not None:
        return await streams.serve_stream(view, request, state.stream)
    media: str = state.media
    settings: Settings = state.settings
    try:
        read = await _read(request, settings)
    except RequestRefused as refused:
        return http_spec.error_response(refused.error, refused.status, media, refused.headers)
    operations = read if isinstance(read, list) else [read]
    try:
        await rate_limit.take(state.stores.shadows, settings, state.caller,
                              len(operations))
    except rate_limit.RateLimited as limited:
        return http_spec.error_response(limited, 429, media, limited.headers)
    context = await view.get_context(request, None)
    # Queries may read lag-tolerant data from read replicas; a mutation pins the rest of
    # the request to the primary (resolvers.read_consistency). Streams (subscriptions)
    # never get here: their events follow writes, so they read from the primary.
    try:
        with lagging_reads():
            answers = [await _execute(view, request, op, context, media) for op in operations]
    finally:
        context.loaders.release()  # the rows are freed now, not by the cyclic collector
    if isinstance(read, list):
        # A batch is one HTTP exchange: 200, each operation's outcome in its own entry.
        return http_spec.respond([a.payload for a in answers], 200, media)
    [answer] = answers
    return http_spec.respond(answer.payload, answer.status, media, answer.headers)
