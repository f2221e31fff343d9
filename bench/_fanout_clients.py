"""One subscriber process of bench/fanout.py: many graphql-transport-ws sockets, one event loop.

    python bench/_fanout_clients.py   (started by bench/fanout.py, never by hand)

Talks to its parent in JSON lines. The first line on stdin is the job::

    {"url": "ws://127.0.0.1:P/graphql", "key": "...", "query": "subscription ...",
     "field": "shadowChanged" | "telemetryChanged",
     "devices": ["<id>", ...],   # subscriber i watches devices[i % len(devices)]
     "first": 0, "count": 5000, "stride": 1,  # subscribers first, first + stride, ...
     "parallel": 100, "step_timeout": 30.0,
     "compression": "deflate" | null, "samples": "/tmp/.../clients-0.bin"}

It opens ``count`` sockets (``parallel`` handshakes in flight at most), each one
connection_init -> connection_ack -> subscribe -> the first SNAPSHOT, and prints
``{"event": "ready", ...}`` with the setup times. Then it only receives: every UPDATED
event's latency (receipt wall clock minus the write's time: ``reported.writtenAtMs``,
which the writer put in the shadow, or for ``telemetryChanged`` the time of the reading
the writer sent) and receipt time go into ``samples`` (float64 pairs), and per subscriber
it tracks the last version (a shadow's version, or the value of the reading, which the
telemetry writer numbers 1, 2, ... per device), the versions skipped (coalesced),
versions that went backwards, errors and unexpected closes. Then the parent sends::

    {"cmd": "final", "versions": {"<device>": <version>}, "stopped_at": <unix s>, "timeout": s}

and the process waits (at most ``timeout`` s) until every subscriber's last version is its
device's final one, prints ``{"event": "report", ...}`` and waits for ``{"cmd": "close"}``
(or EOF on stdin: the parent is gone) to close every socket and exit.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import resource
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/, not the root, is first
    sys.path.insert(0, str(ROOT))

from bench._procs import raise_nofile  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - the gateway's dependencies include it
    uvloop = None  # type: ignore[assignment]

MAX_LINE = 1 << 26  # job and commands: a few KB; read with a generous limit anyway
CLOSE_TIMEOUT = 20.0
ERROR_SAMPLES = 5


def emit(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


class Subscriber:
    __slots__ = (
        "index", "device", "ws", "task", "ready", "setup_ms", "first_version", "last", "last_at",
        "events", "snapshots", "coalesced", "backwards", "errors", "closed", "converged_at",
    )

    def __init__(self, index: int, device: str) -> None:
        self.index = index
        self.device = device
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready = False  # subscribed: its first SNAPSHOT arrived
        self.setup_ms = 0.0
        self.first_version: int | None = None
        self.last: int | None = None
        self.last_at = 0.0  # wall clock of the receipt that set ``last``
        self.events = 0  # UPDATED/DELETED received after the first SNAPSHOT
        self.snapshots = 0
        self.coalesced = 0  # versions skipped between two consecutive receipts
        self.backwards = 0  # a version at or below one already received (not a SNAPSHOT)
        self.errors = 0
        self.closed: str | None = None  # why the socket ended, if it did before close
        self.converged_at: float | None = None


class Clients:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        devices: list[str] = job["devices"]
        first, count, stride = int(job["first"]), int(job["count"]), int(job.get("stride", 1))
        self.subs = [Subscriber(i, devices[i % len(devices)])
                     for i in range(first, first + count * stride, stride)]
        self.samples = array.array("d")  # (receipt unix s, latency ms) pairs
        self.max_ms: dict[str, float] = {}  # the largest latency per device
        self.finals: dict[str, int] | None = None
        self.stopped_at = 0.0
        self.pending = 0  # subscribers not yet at their final version
        self.all_converged = asyncio.Event()
        self.failures: list[str] = []
        self.error_samples: list[str] = []
        self.closing = False

    # -- setup -----------------------------------------------------------------------

    async def open_all(self) -> float:
        started = time.perf_counter()
        gate = asyncio.Semaphore(int(self.job["parallel"]))

        async def one(sub: Subscriber) -> None:
            async with gate:
                try:
                    await asyncio.wait_for(self._open(sub), float(self.job["step_timeout"]))
                except Exception as exc:  # counted and reported: the run goes on without it
                    self.failures.append(f"subscriber {sub.index}: {type(exc).__name__}: {exc}")
                    if sub.ws is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(sub.ws.close(), 5)
                    sub.ws = None

        await asyncio.gather(*(one(sub) for sub in self.subs))
        return time.perf_counter() - started

    async def _open(self, sub: Subscriber) -> None:
        t0 = time.perf_counter()
        sub.ws = ws = await connect(
            self.job["url"], subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            compression=self.job.get("compression"), proxy=None,
            ping_interval=None,  # like a browser: keepalive pings are the server's business
            open_timeout=None, close_timeout=5, max_queue=64,
        )
        await ws.send(orjson.dumps({
            "type": "connection_init", "payload": {"Authorization": f"Bearer {self.job['key']}"},
        }).decode())
        ack = orjson.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"expected connection_ack, got {ack}")
        await ws.send(orjson.dumps({
            "id": "1", "type": "subscribe",
            "payload": {"query": self.job["query"], "variables": {"ids": [sub.device]}},
        }).decode())
        first = orjson.loads(await ws.recv())
        event = _event(first, self.job["field"])
        if event is None or event.get("kind") != "SNAPSHOT":
            raise RuntimeError(f"expected a SNAPSHOT first, got {str(first)[:300]}")
        sub.setup_ms = (time.perf_counter() - t0) * 1e3
        sub.first_version = sub.last = _version_written(event)[0]
        sub.last_at = time.time()
        sub.snapshots = 1
        sub.ready = True
        sub.task = asyncio.create_task(self._receive(sub))

    # -- receiving ---------------------------------------------------------------------

    async def _receive(self, sub: Subscriber) -> None:
        ws = sub.ws
        assert ws is not None
        samples = self.samples
        try:
            async for raw in ws:
                now = time.time()
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    self._on_next(sub, message, now, samples)
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind != "pong":
                    sub.errors += 1
                    self._sample(f"subscriber {sub.index}: unexpected {str(message)[:300]}")
        except ConnectionClosed as exc:
            if not self.closing:
                sub.closed = f"{type(exc).__name__} code={exc.rcvd.code if exc.rcvd else None}"
        except Exception as exc:  # one broken socket must not end the others
            sub.closed = f"{type(exc).__name__}: {exc}"
        else:
            if not self.closing:
                sub.closed = "closed by the server"
        if sub.closed is not None:
            self._sample(f"subscriber {sub.index}: {sub.closed}")

    def _on_next(self, sub: Subscriber, message: dict[str, Any], now: float,
                 samples: array.array[float]) -> None:
        payload = message.get("payload") or {}
        if payload.get("errors"):
            sub.errors += 1
            self._sample(f"subscriber {sub.index}: errors {str(payload['errors'])[:300]}")
            return
        event = (payload.get("data") or {}).get(self.job["field"]) or {}
        version, written = _version_written(event)
        kind = event.get("kind")
        last = sub.last
        if kind == "SNAPSHOT":
            sub.snapshots += 1
        else:
            sub.events += 1
            if written is not None:
                ms = now * 1e3 - written
                samples.append(now)
                samples.append(ms)
                if ms > self.max_ms.get(sub.device, 0.0):
                    self.max_ms[sub.device] = ms
        if version is not None:
            if last is not None:
                if version > last + 1:
                    sub.coalesced += version - last - 1
                elif version <= last and (kind != "SNAPSHOT" or version < last):
                    sub.backwards += 1
            if last is None or version > last:
                sub.last = version
                sub.last_at = now
        if self.finals is not None and sub.converged_at is None and (
            sub.last == self.finals.get(sub.device)
        ):
            sub.converged_at = sub.last_at
            self.pending -= 1
            if self.pending <= 0:
                self.all_converged.set()

    def _sample(self, text: str) -> None:
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(text)

    # -- the end -------------------------------------------------------------------------

    async def converge(self, finals: dict[str, int], stopped_at: float, within: float) -> float:
        """Waits until every live subscriber holds its device's final version; returns how
        long this process waited after the command arrived."""
        self.stopped_at = stopped_at
        self.finals = finals
        self.pending = 0
        for sub in self.subs:
            if sub.last is not None and sub.last == finals.get(sub.device):
                sub.converged_at = sub.last_at
            elif sub.ws is not None and sub.closed is None:
                self.pending += 1
        started = time.perf_counter()
        if self.pending > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_converged.wait(), within)
        return time.perf_counter() - started

    def report(self, connect_s: float, waited_s: float) -> dict[str, Any]:
        finals = self.finals or {}
        connected = [s for s in self.subs if s.ready]
        laggards = [
            {"index": s.index, "device": s.device, "last": s.last,
             "final": finals.get(s.device), "closed": s.closed}
            for s in connected if s.converged_at is None
        ]
        ahead = sum(1 for s in connected
                    if s.last is not None and s.last > finals.get(s.device, s.last))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(self.job["samples"], "wb") as fh:
            self.samples.tofile(fh)
        return {
            "event": "report",
            "subscribers": len(self.subs),
            "connected": len(connected),
            "events": sum(s.events for s in connected),
            "snapshots": sum(s.snapshots for s in connected),
            "extra_snapshots": sum(s.snapshots - 1 for s in connected),
            "coalesced": sum(s.coalesced for s in connected),
            "expected": sum((finals.get(s.device) or 0) - (s.first_version or 0)
                            for s in connected),
            "backwards": sum(s.backwards for s in connected),
            "errors": sum(s.errors for s in connected),
            "closed": sum(1 for s in connected if s.closed is not None),
            "converged": sum(1 for s in connected if s.converged_at is not None),
            "convergence_ms": [max(0.0, (s.converged_at - self.stopped_at) * 1e3)
                               for s in connected if s.converged_at is not None],
            "laggards": laggards[:20],
            "laggard_count": len(laggards),
            "ahead": ahead,
            "samples": len(self.samples) // 2,
            "max_ms_by_device": self.max_ms,
            "connect_s": connect_s,
            "waited_s": waited_s,
            "error_samples": self.error_samples,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss,
        }

    async def close_all(self) -> None:
        self.closing = True
        gate = asyncio.Semaphore(500)

        async def one(sub: Subscriber) -> None:
            if sub.ws is None:
                return
            async with gate:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sub.ws.close(), 5)
            if sub.task is not None:
                sub.task.cancel()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(s) for s in self.subs)), CLOSE_TIMEOUT)


def _event(message: dict[str, Any], field: str) -> dict[str, Any] | None:
    if message.get("type") != "next":
        return None
    payload = message.get("payload") or {}
    if payload.get("errors"):
        return None
    event: dict[str, Any] | None = (payload.get("data") or {}).get(field)
    return event


def _version_written(event: dict[str, Any]) -> tuple[int | None, float | None]:
    """An event's version and the write's time (unix ms), either None when absent: a
    shadowChanged event's version and ``reported.writtenAtMs``, or a telemetryChanged
    event's reading (its value numbers the device's readings, its time is the write's)."""
    if "readings" in event:
        readings = event["readings"]
        if not readings:
            return None, None  # a SNAPSHOT of a device without readings of the metric
        reading = readings[0]
        at = datetime.fromisoformat(reading["time"]).timestamp() * 1e3
        return int(reading["value"]), at
    written = ((event.get("shadow") or {}).get("reported") or {}).get("writtenAtMs")
    return event.get("version"), written if isinstance(written, int | float) else None


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _command(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None  # EOF: the parent is gone
    command: dict[str, Any] = orjson.loads(line)
    return command


async def main() -> int:
    nofile = raise_nofile()
    reader = await _stdin()
    job = await _command(reader)
    if job is None:
        return 1
    clients = Clients(job)
    try:
        connect_s = await clients.open_all()
        setups = [round(s.setup_ms, 3) for s in clients.subs if s.ready]
        emit({"event": "ready", "connected": len(setups), "failed": len(clients.failures),
              "failures": clients.failures[:ERROR_SAMPLES], "setup_ms": setups,
              "connect_s": connect_s, "nofile": nofile})
        waited = 0.0
        while (command := await _command(reader)) is not None:
            if command["cmd"] == "final":
                waited = await clients.converge(
                    command["versions"], float(command["stopped_at"]), float(command["timeout"]))
                emit(clients.report(connect_s, waited))
            elif command["cmd"] == "close":
                break
    finally:
        await clients.close_all()
    return 0


if __name__ == "__main__":
    sys.exit((uvloop.run if uvloop is not None else asyncio.run)(main()))
