"""GET /metrics, request ids and the per-request log line."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import REGISTRY

from bench.queries import DASHBOARD
from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_store_calls_and_batches(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=10, hours=0.5, sites=1, lines=1, machines=2)
    before_ok = _value("iotsphere_graphql_requests_total", operation="Dashboard", outcome="ok")
    before_trips = _value("iotsphere_store_round_trips_total", store="telemetry")
    before_batches = _value("iotsphere_dataloader_batch_size_count", loader="shadow")
    before_sum = _value("iotsphere_dataloader_batch_size_sum", loader="shadow")
    body = await gateway.query(DASHBOARD, {"first": 10}, key=tenant.key)
    assert "errors" not in body
    assert _value("iotsphere_graphql_requests_total", operation="Dashboard",
                  outcome="ok") == before_ok + 1
    assert _value("iotsphere_store_round_trips_total", store="telemetry") == before_trips + 2
    assert _value("iotsphere_dataloader_batch_size_count", loader="shadow") == before_batches + 1
    assert _value("iotsphere_dataloader_batch_size_sum", loader="shadow") == before_sum + 10

    before_errors = _value("iotsphere_graphql_errors_total", code="NOT_FOUND")
    await gateway.query('query Missing { shadow(deviceId: "00000000-0000-0000-0000-000000000001")'
                        " { version } }", key=tenant.key)
    assert _value("iotsphere_graphql_errors_total", code="NOT_FOUND") == before_errors + 1
    assert _value("iotsphere_graphql_requests_total", operation="Missing",
                  outcome="error") >= 1

    text = (await gateway.http.get("/metrics")).text
    for name in ("iotsphere_graphql_request_seconds_bucket", "iotsphere_store_call_seconds",
                 "iotsphere_websocket_connections", "iotsphere_subscriptions",
                 "iotsphere_hub_reconnects_total"):
        assert name in text


async def test_request_ids_and_the_log_line(
    gateway: Gateway, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    response = await gateway.http.post(
        "/graphql", json={"query": "query Count { devices { totalCount } }"},
        headers={"Authorization": f"Bearer {tenant.key}", "X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.requests"]
    assert line["requestId"] == "abc-123" and line["operation"] == "Count"
    assert line["tenant"] == str(tenant.id) and line["errors"] == []
    assert line["storeCalls"] == {"registry": 2, "assets": 0, "telemetry": 0, "shadows": 0}
    assert tenant.key not in caplog.text

    odd = await gateway.http.post(
        "/graphql", json={"query": "{ devices { totalCount } }"},
        headers={"Authorization": f"Bearer {tenant.key}", "X-Request-Id": "bad id\nx"})
    generated = odd.headers["x-request-id"]
    assert generated != "bad id\nx" and len(generated) == 32


async def test_client_errors_are_one_log_line_not_a_traceback(
    gateway: Gateway, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = await gateway.query('{ a: shadow(deviceId: "00000000-0000-0000-0000-000000000000") '
                               '{ version } b: device(id: "nope") { id } }', key=tenant.key)
    assert {e["extensions"]["code"] for e in body["errors"]} == {"NOT_FOUND", "BAD_USER_INPUT"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.requests"]
    assert sorted(line["errors"]) == ["BAD_USER_INPUT", "NOT_FOUND"]


async def test_an_unexpected_error_is_masked_and_logged_with_its_trace(
    gateway: Gateway, stores: Stores, tenant: Tenant, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug with secret internals")

    monkeypatch.setattr(stores.registry, "page_devices", broken)
    caplog.set_level(logging.INFO)
    body = await gateway.query("{ devices { totalCount } }", key=tenant.key)
    assert body["errors"][0]["message"] == "Internal server error"
    assert "secret internals" not in json.dumps(body)
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.exc_info is not None and "secret internals" in str(logged.exc_info[1])


def test_labelled_counters_start_at_zero_for_every_known_label() -> None:
    """A fresh process exports every error code and ingest result as 0, so a dashboard or
    an alert on rate() sees the series before the first increment."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import gateway.metrics\n"
              "from prometheus_client import generate_latest\n"
              "print(generate_latest().decode())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    for code in ("BAD_USER_INPUT", "NOT_FOUND", "VERSION_CONFLICT", "UNAUTHENTICATED",
                 "FORBIDDEN", "LIMIT_EXCEEDED", "STORE_UNAVAILABLE", "INTERNAL"):
        assert f'iotsphere_graphql_errors_total{{code="{code}"}} 0.0' in done.stdout, code
    for result in ("accepted", "duplicate", "rejected"):
        assert f'iotsphere_ingest_readings_total{{result="{result}"}} 0.0' in done.stdout
