"""Prometheus metrics of this process, served at ``GET /metrics``.

Defined once per process (prometheus_client's default registry). With several workers each
process serves its own numbers; Prometheus scrapes and sums them per instance label.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

REQUESTS = Counter(
    "iotsphere_graphql_requests_total", "GraphQL operations by name and outcome",
    ["operation", "outcome"])
REQUEST_SECONDS = Histogram(
    "iotsphere_graphql_request_seconds", "GraphQL operation latency", ["operation"],
    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
ERRORS = Counter("iotsphere_graphql_errors_total", "GraphQL errors by code", ["code"])
STORE_CALLS = Counter(
    "iotsphere_store_round_trips_total", "Round trips to each store", ["store"])
STORE_SECONDS = Histogram(
    "iotsphere_store_call_seconds", "Store call latency", ["store"],
    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5))
LOADER_BATCH = Histogram(
    "iotsphere_dataloader_batch_size", "Keys per dataloader batch", ["loader"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
WEBSOCKETS = Gauge("iotsphere_websocket_connections", "Open GraphQL WebSocket connections")
WAITING = Gauge("iotsphere_http_operations_waiting",
                "HTTP GraphQL requests queued for an execution slot (MAX_CONCURRENT_REQUESTS)")
SUBSCRIPTIONS = Gauge("iotsphere_subscriptions", "Live shadowChanged subscriptions")
JOB_LEADER = Gauge("iotsphere_job_leader",
                   "1 while this process runs the background jobs (gateway/jobs/leader.py)")
JOB_RUNS = Counter("iotsphere_job_runs_total", "Background job runs by this process", ["job"])
HUB_RECONNECTS = Counter("iotsphere_hub_reconnects_total", "Subscription hub reconnects to Redis")
INGESTED = Counter(
    "iotsphere_ingest_readings_total", "Readings through ingest, by result", ["result"])
TELEMETRY_MODE = Gauge(
    "iotsphere_telemetry_mode",
    "1 for the telemetry store's mode (timescale or partitioned), once it is known", ["mode"])
ROLLUP_REFRESHES = Counter(
    "iotsphere_rollup_refreshes_total",
    "Refreshes of TimescaleDB's 5-minute aggregate after ingest behind it, by outcome",
    ["outcome"])

READ_REPLICA_IN_USE = Gauge(
    "iotsphere_read_replica_in_use",
    "1 while a store's read replica serves its lag-tolerant reads, 0 while it is left out",
    ["store"])
LAGGING_READS = Counter(
    "iotsphere_lagging_reads_total",
    "Lag-tolerant reads of stores with a read replica, by the server that answered "
    "(replica or primary)", ["store", "server"])


# Every known label value exported from the start (as 0): rate() and absent() alerts see
# a series before the first error or ingest, not "no data".
ERROR_CODES = ("BAD_USER_INPUT", "NOT_FOUND", "VERSION_CONFLICT", "UNAUTHENTICATED",
               "FORBIDDEN", "LIMIT_EXCEEDED", "STORE_UNAVAILABLE", "INTERNAL")
INGEST_RESULTS = ("accepted", "duplicate", "rejected")
for _code in ERROR_CODES:
    ERRORS.labels(_code)
for _result in INGEST_RESULTS:
    INGESTED.labels(_result)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
