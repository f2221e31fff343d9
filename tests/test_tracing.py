"""OpenTelemetry spans: one per GraphQL operation with a child per store call when tracing
is on; nothing at all when it is off (no endpoint, or no packages)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from bench.queries import DASHBOARD
from gateway import tracing
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import AppClient, Gateway, Tenant

STORES = {"registry", "assets", "telemetry", "shadows"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.install(provider)
    try:
        yield spans
    finally:
        tracing.shutdown()


def operation_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith("graphql ")]


async def test_dashboard_span_has_a_child_per_store_call(
    app_client: AppClient, stores: Stores, tenant: Tenant, exporter: InMemorySpanExporter
) -> None:
    # Seeded before the app starts: its partition housekeeping would race the seeding.
    await seed_fleet(stores, tenant.id, devices=6, hours=0.5)
    async with app_client() as http:
        exporter.clear()
        body = await Gateway(http).query(DASHBOARD, {"first": 6}, key=tenant.key, trace=True)
    assert "errors" not in body and len(body["data"]["devices"]["edges"]) == 6

    spans = exporter.get_finished_spans()
    [request] = operation_spans(spans)
    assert request.name == "graphql Dashboard"
    assert request.attributes is not None and request.context is not None
    assert request.attributes["graphql.operation.name"] == "Dashboard"
    assert request.attributes["iotsphere.tenant"] == str(tenant.id)
    assert request.attributes["iotsphere.outcome"] == "ok"
    assert request.status.status_code is not StatusCode.ERROR

    children = [s for s in spans
                if s.parent is not None and s.parent.span_id == request.context.span_id]
    assert children and all(s.name.startswith("store ") for s in children)
    assert all(s.context is not None and s.context.trace_id == request.context.trace_id
               for s in children)
    assert {s.attributes["iotsphere.store"] for s in children if s.attributes} == STORES
    # Batched: as many store spans under the operation as it made round trips, at most
    # (the API key lookup runs before the operation starts, outside its span).
    calls = body["extensions"]["storeCalls"]
    for store in STORES:
        named = [s for s in children if s.name == f"store {store}"]
        assert 1 <= len(named) <= calls[store], (store, len(named), calls)


async def test_failed_operation_span_carries_the_error_codes(
    gateway: Gateway, tenant: Tenant, exporter: InMemorySpanExporter
) -> None:
    body = await gateway.query("query TooMany { devices(first: 100000) { totalCount } }",
                               key=tenant.key)
    codes = sorted({e["extensions"]["code"] for e in body["errors"]})
    [request] = operation_spans(exporter.get_finished_spans())
    assert request.name == "graphql TooMany"
    assert request.attributes is not None
    assert request.attributes["iotsphere.outcome"] == "error"
    assert list(request.attributes["iotsphere.error_codes"]) == codes
    assert request.status.status_code is StatusCode.ERROR


async def test_no_spans_once_tracing_is_off(
    app_client: AppClient, stores: Stores, tenant: Tenant, exporter: InMemorySpanExporter
) -> None:
    await seed_fleet(stores, tenant.id, devices=2, hours=0.1)
    async with app_client() as http:
        gateway = Gateway(http)
        await gateway.query(DASHBOARD, {"first": 2}, key=tenant.key)
        assert operation_spans(exporter.get_finished_spans())  # on: spans

        tracing.install(None)
        switched = time.time_ns()
        exporter.clear()
        body = await gateway.query(DASHBOARD, {"first": 2}, key=tenant.key)
    assert "errors" not in body
    # A background store call (reconciler, partitions) started while tracing was on may
    # still end after the switch; nothing may start after it.
    assert [s.name for s in exporter.get_finished_spans() if s.start_time >= switched] == []
    assert tracing.start_operation() is None and tracing.store_span("registry") is None


def test_off_without_an_endpoint() -> None:
    assert tracing.endpoint(Settings(), {}) is None
    assert tracing.configure(Settings(), {}) is False
    assert tracing.tracer is None


def test_off_without_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the `otel` extra were not installed: the SDK cannot be imported.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    settings = Settings(otel_endpoint="http://127.0.0.1:4318")
    assert tracing.configure(settings, {}) is False
    assert tracing.tracer is None


class _Collector(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", "0"))
        self.bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("variable", ["IOTSPHERE_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
async def test_configured_endpoint_receives_otlp_spans(
    gateway: Gateway, tenant: Tenant, variable: str
) -> None:
    """The real exporter, to a local OTLP/HTTP collector stand-in."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.bodies = []
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        env = {variable: url}
        assert tracing.configure(Settings.from_env(env), env) is True
        body = await gateway.query("query Count { devices(first: 1) { totalCount } }",
                                   key=tenant.key)
        assert "errors" not in body
        tracing.shutdown()  # flushes the batch
    finally:
        tracing.install(None)
        server.shutdown()
        server.server_close()
    assert [path for path, _ in _Collector.bodies] and all(
        path == "/v1/traces" for path, _ in _Collector.bodies)
    sent = b"".join(data for _, data in _Collector.bodies)
    assert b"graphql Count" in sent and b"store registry" in sent
