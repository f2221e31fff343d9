"""The load of bench/soak.py: HTTP clients that loop over a mix of the dashboard query and
mutations, WebSocket subscribers that hold a ``shadowChanged`` subscription, and what they
record, per interval of the run.

Every write of a shadow puts the client's clock at the send (``soakAtMs``) into the patch,
so a subscriber's lag is its receipt time minus the newest ``soakAtMs`` of the shadow it
received: the write's own latency, the hub and the delivery. Client and server share the
machine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.queries import DASHBOARD

SHADOW = ("mutation Shadow($id: ID!, $desired: JSON, $reported: JSON) { updateShadow("
          "deviceId: $id, desired: $desired, reported: $reported) { version } }")
DEVICE = ("mutation Device($id: ID!, $input: UpdateDeviceInput!) "
          "{ updateDevice(id: $id, input: $input) { id metadata } }")
INGEST = ("mutation Ingest($r: [ReadingInput!]!) "
          "{ ingestTelemetry(readings: $r) { accepted duplicates rejected { index reason } } }")
WATCH = ("subscription Watch($ids: [ID!]) { shadowChanged(deviceIds: $ids) "
         "{ kind deviceId version shadow { reported desired } } }")
SHADOWS = "{ devices(first: 500) { edges { node { id shadow { version } } } } }"
# Kinds of HTTP request and their share of a client's requests.
MIX = {"dashboard": 0.30, "shadowReported": 0.25, "shadowDesired": 0.15,
       "updateDevice": 0.15, "ingestTelemetry": 0.15}
INGEST_BATCH = 5
ERROR_SAMPLES = 10


def pct(ordered: list[float], p: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]  # nearest rank


@dataclass
class Interval:
    """What happened in one interval of the run (by completion time)."""

    requests: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # ms, every kind
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    events: int = 0  # UPDATED events received by the subscribers
    lags: list[float] = field(default_factory=list)  # ms
    duplicates: int = 0  # readings the store already had: not an error


@dataclass
class Recorder:
    started: float  # monotonic
    interval: float  # s
    intervals: dict[int, Interval] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def now(self) -> Interval:
        index = int((time.monotonic() - self.started) // self.interval)
        return self.intervals.setdefault(index, Interval())

    def request(self, kind: str, ms: float) -> None:
        bucket = self.now()
        bucket.requests[kind] = bucket.requests.get(kind, 0) + 1
        bucket.latencies.append(ms)
        bucket.by_kind.setdefault(kind, []).append(ms)

    def error(self, what: str) -> None:
        self.now().errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(f"{datetime.now(UTC):%H:%M:%S} {what[:400]}")


class HttpClient:
    """One client: request after request, each of a kind drawn from MIX, until ``stop``."""

    def __init__(self, n: int, http: httpx.AsyncClient, devices: list[str], first: int,
                 recorder: Recorder) -> None:
        self.n = n
        self.http = http
        self.devices = devices
        self.first = first
        self.rec = recorder
        self.rng = random.Random(n)
        self.seq = 0
        self.dashboard = orjson.dumps({"query": DASHBOARD, "variables": {"first": first}})

    async def run(self, stop: asyncio.Event) -> None:
        kinds, weights = list(MIX), list(MIX.values())
        while not stop.is_set():
            kind = self.rng.choices(kinds, weights)[0]
            body, check = self._request(kind)
            started = time.perf_counter()
            try:
                response = await self.http.post("/graphql", content=body)
                ms = (time.perf_counter() - started) * 1e3
                problem = self._problem(response, check)
            except httpx.HTTPError as exc:
                ms = (time.perf_counter() - started) * 1e3
                problem = f"{type(exc).__name__}: {exc}"
            self.rec.request(kind, ms)
            if problem:
                self.rec.error(f"{kind}: {problem}")

    def _problem(self, response: httpx.Response, check: Callable[[Any], str | None]
                 ) -> str | None:
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        body = orjson.loads(response.content)
        if body.get("errors"):
            return f"errors: {orjson.dumps(body['errors'])[:300]!r}"
        return check(body.get("data") or {})

    def _request(self, kind: str) -> tuple[bytes, Callable[[Any], str | None]]:
        self.seq += 1
        device = self.rng.choice(self.devices)
        at_ms = time.time() * 1e3
        value = round(self.rng.uniform(20, 80), 2)
        if kind == "dashboard":
            want = self.first
            return self.dashboard, lambda d: (
                None if len(d["devices"]["edges"]) == want
                else f"{len(d['devices']['edges'])} edges, expected {want}")
        if kind in ("shadowReported", "shadowDesired"):
            side = "reported" if kind == "shadowReported" else "desired"
            name = "temperature" if side == "reported" else "setpoint"
            body = {"query": SHADOW, "variables": {
                "id": device, side: {"soakAtMs": at_ms, name: value}}}
            return orjson.dumps(body), lambda d: None
        if kind == "updateDevice":
            body = {"query": DEVICE, "variables": {"id": device, "input": {
                "metadata": {"soak": {"client": self.n, "seq": self.seq}}}}}
            return orjson.dumps(body), lambda d: None
        start = datetime.now(UTC)
        readings = [{"deviceId": device, "metric": "temperature",
                     "time": (start + timedelta(microseconds=k)).isoformat(), "value": value}
                    for k in range(INGEST_BATCH)]
        return orjson.dumps({"query": INGEST, "variables": {"r": readings}}), self._ingested

    def _ingested(self, data: Any) -> str | None:
        result = data["ingestTelemetry"]
        self.rec.now().duplicates += result["duplicates"]
        if result["rejected"]:
            return f"rejected readings: {result['rejected'][:3]}"
        return None


@dataclass
class Subscriber:
    """One socket with one ``shadowChanged`` subscription (``ids`` None: the whole tenant);
    reconnects if the socket ends before ``stop`` (each time an error)."""

    n: int
    url: str
    key: str
    ids: list[str] | None
    rec: Recorder
    versions: dict[str, int] = field(default_factory=dict)  # device -> last version seen
    snapshots: int = 0
    backwards: int = 0
    connects: int = 0
    closing: bool = False

    async def run(self) -> None:
        while not self.closing:
            try:
                await self._session()
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                if self.closing:
                    return
                self.rec.error(f"subscriber {self.n}: {type(exc).__name__}: {exc}")
            else:
                if self.closing:
                    return
                self.rec.error(f"subscriber {self.n}: subscription ended by the server")
            await asyncio.sleep(1.0)

    async def _session(self) -> None:
        async with connect(self.url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           proxy=None, open_timeout=30, close_timeout=5,
                           max_size=None) as ws:
            await ws.send(orjson.dumps({"type": "connection_init", "payload": {
                "Authorization": f"Bearer {self.key}"}}).decode())
            ack = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            if ack.get("type") != "connection_ack":
                raise ConnectionError(f"expected connection_ack, got {str(ack)[:200]}")
            await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": WATCH, "variables": {"ids": self.ids}}}).decode())
            self.connects += 1
            async for raw in ws:
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    self._on_next(message.get("payload") or {})
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind != "pong":
                    self.rec.error(f"subscriber {self.n}: {str(message)[:300]}")
                    if kind in ("error", "complete"):
                        return

    def _on_next(self, payload: dict[str, Any]) -> None:
        if payload.get("errors"):
            self.rec.error(f"subscriber {self.n}: {str(payload['errors'])[:300]}")
            return
        event = (payload.get("data") or {}).get("shadowChanged") or {}
        device, version = event.get("deviceId"), event.get("version")
        if event.get("kind") == "SNAPSHOT":
            self.snapshots += 1
        elif event.get("kind") == "UPDATED" and device is not None:
            if version is not None and version <= self.versions.get(device, -1):
                self.backwards += 1
                self.rec.error(f"subscriber {self.n}: {device} version {version} after "
                               f"{self.versions[device]}")
            shadow = event.get("shadow") or {}
            written = max(float((shadow.get(side) or {}).get("soakAtMs", 0))
                          for side in ("reported", "desired"))
            bucket = self.rec.now()
            bucket.events += 1
            if written:
                bucket.lags.append(time.time() * 1e3 - written)
        if device is not None and version is not None:
            self.versions[device] = max(version, self.versions.get(device, -1))

    def behind(self, final: dict[str, int]) -> list[str]:
        """Watched devices whose last version seen is not ``final``'s."""
        watched = final if self.ids is None else {d: final[d] for d in self.ids if d in final}
        return [d for d, v in watched.items() if self.versions.get(d) != v]


async def final_versions(http: httpx.AsyncClient) -> dict[str, int]:
    response = await http.post("/graphql", content=orjson.dumps({"query": SHADOWS}))
    body = orjson.loads(response.content)
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"reading the final shadow versions: {response.text[:300]}")
    return {e["node"]["id"]: e["node"]["shadow"]["version"]
            for e in body["data"]["devices"]["edges"] if e["node"]["shadow"]}


async def converge(subscribers: list[Subscriber], final: dict[str, int], limit: float
                   ) -> tuple[float, dict[int, list[str]]]:
    """Waits (at most ``limit`` s) until every subscriber saw its devices' final
    versions; returns the wait and what each one still missed."""
    started = time.monotonic()
    behind: dict[int, list[str]] = {}
    while time.monotonic() - started < limit:
        behind = {s.n: missed for s in subscribers if (missed := s.behind(final))}
        if not behind:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - started, behind


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
