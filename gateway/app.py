"""The ASGI application: ``create_app(settings)``, its lifespan, and the routes."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from gateway.errors import BadUserInput, GatewayError, LimitExceeded, StoreUnavailable
from gateway.http import console_page
from gateway.http import spec as http_spec
from gateway.http.address_limit import AddressLimit, AuthFailuresLimited, authenticate_limited
from gateway.http.cors import cors_middleware
from gateway.http.front_door import is_loopback_client, root
from gateway.http.graphiql import STATIC_PATH, graphiql_html, static_app
from gateway.http.ingest import ingest_endpoint
from gateway.http.persisted import PersistedOperations
from gateway.http.streams import streaming
from gateway.http.view import GatewayGraphQL
from gateway.jobs import retention
from gateway.jobs.leader import JobLeader
from gateway.jobs.reconciler import run_periodically as reconcile_periodically
from gateway.live.hub import ShadowHub
from gateway.live.sockets import OpenSockets
from gateway.metrics import WAITING, WEBSOCKETS, metrics_endpoint
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.base import PgStore, begin_counting
from gateway.stores.migrations import migrate_held, migrate_reachable
from gateway.stores.shadow_layout import move_shadow_layout
from gateway.stores.shadows import ShadowStore
from gateway.stores.telemetry import TelemetryStore

log = logging.getLogger("gateway.app")

Background = Callable[[Stores, Settings], Awaitable[None]]


def _error_response(error: GatewayError, status: int, scope: Scope) -> Response:
    """A request-level error in the media type negotiated for the request."""
    return http_spec.error_response(error, status, scope.get("state", {}).get("media"))


class GraphQLEndpoint:
    """Serves GraphiQL (no key needed for the page itself) and authenticates every other
    HTTP request before Strawberry sees it, so no unauthenticated request reaches a resolver.
    ``ide_headers`` is None when the IDE is off (production)."""

    def __init__(self, graphql: GatewayGraphQL, ide_headers: dict[str, str] | None,
                 max_concurrent: int = 8) -> None:
        self._graphql = graphql
        self._ide_headers = ide_headers
        # Executions interleave at every store call: 24 dashboards in flight on one core
        # each held a half-built response (the soak's RSS climbed 213 -> 367 MiB) and
        # every one of them finished late. Queued requests hold only their socket.
        self._slots = asyncio.Semaphore(max_concurrent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not _origin_allowed(scope):
            # Browsers send Origin on every WebSocket handshake; a page of another site
            # must not ride on a user's network position (cross-site WebSocket hijacking).
            await WebSocketClose(code=4403, reason="Origin not allowed")(scope, receive, send)
            return
        if scope["type"] == "http" and self._ide_headers is not None and self._is_ide_page(
            Request(scope)
        ):
            # The dev key only for a browser on this machine (gateway/http/front_door.py).
            headers = self._ide_headers if is_loopback_client(scope) else {}
            page = HTMLResponse(graphiql_html(endpoint="/graphql", headers=headers))
            await page(scope, receive, send)
            return
        if scope["type"] == "websocket":
            WEBSOCKETS.inc()
            try:
                await self._graphql(scope, receive, send)
            finally:
                WEBSOCKETS.dec()
            return
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            state["request_id"] = request_id = _request_id(Headers(scope=scope))
            send = _with_header(send, b"x-request-id", request_id.encode())
            state["calls"] = begin_counting()
            accept = Headers(scope=scope).get("accept")
            media = http_spec.negotiate(accept)
            state["media"] = media or http_spec.JSON  # for the errors below
            # SSE or multipart subscriptions (gateway/http/streams.py).
            state["stream"] = streaming(accept)
            client = scope.get("client")
            try:
                state["caller"] = await authenticate_limited(
                    state["stores"], state["settings"], state.get("address_limit"),
                    Request(scope).headers.get("authorization"), client[0] if client else None,
                )
            except AuthFailuresLimited as limited:
                await http_spec.error_response(limited, 429, state["media"], limited.headers)(
                    scope, receive, send)
                return
            except GatewayError as error:
                status = 401 if error.code == "UNAUTHENTICATED" else 503
                await _error_response(error, status, scope)(scope, receive, send)
                return
            if media is None and state["stream"] is None:
                await _error_response(BadUserInput(
                    "Accept allows neither application/graphql-response+json nor "
                    "application/json"), 406, scope)(scope, receive, send)
                return
            await self._limited(scope, receive, send, state["settings"])
            return
        await self._graphql(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send,
                       settings: Settings) -> None:
        """Runs the request within the body size limit and the request timeout; the
        timeout cancels the request's store work with it."""
        limit = settings.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _error_response(_too_large(limit), 413, scope)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        if scope["state"].get("stream") is not None:
            # A stream lasts as long as its subscription: it holds no execution slot and
            # has no request timeout (each event's execution is bounded by the stores').
            try:
                await self._graphql(scope, counted_receive, tracked_send)
            except LimitExceeded as error:
                if not started:
                    await _error_response(error, 413, scope)(scope, receive, send)
            return
        try:
            async with asyncio.timeout(settings.request_timeout):
                WAITING.inc()
                try:
                    await self._slots.acquire()
                finally:
                    WAITING.dec()
                try:
                    await self._graphql(scope, counted_receive, tracked_send)
                finally:
                    self._slots.release()
        except LimitExceeded as error:
            if not started:
                await _error_response(error, 413, scope)(scope, receive, send)
        except TimeoutError:
            if not started:
                timeout = LimitExceeded(
                    f"Request took longer than {settings.request_timeout:g} s",
                    limit="requestTimeout", maximum=settings.request_timeout)
                await _error_response(timeout, 504, scope)(scope, receive, send)

    @staticmethod
    def _is_ide_page(request: Request) -> bool:
        return (
            request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
        )


def _too_large(limit: int) -> LimitExceeded:
    return LimitExceeded(f"Request body exceeds {limit} bytes", limit="maxBodyBytes",
                         maximum=limit)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(headers: Headers) -> str:
    """The caller's X-Request-Id when it is a sane token (it goes into logs), else new:
    32 random hex digits (as uuid4().hex, at less than half its cost)."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else secrets.token_hex(16)


def _with_header(send: Send, name: bytes, value: bytes) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (name, value)]}
        await send(message)
    return sending


def _origin_allowed(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser: nothing to hijack
    origin = origin.rstrip("/")
    settings: Settings = scope["state"]["settings"]
    if origin in settings.allowed_origins:
        return True
    host = headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _redis_url(settings: Settings) -> str:
    assert settings.redis_url
    return settings.redis_url


async def _check(store: PgStore | ShadowStore) -> dict[str, Any]:
    """One store's readiness: a ping through its breaker (so an open circuit answers at
    once, and after the cool-down the ping itself is the probe that closes it)."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(store.ping(), timeout=2.0)
    except StoreUnavailable as exc:
        error = exc.message
    except Exception as exc:  # readiness reports any failure as the store's state
        error = f"The {store.name} store did not answer: {type(exc).__name__}"
    else:
        latency = round((time.perf_counter() - started) * 1e3, 2)
        return {"store": store.name, "ok": True, "state": store.breaker.state,
                "latencyMs": latency, **_mode(store), **_read_replica(store)}
    return {"store": store.name, "ok": False, "state": store.breaker.state, "error": error,
            **_mode(store), **_read_replica(store)}


def _mode(store: PgStore | ShadowStore) -> dict[str, Any]:
    """The telemetry store's mode (timescale or partitioned; null until migrated)."""
    return {"mode": store.mode} if isinstance(store, TelemetryStore) else {}


def _read_replica(store: PgStore | ShadowStore) -> dict[str, Any]:
    """Whether the store's read replica serves reads, and at most how far behind it is.
    Informational: a replica left out costs no readiness, its reads go to the primary."""
    replica = store.read_replica if isinstance(store, PgStore) else None
    if replica is None:
        return {}
    lag = replica.lag()
    return {"readReplica": {"inUse": replica.usable(),
                            "lagSeconds": None if lag is None else round(lag, 3)}}


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """200 when every store answers (and is migrated), else 503; per store its circuit
    state and latency or error."""
    stores: Stores = request.state.stores
    checks = await asyncio.gather(*(_check(store) for store in stores.all()))
    ready = all(c["ok"] for c in checks)
    return JSONResponse({"ready": ready, "stores": checks}, status_code=200 if ready else 503)


async def _cancel(task: asyncio.Future[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def create_app(
    settings: Settings, *, stores: Stores | None = None, dev_key: str | None = None,
    startup: Background | None = None, background: Background | None = None,
) -> Starlette:
    """The gateway for fully-resolved settings (every DSN set).

    ``stores``: adapters the caller opened and will close (tests inject them); by default
    the lifespan migrates and opens its own. ``dev_key`` prefills GraphiQL's headers
    (embedded mode only); ``startup`` runs before the first request is served,
    ``background`` for the app's lifetime."""
    from resolvers.mutations import Mutation
    from resolvers.permissions import declared_rule
    from resolvers.schema import build_schema

    graphql = GatewayGraphQL(
        build_schema(settings),
        graphql_ide=None,  # served by GraphQLEndpoint, from local assets
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        # Strawberry checks handshake origins too: it must know the configured ones.
        allowed_origins=settings.allowed_origins,
    )
    graphql.persisted = PersistedOperations.from_settings(settings)  # fails at start
    # POST /ingest is authorised by the rule declared on ingestTelemetry: one rule, two routes.
    ingest_rule = declared_rule(Mutation, "ingest_telemetry")
    ide_headers = None
    if not settings.production:
        ide_headers = {"Authorization": f"Bearer {dev_key}"} if dev_key else {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            opened = stores
            if opened is None:
                # A store that is down does not stop the start: it is served once it
                # answers, and its migrations run then (it reports not ready until).
                opened = await stack.enter_async_context(open_stores(settings))
                held = await migrate_reachable(
                    (opened.registry, opened.assets, opened.telemetry),
                    connect_timeout=settings.store_timeout)
                if held:
                    stack.push_async_callback(_cancel, asyncio.ensure_future(
                        migrate_held(held, connect_timeout=settings.store_timeout)))
                await move_shadow_layout(opened.shadows)
            sockets = OpenSockets(token_leeway=settings.jwt_leeway)
            hub = ShadowHub(opened, _redis_url(settings), on_revoked=sockets.close_revoked)
            await hub.start()
            stack.push_async_callback(hub.aclose)
            if startup is not None:
                await startup(opened, settings)
            # Background jobs run on one replica at a time (gateway/jobs/leader.py).
            leader = JobLeader(opened.registry.dsn, check=settings.job_leader_check,
                               timeout=settings.store_timeout,
                               statement_cache=settings.pg_statement_cache)
            leader.start()
            stack.push_async_callback(leader.aclose)
            tasks: list[Awaitable[None]] = [
                reconcile_periodically(opened, settings.reconcile_interval, leader),
                retention.run_periodically(opened, settings, leader),
            ]
            if background is not None:
                tasks.append(background(opened, settings))
            for coro in tasks:
                stack.push_async_callback(_cancel, asyncio.ensure_future(coro))
            yield {"stores": opened, "settings": settings, "hub": hub, "sockets": sockets,
                   "address_limit": AddressLimit(), "ingest_rule": ingest_rule}

    endpoint = GraphQLEndpoint(graphql, ide_headers, settings.max_concurrent_requests)
    return Starlette(
        routes=[
            Route("/", root),
            Route("/graphql", endpoint, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", endpoint),
            Mount(STATIC_PATH, static_app()),
            Route(console_page.PATH, console_page.console_endpoint(
                None if settings.production else dev_key), methods=["GET"]),
            Mount(console_page.STATIC_PATH, console_page.static_app()),
            Route("/ingest", ingest_endpoint, methods=["POST"]),
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
        middleware=cors_middleware(settings),
    )
