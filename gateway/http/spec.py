"""GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/): what a request
may look like, which media type answers it, and with which status code.

Pure functions over already-read data, so every rule is testable without a server; the
view (``gateway.http.view.GatewayGraphQL``) drives them.

- Response media type: ``application/graphql-response+json`` when the Accept header
  prefers it, ``application/json`` for ``*/*``, a missing Accept, or when it is preferred.
  An Accept that allows neither is answered 406.
- Status codes: with ``application/json`` every GraphQL response is 200 (the legacy
  behaviour clients rely on); with ``application/graphql-response+json`` a response
  without ``data`` (the request failed before execution: parse, validation, variable
  coercion, persisted-operation lookup) is 4xx/5xx, by error code. A request that is not
  well-formed (bad JSON, ``query`` not a string, ...) is 400 whatever the media type.
- GET carries queries only (a mutation is 405 with ``Allow: POST``); POST bodies are
  ``application/json`` (anything else 415), a JSON object, or a JSON array of objects
  (a batch, at most ``MAX_BATCH_OPERATIONS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.responses import Response

from gateway.errors import BadUserInput, GatewayError, LimitExceeded

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


@dataclass(frozen=True)
class Operation:
    """One well-formed GraphQL-over-HTTP request: the four parameters of the spec."""

    query: str | None
    operation_name: str | None = None
    variables: dict[str, Any] | None = None
    extensions: dict[str, Any] | None = None


class RequestRefused(Exception):
    """The HTTP request is refused as a whole, before anything runs."""

    def __init__(self, status: int, error: GatewayError,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error.message)
        self.status, self.error, self.headers = status, error, dict(headers or {})


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    return ranges


def _quality(ranges: list[tuple[str, float]], media: str) -> tuple[float, bool]:
    """The q of the most specific range matching ``media``, and whether it named it."""
    kind = media.split("/")[0] + "/*"
    for candidate, explicit in ((media, True), (kind, False), ("*/*", False)):
        for given, q in ranges:
            if given == candidate:
                return q, explicit
    return 0.0, False


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header; None when it allows neither."""
    if accept is None or not accept.strip():
        return JSON  # the spec's default for clients that do not say
    ranges = _media_ranges(accept)
    graphql_q, graphql_named = _quality(ranges, GRAPHQL_RESPONSE)
    json_q, _ = _quality(ranges, JSON)
    if graphql_q <= 0 and json_q <= 0:
        return None
    # Only a client that names the new type gets it: */* keeps the legacy behaviour.
    if graphql_named and graphql_q >= json_q:
        return GRAPHQL_RESPONSE
    return JSON if json_q > 0 else GRAPHQL_RESPONSE


def _bad(message: str) -> RequestRefused:
    return RequestRefused(400, BadUserInput(message))


def _decode(raw: str | bytes, what: str) -> Any:
    # The standard library, not orjson: orjson reads integers beyond 64 bits as floats,
    # which would change what a variable means (a resolver checks the exact value).
    try:
        return json.loads(raw)
    # Bad JSON, bad UTF-8, an integer of more than 4,300 digits, or nesting deeper than
    # the parser's recursion (a 100 kB body of "[" is enough).
    except (ValueError, RecursionError):
        raise _bad(f"{what} is not valid JSON") from None


def _operation(data: Any) -> Operation:
    if not isinstance(data, dict):
        raise _bad("A GraphQL request must be a JSON object")
    query, name = data.get("query"), data.get("operationName")
    variables, extensions = data.get("variables"), data.get("extensions")
    if query is not None and not isinstance(query, str):
        raise _bad("The `query` parameter must be a string")
    if name is not None and not isinstance(name, str):
        raise _bad("The `operationName` parameter must be a string")
    if variables is not None and not isinstance(variables, dict):
        raise _bad("The `variables` parameter must be a JSON object")
    if extensions is not None and not isinstance(extensions, dict):
        raise _bad("The `extensions` parameter must be a JSON object")
    return Operation(query or None, name, variables, extensions)


def from_query_string(params: Sequence[tuple[str, str]]) -> Operation:
    """A GET request's parameters (``variables`` and ``extensions`` as JSON text)."""
    seen: dict[str, Any] = {}
    for name, value in params:
        if name in seen:
            raise _bad(f"The `{name}` parameter is given more than once")
        seen[name] = value
    for name in ("variables", "extensions"):
        if seen.get(name):
            seen[name] = _decode(seen[name], f"The `{name}` parameter")
        else:
            seen.pop(name, None)
    return _operation(seen)


def check_content_type(content_type: str | None) -> None:
    """POST bodies are ``application/json`` (UTF-8, the only charset JSON allows)."""
    media, *params = (p.strip().lower() for p in (content_type or "").split(";"))
    charset = next((p.partition("=")[2].strip('"') for p in params
                    if p.startswith("charset=")), "utf-8")
    if media != JSON or charset not in ("utf-8", "utf8"):
        raise RequestRefused(
            415, BadUserInput("POST requests must have Content-Type: application/json"),
            {"Accept-Post": "application/json"})


def from_body(body: bytes, max_batch: int) -> list[Operation] | Operation:
    """A POST body: one operation (an object), or a batch (an array of objects)."""
    if not body.strip():
        raise _bad("The request body is empty")
    data = _decode(body, "The request body")
    if not isinstance(data, list):
        return _operation(data)
    if not data:
        raise _bad("A batch must contain at least one operation")
    if len(data) > max_batch:
        raise RequestRefused(400, LimitExceeded(
            f"A batch may contain at most {max_batch} operations, got {len(data)}",
            limit="maxBatchOperations", maximum=max_batch))
    return [_operation(item) for item in data]


def is_request_error(data: Any, errors: Sequence[GraphQLError]) -> bool:
    """Whether the result failed before execution (no ``data`` entry). Field errors
    always carry a path; parse, validation and variable-coercion errors never do."""
    return data is None and bool(errors) and all(e.path is None for e in errors)


_CODE_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "INTERNAL": 500,
                "STORE_UNAVAILABLE": 503}


def request_error_status(codes: Sequence[str]) -> int:
    """The status of a response without ``data`` under application/graphql-response+json:
    400 (the spec's answer to parse and validation failures) unless a code says better."""
    for code in ("UNAUTHENTICATED", "FORBIDDEN", "STORE_UNAVAILABLE", "INTERNAL"):
        if code in codes:
            return _CODE_STATUS[code]
    return 400


def respond(payload: Any, status: int, media: str,
            headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=dict(headers or {}),
                    media_type=f"{media}; charset=utf-8")


def error_response(error: GraphQLError, status: int, media: str | None,
                   headers: Mapping[str, str] | None = None) -> Response:
    """A response carrying one request-level error (no ``data`` entry)."""
    return respond({"errors": [error.formatted]}, status, media or JSON, headers)
