"""Helpers for bench/dashboard.py: the uvicorn app factory for the server process, and the
in-process profile of one dashboard request (where the time goes).

The profile runs the app in the benchmark's own process, straight through ASGI (no HTTP),
with timers wrapped around authentication, Strawberry's parse/validate/execute, the JSON
encoding of the response and the event loop's select(), and records each store call for a
replay alone. The wrappers live only in that process: the gateway's code is not changed,
and the server process that the load levels measure has none of them.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- the profile

@dataclass
class Sample:
    """One request's timeline, in seconds."""

    total: float = 0.0
    cpu: float = 0.0  # process CPU time during the request
    auth: float = 0.0  # the address limit + key check (a registry lookup unless the key is cached)
    parse: float = 0.0
    validate: float = 0.0
    execute: float = 0.0  # Strawberry's schema.execute, parse and validate included
    encode: float = 0.0  # encode_json of the response body
    idle: float = 0.0  # the event loop blocked in select(): waiting on the stores
    idle_in_execute: float = 0.0
    execute_span: tuple[float, float] = (0.0, 0.0)
    idle_spans: list[tuple[float, float]] = field(default_factory=list)

    @property
    def execute_cpu(self) -> float:
        """Execution proper: resolvers, dataloaders, driver decoding, graphql-core."""
        return self.execute - self.parse - self.validate - self.idle_in_execute

    @property
    def rest(self) -> float:
        return self.total - self.auth - self.execute - self.encode


_current: Sample | None = None
# Set only in the profile's own task (and so in the dataloader tasks its requests spawn),
# not in the app's background tasks such as the reconciler: only request queries are replayed.
_in_request: ContextVar[bool] = ContextVar("bench_in_request", default=False)


def _add(attr: str, started: float) -> None:
    if _current is not None:
        setattr(_current, attr, getattr(_current, attr) + time.perf_counter() - started)


# label -> ("pg", store, sql, args) or ("shadows", None, None, args): the first call of each
# named query, replayed alone afterwards.
Captured = dict[str, tuple[str, Any, str | None, tuple[Any, ...]]]


@contextmanager
def _instrumented() -> Iterator[Captured]:
    """Timers around authentication, Strawberry's parse/validate/execute, the response
    encoding and the event loop's select(); records each store query once for replay."""
    import strawberry.schema.schema as strawberry_schema
    from strawberry.http.async_base_view import AsyncBaseHTTPView

    import gateway.app as gateway_app
    from gateway.http import spec as http_spec
    from gateway.http.view import GatewayGraphQL
    from gateway.stores.base import PgStore
    from gateway.stores.shadows import ShadowStore
    from resolvers.execution.prepared import PreparedQueries

    captured: Captured = {}
    originals: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        originals.append((owner, name, owner.__dict__.get(name, getattr(owner, name))))
        setattr(owner, name, wrapper)

    def capture_pg(method: Callable[..., Awaitable[Any]]) -> Any:
        async def wrapper(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            if _in_request.get():
                captured.setdefault(f"{self.name}: {_query_name(self, sql)}",
                                    ("pg", self, sql, args))
            return await method(self, sql, *args, **kwargs)
        return wrapper

    def capture_shadows(method: Callable[..., Awaitable[Any]]) -> Any:
        async def wrapper(self: Any, *args: Any) -> Any:
            if _in_request.get():
                captured.setdefault("shadows: get_many",
                                    ("shadows", self, None, args))
            return await method(self, *args)
        return wrapper

    def timed(function: Callable[..., Any], attr: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                _add(attr, started)
        return wrapper

    def timed_async(function: Callable[..., Awaitable[Any]], attr: str) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                _add(attr, started)
                if attr == "execute" and _current is not None:
                    _current.execute_span = (started, time.perf_counter())
        return wrapper

    for name in ("fetch", "fetchrow"):
        patch(PgStore, name, capture_pg(getattr(PgStore, name)))
    patch(ShadowStore, "get_many", capture_shadows(ShadowStore.get_many))
    patch(gateway_app, "authenticate_limited",
          timed_async(gateway_app.authenticate_limited, "auth"))
    patch(strawberry_schema.Schema, "execute",
          timed_async(strawberry_schema.Schema.execute, "execute"))
    # A repeated planned query runs from its prepared entry instead (one of the two runs).
    patch(PreparedQueries, "execute", timed_async(PreparedQueries.execute, "execute"))
    patch(strawberry_schema, "parse", timed(strawberry_schema.parse, "parse"))
    patch(strawberry_schema, "validate_document",
          timed(strawberry_schema.validate_document, "validate"))
    encode = GatewayGraphQL.__dict__.get("encode_json", AsyncBaseHTTPView.encode_json)
    patch(GatewayGraphQL, "encode_json", timed(encode, "encode"))
    # HTTP answers are encoded by gateway.http.spec.respond (encode_json: WebSockets).
    patch(http_spec, "respond", timed(http_spec.respond, "encode"))

    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    original_select = selector.select

    def select(timeout: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return original_select(timeout)
        finally:
            if _current is not None:
                _current.idle_spans.append((started, time.perf_counter()))
    selector.select = select
    try:
        yield captured
    finally:
        selector.select = original_select
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _query_name(store: Any, sql: str) -> str:
    """The named query (sql/<store>/queries.sql) this SQL text came from."""
    for name, text in getattr(store, "sql", {}).items():
        if text == sql or ("{agg}" in text and text.split("{agg}", 1)[0] in sql):
            return str(name)
    return sql.split()[0].lower()


def _finish(sample: Sample) -> None:
    start, end = sample.execute_span
    sample.idle = sum(b - a for a, b in sample.idle_spans)
    sample.idle_in_execute = sum(
        max(0.0, min(b, end) - max(a, start)) for a, b in sample.idle_spans)


async def _asgi_request(
    app: Any, state: dict[str, Any], body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One POST /graphql straight through ASGI (with the lifespan's state, as a server
    passes it); returns status and body."""
    scope = {
        "state": dict(state),
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/graphql", "raw_path": b"/graphql", "query_string": b"",
        "root_path": "", "client": (HOST, 50000), "server": (HOST, 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in {
            "host": "gateway", "content-type": "application/json",
            "content-length": str(len(body)), **headers}.items()],
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect comes within one request
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


IDLE = "(idle: waiting on the stores)"


def _package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for local in ("gateway", "resolvers", "bench"):
        if f"/{local}/" in path:
            return local
    match = re.search(r"/python3\.\d+/([^/]+)", path)
    if match:
        return "stdlib " + match.group(1).removesuffix(".py")
    return path or "?"


def _self_time_by_package(root: Any) -> dict[str, float]:
    """pyinstrument's samples as self time per package. Built-ins and generated code
    (dataclass __init__...) count for the package that called them; time blocked in the
    selector is idle time, waiting for the stores."""
    totals: dict[str, float] = defaultdict(float)
    stack: list[tuple[Any, str]] = [(root, "?")]
    while stack:
        frame, caller = stack.pop()
        path = frame.file_path or ""
        if frame.is_synthetic or path.startswith("<"):
            package = caller
        elif path.endswith("selectors.py") or caller == IDLE:
            package = IDLE
        else:
            package = _package(path)
        own = frame.time - sum(child.time for child in frame.children)
        if own > 0:
            totals[package] += own
        stack.extend((child, package) for child in frame.children)
    return dict(totals)


@dataclass
class Profile:
    requests: int
    samples: list[Sample]
    alone: dict[str, tuple[float, float]]  # label -> (min, median) ms of the call alone
    explain: dict[str, tuple[float, float, int]]  # label -> (planning ms, execution ms, rows)
    packages: dict[str, float]  # pyinstrument self time, seconds over its run
    pyinstrument_requests: int
    pyinstrument_ms: float  # median wall ms per request under pyinstrument

    def median_ms(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples) * 1e3


async def profile_dashboard(
    settings: Any, key: str, body: bytes, *, requests: int, check: Callable[[int, bytes], None],
    html: Path | None,
) -> Profile:
    """Runs the dashboard request ``requests`` times in-process with timers; replays each
    store query alone and under EXPLAIN ANALYZE; then runs the request again under
    pyinstrument (when installed) for self time per package."""
    global _current
    from gateway.app import create_app

    app = create_app(settings)
    headers = {"authorization": f"Bearer {key}"}
    samples: list[Sample] = []
    async with _lifespan(app) as state:
        _in_request.set(True)
        with _instrumented() as captured:
            for _ in range(max(5, requests // 5)):  # warm up pools, statement caches, plans
                check(*await _asgi_request(app, state, body, headers))
            for _ in range(requests):
                sample = Sample()
                _current = sample
                cpu0, started = time.process_time(), time.perf_counter()
                try:
                    status, payload = await _asgi_request(app, state, body, headers)
                finally:
                    sample.total = time.perf_counter() - started
                    sample.cpu = time.process_time() - cpu0
                    _current = None
                check(status, payload)
                _finish(sample)
                samples.append(sample)
        alone, explain = await _replay(captured)
        packages, wall = await _pyinstrument(app, state, body, headers, check, requests, html)
    return Profile(requests, samples, alone, explain, packages, requests if packages else 0,
                   wall)


async def _replay(
    captured: Captured,
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float, int]]]:
    alone: dict[str, tuple[float, float]] = {}
    explain: dict[str, tuple[float, float, int]] = {}
    for label, (kind, store, sql, args) in captured.items():
        times = []
        for _ in range(7):
            started = time.perf_counter()
            if kind == "pg":
                assert sql is not None
                await store.pool.fetch(sql, *args)
            else:
                await store.get_many(*args)
            times.append((time.perf_counter() - started) * 1e3)
        alone[label] = (min(times), statistics.median(times))
        if kind != "pg" or sql is None or not _is_select(sql):
            continue
        plans = []
        for _ in range(5):
            raw = await store.pool.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            plans.append((plan["Planning Time"], plan["Execution Time"],
                          int(plan["Plan"].get("Actual Rows", 0))))
        plans.sort(key=lambda p: p[1])
        explain[label] = plans[len(plans) // 2]
    return alone, explain


def _is_select(sql: str) -> bool:
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return code.lstrip().upper().startswith(("SELECT", "WITH"))


async def _pyinstrument(
    app: Any, state: dict[str, Any], body: bytes, headers: dict[str, str],
    check: Callable[[int, bytes], None], requests: int, html: Path | None,
) -> tuple[dict[str, float], float]:
    """Self time per package over ``requests`` requests, and their median wall time; empty
    without pyinstrument."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return {}, 0.0
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    walls, responses = [], []
    profiler.start()
    try:
        for _ in range(requests):
            started = time.perf_counter()
            responses.append(await _asgi_request(app, state, body, headers))
            walls.append(time.perf_counter() - started)
    finally:
        profiler.stop()
    for status, payload in responses:  # checked outside the profile
        check(status, payload)
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    packages = _self_time_by_package(root) if root is not None else {}
    if html is not None:
        await asyncio.to_thread(html.write_text, profiler.output_html())
        await asyncio.to_thread(html.with_suffix(".txt").write_text, profiler.output_text(
            unicode=False, color=False, show_all=False))
    return packages, statistics.median(walls) * 1e3


class _lifespan:
    """Runs a Starlette app's lifespan around a block and exposes its state."""

    def __init__(self, app: Starlette) -> None:
        self._app = app
        self._cm: Any = None

    async def __aenter__(self) -> dict[str, Any]:
        self._cm = self._app.router.lifespan_context(self._app)
        state: dict[str, Any] = await self._cm.__aenter__()
        return state

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)
