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

Each socket is an ``asyncio.Protocol`` (``SubscriberSocket``) driving websockets' sans-I/O
``ClientProtocol``: it makes the opening handshake and checks the answer (subprotocol,
permessage-deflate negotiated as ``websockets.connect(compression="deflate")`` offers it,
which is what browsers offer), parses and checks every frame, inflates compressed
messages, answers pings and closes. A message is handled where its bytes arrive, in
``data_received``: parsed by orjson (which rejects invalid UTF-8 as websockets' own
decoding does; such a message fails the socket with 1007) and checked at once, with no
task, future or queue per message or per socket. Receipts in one ``data_received`` share
its clock reading.

Measured at 10,000 subscribers and 1,000 updates/s (bench/RESULTS.md, 2026-12-07 17:42 and
17:51, a machine busy with others' work): websockets' asyncio client (a task per socket,
``async for raw in ws``: its assembler, queue and a task wake-up per message) took 101 us
of CPU a received event, this one 79 us. In py-spy's samples of this one, websockets'
frame parsing and inflating are two thirds of the time in ``data_received``; in-process,
``ClientProtocol.receive_data`` takes ~16-19 us a ~230-byte compressed message, orjson
~2.3 us.
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
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import State
from websockets.typing import BytesLike, Subprotocol
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/, not the root, is first
    sys.path.insert(0, str(ROOT))

from bench._procs import raise_nofile  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - the gateway's dependencies include it
    uvloop = None  # type: ignore[assignment]

MAX_LINE = 1 << 26  # job and commands: a few KB; read with a generous limit anyway
MAX_SIZE = 2**20  # of an incoming message: websockets.connect's default
CLOSE_TIMEOUT = 20.0
ERROR_SAMPLES = 5
SUBPROTOCOL = Subprotocol("graphql-transport-ws")
PONG = b'{"type":"pong"}'
_TEXT, _CONT = Opcode.TEXT, Opcode.CONT
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


class Subscriber:
    __slots__ = (
        "index", "device", "ws", "ready", "setup_ms", "first_version", "last", "last_at",
        "events", "snapshots", "coalesced", "backwards", "errors", "closed", "converged_at",
    )

    def __init__(self, index: int, device: str) -> None:
        self.index = index
        self.device = device
        self.ws: SubscriberSocket | None = None
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


class SubscriberSocket(asyncio.Protocol):
    """One subscriber's WebSocket: websockets' sans-I/O client protocol fed from
    ``data_received``, every message handled there (see the module docstring).

    Setup runs connection_init -> connection_ack -> subscribe -> the first SNAPSHOT, each
    step sent as the answer to the one before arrives; ``subscribed`` resolves with the
    SNAPSHOT (or fails). From then on every ``next`` goes to ``Clients.on_next``."""

    def __init__(self, clients: Clients, sub: Subscriber, conn: ClientProtocol,
                 init: bytes, subscribe: bytes, started: float) -> None:
        self.clients = clients
        self.sub = sub
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self._init = init
        self._subscribe = subscribe
        self._step = "handshake"  # handshake, ack, snapshot, "open"; "ended": reads no more
        self._started = started  # perf_counter before the TCP connection
        self._parts: list[BytesLike] | None = None  # a fragmented message's frames so far
        self._binary = False  # the fragmented message is binary
        self.subscribed: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future())
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.conn.connect()
        request.headers.setdefault("User-Agent", USER_AGENT)
        self.conn.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        self._flush()  # pongs, the close handshake's answer
        events = conn.events_received()
        if not events:
            return
        now = time.time()
        for event in events:
            if type(event) is Frame:
                if event.opcode in _DATA and self._step != "ended":
                    self._frame(event, now)
            elif isinstance(event, Response):
                self._handshake()

    def eof_received(self) -> None:
        self.conn.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.receive_eof()  # idempotent; marks the connection closed
        if not self.subscribed.done():
            self.subscribed.set_exception(
                self.conn.handshake_exc or ConnectionError(f"lost during setup: {exc!r}"))
        elif not self.clients.closing and self.sub.closed is None:
            close = self.conn.close_exc
            code = close.rcvd.code if close.rcvd else None
            if close.rcvd is not None and code in (CloseCode.NORMAL_CLOSURE,
                                                   CloseCode.GOING_AWAY):
                self.sub.closed = f"closed by the server code={code}"
            else:
                self.sub.closed = f"{type(close).__name__} code={code}"
            if exc is not None:
                self.sub.closed += f" ({exc!r})"
            self.clients.sample(f"subscriber {self.sub.index}: {self.sub.closed}")
        if not self.lost.done():
            self.lost.set_result(None)

    # -- frames and messages ------------------------------------------------------------

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.conn.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the end of the stream: half-close
                with contextlib.suppress(Exception):
                    transport.write_eof()
            else:  # pragma: no cover - TLS only
                transport.close()

    def send(self, text: bytes) -> None:
        if self.conn.state is State.OPEN:
            self.conn.send_text(text)
            self._flush()

    def _handshake(self) -> None:
        if self.conn.handshake_exc is not None:
            if not self.subscribed.done():
                self.subscribed.set_exception(self.conn.handshake_exc)
            return
        if self.conn.subprotocol != SUBPROTOCOL:
            self._fail_setup(f"subprotocol {self.conn.subprotocol!r} negotiated")
            return
        self._step = "ack"
        self.send(self._init)

    def _frame(self, frame: Frame, now: float) -> None:
        """A data frame: a whole message, or a fragment of one (RFC 6455 §5.4; websockets
        has checked the fragments' order)."""
        if frame.opcode is _CONT:
            assert self._parts is not None
            self._parts.append(frame.data)
            if not frame.fin:
                return
            data: BytesLike = b"".join(self._parts)
            self._parts = None
            binary = self._binary
        elif not frame.fin:
            self._parts = [frame.data]
            self._binary = frame.opcode is not _TEXT
            return
        else:
            data = frame.data
            binary = frame.opcode is not _TEXT
        if binary:
            self._wrong(f"a binary message of {len(data)} bytes")
            return
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            try:
                bytes(data).decode()
            except UnicodeDecodeError as bad:  # as websockets' own decoding fails it
                self.conn.fail(CloseCode.INVALID_DATA, f"{bad.reason} at position {bad.start}")
                self._flush()
                self._ended(f"invalid UTF-8: {bad}")
            else:
                self._ended(f"JSONDecodeError: {exc}")
            return
        if self._step == "open":
            self.clients.on_message(self, message, now)
        else:
            self._setup_message(message, now)

    def _setup_message(self, message: Any, now: float) -> None:
        if self._step == "ack":
            if not isinstance(message, dict) or message.get("type") != "connection_ack":
                self._fail_setup(f"expected connection_ack, got {str(message)[:300]}")
                return
            self._step = "snapshot"
            self.send(self._subscribe)
            return
        event = _event(message, self.clients.field) if isinstance(message, dict) else None
        if event is None or event.get("kind") != "SNAPSHOT":
            self._fail_setup(f"expected a SNAPSHOT first, got {str(message)[:300]}")
            return
        # Set here, not where the setup is awaited: messages after the SNAPSHOT in the
        # same read are handled before that resumes.
        sub = self.sub
        sub.setup_ms = (time.perf_counter() - self._started) * 1e3
        sub.first_version = sub.last = _version_written(event)[0]
        sub.last_at = now
        sub.snapshots = 1
        sub.ready = True
        self._step = "open"
        self.subscribed.set_result(None)

    def _wrong(self, text: str) -> None:
        self.sub.errors += 1
        self.clients.sample(f"subscriber {self.sub.index}: unexpected {text[:300]}")

    def _fail_setup(self, text: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(text))
        self.close()

    def _ended(self, why: str) -> None:
        """A message it cannot read ends the subscriber, as it ended its reading task."""
        self._step = "ended"
        if not self.subscribed.done():
            self._fail_setup(why)
            return
        if self.sub.closed is None:
            self.sub.closed = why
            self.clients.sample(f"subscriber {self.sub.index}: {why}")
        self.close()

    def close(self) -> None:
        """Starts the closing handshake (1000); the server then closes the TCP connection."""
        if self.conn.state is State.OPEN:
            self.conn.send_close(CloseCode.NORMAL_CLOSURE)
            self._flush()
        elif self.conn.state is State.CONNECTING and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Clients:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.field: str = job["field"]
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
                        sub.ws.abort()
                    sub.ws = None

        await asyncio.gather(*(one(sub) for sub in self.subs))
        return time.perf_counter() - started

    async def _open(self, sub: Subscriber) -> None:
        started = time.perf_counter()
        uri = parse_uri(self.job["url"])
        compression = self.job.get("compression")
        if compression not in ("deflate", None):
            raise ValueError(f"unsupported compression: {compression}")
        conn = ClientProtocol(
            uri, subprotocols=[SUBPROTOCOL], max_size=MAX_SIZE,
            extensions=enable_client_permessage_deflate(None) if compression else None)
        init = orjson.dumps({
            "type": "connection_init", "payload": {"Authorization": f"Bearer {self.job['key']}"},
        })
        subscribe = orjson.dumps({
            "id": "1", "type": "subscribe",
            "payload": {"query": self.job["query"], "variables": {"ids": [sub.device]}},
        })
        loop = asyncio.get_running_loop()
        _, ws = await loop.create_connection(
            lambda: SubscriberSocket(self, sub, conn, init, subscribe, started), uri.host, uri.port)
        sub.ws = ws
        await ws.subscribed

    # -- receiving ---------------------------------------------------------------------

    def on_message(self, ws: SubscriberSocket, message: Any, now: float) -> None:
        """One message after the first SNAPSHOT, received at ``now`` (unix s)."""
        sub = ws.sub
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "next":
            self.on_next(sub, message, now)
        elif kind == "ping":
            ws.send(PONG)
        elif kind != "pong":
            sub.errors += 1
            self.sample(f"subscriber {sub.index}: unexpected {str(message)[:300]}")

    def on_next(self, sub: Subscriber, message: dict[str, Any], now: float) -> None:
        payload = message.get("payload") or {}
        if payload.get("errors"):
            sub.errors += 1
            self.sample(f"subscriber {sub.index}: errors {str(payload['errors'])[:300]}")
            return
        event = (payload.get("data") or {}).get(self.field) or {}
        version, written = _version_written(event)
        kind = event.get("kind")
        last = sub.last
        if kind == "SNAPSHOT":
            sub.snapshots += 1
        else:
            sub.events += 1
            if written is not None:
                ms = now * 1e3 - written
                self.samples.append(now)
                self.samples.append(ms)
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

    def sample(self, text: str) -> None:
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
        """Starts every socket's closing handshake at once and waits for the server to
        close the connections; those it has not closed by ``CLOSE_TIMEOUT`` are aborted."""
        self.closing = True
        sockets = [sub.ws for sub in self.subs if sub.ws is not None]
        for ws in sockets:
            ws.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(ws.lost for ws in sockets)), CLOSE_TIMEOUT)
        for ws in sockets:
            if not ws.lost.done():
                ws.abort()


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
