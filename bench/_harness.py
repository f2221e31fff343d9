"""Helpers for bench/dashboard.py: the uvicorn app factory for the server process, and the
in-process profile of one dashboard request (where the time goes).

The profile runs the app in the benchmark's own process, straight through ASGI (no HTTP),
with timers wrapped around the store calls, Strawberry's parse/validate/execute and the
JSON encoding of the response. The wrappers live only in that process: the gateway's code
is not changed, and the server process that the load levels measure has none of them.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

HOST = "127.0.0.1"


def create_server_app() -> Starlette:
    """``uvicorn --factory bench._harness:create_server_app``: the gateway for the
    IOTSPHERE_* settings in the environment (every DSN set by the benchmark)."""
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings.from_env()
    if settings.embedded:
        raise RuntimeError("the benchmark server needs every IOTSPHERE_*_DSN / REDIS_URL set")
    return create_app(settings)


# --------------------------------------------------------------------------- the profile

@dataclass
class Sample:
    """One request's timeline, in seconds."""

    total: float = 0.0
    cpu: float = 0.0
    auth_wait: float = 0.0
    parse: float = 0.0
    validate: float = 0.0
    execute: float = 0.0
    encode: float = 0.0
    store_wait_in_execute: float = 0.0  # union of overlapping store awaits
    per_store: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    intervals: list[tuple[float, float, str]] = field(default_factory=list)
    execute_span: tuple[float, float] = (0.0, 0.0)


_current: Sample | None = None


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


@contextmanager
def _instrumented() -> Iterator[dict[str, tuple[str, Any]]]:
    """Wraps the store calls, Strawberry's phases and the response encoding with timers."""
    import strawberry.schema.schema as strawberry_schema
    from strawberry.http.async_base_view import AsyncBaseHTTPView

    from gateway.context import GatewayGraphQL
    from gateway.stores.base import PgStore
    from gateway.stores.shadows import ShadowStore

    captured: dict[str, tuple[str, Any]] = {}  # first (query, args) per store method + sql
    originals: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        originals.append((owner, name, owner.__dict__.get(name, getattr(owner, name))))
        setattr(owner, name, wrapper)

    def timed_store(method: Callable[..., Awaitable[Any]], label: str | None) -> Any:
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            store = label or self.name
            if label is None and args and isinstance(args[0], str):
                captured.setdefault(f"{store}:{_query_name(self, args[0])}", (args[0], args[1:]))
            started = time.perf_counter()
            try:
                return await method(self, *args, **kwargs)
            finally:
                if _current is not None:
                    _current.intervals.append((started, time.perf_counter(), store))
        return wrapper

    def timed_sync(function: Callable[..., Any], attr: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if _current is not None:
                    setattr(_current, attr, getattr(_current, attr)
                            + time.perf_counter() - started)
        return wrapper

    original_execute = strawberry_schema.Schema.execute

    async def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original_execute(self, *args, **kwargs)
        finally:
            if _current is not None:
                _current.execute_span = (started, time.perf_counter())

    for name in ("fetch", "fetchrow", "execute"):
        patch(PgStore, name, timed_store(getattr(PgStore, name), None))
    patch(ShadowStore, "get_many", timed_store(ShadowStore.get_many, "shadows"))
    patch(strawberry_schema.Schema, "execute", execute)
    patch(strawberry_schema, "parse", timed_sync(strawberry_schema.parse, "parse"))
    patch(strawberry_schema, "validate_document",
          timed_sync(strawberry_schema.validate_document, "validate"))
    encode = GatewayGraphQL.encode_json if "encode_json" in GatewayGraphQL.__dict__ \
        else AsyncBaseHTTPView.encode_json
    patch(GatewayGraphQL, "encode_json", timed_sync(encode, "encode"))
    try:
        yield captured
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _query_name(store: Any, sql: str) -> str:
    """The named query (sql/<store>/queries.sql) this SQL text came from."""
    for name, text in getattr(store, "sql", {}).items():
        if text == sql or ("{agg}" in text and text.split("{agg}", 1)[0] in sql):
            return str(name)
    return sql.split()[0].lower()


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
        await asyncio.sleep(3600)  # a disconnect never comes within one request
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for local in ("gateway", "resolvers", "bench"):
        if f"/{local}/" in path:
            return local
    match = re.search(r"/python3\.\d+/([^/]+)", path)
    if match:
        return match.group(1).removesuffix(".py")
    return path or "?"


def _self_time_by_package(root: Any) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.self_time <= 0:
            continue
        function = frame.function or ""
        path = frame.file_path or ""
        if function in ("select", "poll", "_run_once") and "selectors" in path + function:
            totals["(idle: waiting on stores)"] += frame.self_time
        elif function == "select" or path.endswith("selectors.py"):
            totals["(idle: waiting on stores)"] += frame.self_time
        else:
            totals[_package(path)] += frame.self_time
    return dict(totals)


@dataclass
class Profile:
    requests: int
    samples: list[Sample]
    explain: dict[str, tuple[float, float, int]]  # name -> (planning ms, execution ms, rows)
    packages: dict[str, float]  # self time in seconds over the pyinstrument run
    pyinstrument_requests: int
    html: Path | None
    text: str

    def median_ms(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples) * 1e3

    def store_median_ms(self, store: str) -> float:
        return statistics.median(s.per_store.get(store, 0.0) for s in self.samples) * 1e3


async def profile_dashboard(
    settings: Any, key: str, body: bytes, *, requests: int, check: Callable[[int, bytes], None],
    html: Path | None,
) -> Profile:
    """Runs the dashboard request ``requests`` times in-process with timers, then again
    under pyinstrument; returns the medians, EXPLAIN ANALYZE timings of each SQL query and
    pyinstrument's self time per package."""
    global _current
    from gateway.app import create_app

    app = create_app(settings)
    headers = {"authorization": f"Bearer {key}"}
    samples: list[Sample] = []
    async with _lifespan(app) as state:
        with _instrumented() as captured:
            for _ in range(max(5, requests // 5)):  # warm up caches, pools and plans
                check(*await _asgi_request(app, state, body, headers))
            for _ in range(requests):
                sample = Sample()
                _current = sample
                cpu0, started = time.process_time(), time.perf_counter()
                status, payload = await _asgi_request(app, state, body, headers)
                sample.total = time.perf_counter() - started
                sample.cpu = time.process_time() - cpu0
                _current = None
                check(status, payload)
                _finish(sample)
                samples.append(sample)
        explain = await _explain(state["stores"], captured)
        packages, text, n_pi = await _pyinstrument(app, state, body, headers, check, requests,
                                                   html)
    return Profile(requests, samples, explain, packages, n_pi, html if text else None, text)


def _finish(sample: Sample) -> None:
    start, end = sample.execute_span
    inside = [(a, b) for a, b, _ in sample.intervals if a >= start and b <= end]
    sample.store_wait_in_execute = _union(inside)
    sample.auth_wait = sum(b - a for a, b, s in sample.intervals if a < start)
    sample.execute = end - start
    for a, b, store in sample.intervals:
        sample.per_store[store] += b - a


async def _explain(stores: Any, captured: dict[str, tuple[str, Any]]) -> dict[str, tuple[float, float, int]]:
    out: dict[str, tuple[float, float, int]] = {}
    pools = {"registry": stores.registry.pool, "assets": stores.assets.pool,
             "telemetry": stores.telemetry.pool}
    for label, (sql, args) in captured.items():
        store = label.split(":", 1)[0]
        if store not in pools or not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        times = []
        for _ in range(5):
            rows = await pools[store].fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
            raw = rows[0][0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            times.append((plan["Planning Time"], plan["Execution Time"],
                          plan["Plan"].get("Actual Rows", 0)))
        times.sort(key=lambda t: t[1])
        out[label] = times[len(times) // 2]
    return out


async def _pyinstrument(
    app: Any, state: dict[str, Any], body: bytes, headers: dict[str, str], check: Callable[[int, bytes], None],
    requests: int, html: Path | None,
) -> tuple[dict[str, float], str, int]:
    try:
        from pyinstrument import Profiler
    except ImportError:
        return {}, "", 0
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    try:
        for _ in range(requests):
            check(*await _asgi_request(app, state, body, headers))
    finally:
        profiler.stop()
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    packages = _self_time_by_package(root) if root is not None else {}
    if html is not None:
        html.write_text(profiler.output_html())
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return packages, text, requests


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
