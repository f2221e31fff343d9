"""OpenTelemetry spans for GraphQL operations and store calls, when asked for.

Tracing is on only when the OpenTelemetry SDK and its OTLP exporter are importable (the
``otel`` extra) and an endpoint is configured: ``IOTSPHERE_OTEL_ENDPOINT`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over HTTP/protobuf, spans to ``<endpoint>/v1/traces``).
Otherwise ``tracer`` stays None and each hook costs one ``is None`` check: the packages are
not even imported.

Spans: ``graphql <operation>`` per operation (its name, the tenant, the outcome and error
codes), and under it ``store <name>`` per store call (``gateway.stores.base``), so a slow
dashboard shows which store it waited on. The tracer provider is this module's own, not
the global one: nothing else in the process starts exporting by accident.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("gateway.tracing")

tracer: Tracer | None = None
_provider: TracerProvider | None = None
_DB_SYSTEM = {"registry": "postgresql", "assets": "postgresql", "telemetry": "postgresql",
              "shadows": "redis"}


def endpoint(settings: Settings, env: Mapping[str, str] | None = None) -> str | None:
    """Where spans go: IOTSPHERE_OTEL_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT."""
    env = os.environ if env is None else env
    return settings.otel_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def configure(settings: Settings, env: Mapping[str, str] | None = None) -> bool:
    """Turns tracing on when an endpoint is set and the packages are installed."""
    env = os.environ if env is None else env
    base = endpoint(settings, env)
    if base is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("an OTLP endpoint is set but the OpenTelemetry packages are missing "
                    "(pip install 'iotsphere-gateway[otel]'): tracing stays off")
        return False
    provider = TracerProvider(resource=Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or "iotsphere-gateway"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=base.rstrip("/") + "/v1/traces")))
    install(provider)
    log.info("tracing to %s", base)
    return True


def install(provider: TracerProvider | None) -> None:
    """Spans go to ``provider`` from now on; None turns tracing off (tests use both)."""
    global tracer, _provider
    _provider = provider
    tracer = provider.get_tracer("iotsphere.gateway") if provider is not None else None


def shutdown() -> None:
    """Flushes pending spans and turns tracing off."""
    provider = _provider
    install(None)
    if provider is not None:
        provider.shutdown()


# -- hooks (each a no-op returning None while tracing is off) ------------------------------


def start_operation() -> tuple[Span, object] | None:
    """A span for one GraphQL operation, made current so store calls nest under it."""
    if tracer is None:
        return None
    from opentelemetry import context, trace

    span = tracer.start_span("graphql", kind=trace.SpanKind.SERVER)
    return span, context.attach(trace.set_span_in_context(span))


def end_operation(started: tuple[Span, object], name: str, tenant: str | None,
                  request_id: str | None, codes: Sequence[str]) -> None:
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    span, token = started
    context.detach(token)  # type: ignore[arg-type]
    span.update_name(f"graphql {name}")
    attributes: dict[str, Any] = {
        "graphql.operation.name": name, "iotsphere.outcome": "error" if codes else "ok",
    }
    if tenant:
        attributes["iotsphere.tenant"] = tenant
    if request_id:
        attributes["iotsphere.request_id"] = request_id
    if codes:
        attributes["iotsphere.error_codes"] = sorted(set(codes))
        span.set_status(Status(StatusCode.ERROR, ", ".join(sorted(set(codes)))))
    span.set_attributes(attributes)
    span.end()


def store_span(store: str) -> Span | None:
    """A span for one store call, a child of the current operation's."""
    if tracer is None:
        return None
    return tracer.start_span(f"store {store}", attributes={
        "iotsphere.store": store, "db.system.name": _DB_SYSTEM.get(store, store)})


def end_store_span(span: Span) -> None:
    """Ends a store call's span; called from a ``finally``, so the exception on its way
    out (if any) is the call's failure."""
    error = sys.exc_info()[1]
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.set_attribute("error.type", type(error).__name__)
    span.end()
