"""``POST /ingest``: bulk telemetry as NDJSON or CSV, streamed into one transaction.

Lines are parsed as they arrive and checked by the one reading check both ingest routes
share (``gateway.writes.readings``).
Good readings are written in batches, binary-COPY'd into ``readings`` by
``gateway.writes.bulk_ingest`` while the next batch is parsed, all in the request's one
transaction; duplicates are skipped, and the response, sent after COMMIT, counts
accepted, duplicate and rejected readings (with line numbers). Memory is bounded by two
batches, not the body. A body over the size or line limit is refused whole (413) with
nothing committed; a bad line is rejected alone.

Who may call it is the rule declared on ``ingestTelemetry`` (``resolvers.permissions``,
handed over by ``create_app`` as ``ingest_rule``): a role that may write, for any device of
its tenant, or a device (API key, JWT or ``Authorization: Basic base64(<device id>:
<secret>)``) for its own readings only; its lines for other devices are rejected one by one.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from gateway.auth.callers import Caller
from gateway.errors import GatewayError
from gateway.http import rate_limit
from gateway.http import spec as http_spec
from gateway.http.address_limit import AuthFailuresLimited, authenticate_limited
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.base import translate_errors
from gateway.writes.bulk_ingest import Latest, Record, Writer
from gateway.writes.reading_announcements import announce
from gateway.writes.readings import LastSeen, ReadingCheck, device_problem
from gateway.writes.telemetry import count_ingest

if TYPE_CHECKING:
    from resolvers.permissions import Rule

BATCH = 20_000
MAX_REPORTED = 1_000  # rejected lines listed one by one; the rest are only counted
CSV_COLUMNS = ("deviceId", "metric", "time", "value")


class Refused(Exception):
    """The whole request is refused: nothing is committed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Outcome:
    accepted: int = 0
    valid: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_count: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append({"line": line, "reason": reason})

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted, "duplicates": self.valid - self.accepted,
            "rejected": self.rejected, "rejectedCount": self.rejected_count,
            "rejectedTruncated": self.rejected_count > len(self.rejected),
        }


class Batch:
    """Readings parsed from lines, waiting for their devices to be checked and written.
    Per line this keeps to one tuple and a few C-level calls: at a million lines a
    microsecond a line is a second (bench/ingest.py)."""

    def __init__(self, stores: Stores, caller: Caller, own: UUID | None,
                 outcome: Outcome) -> None:
        self._stores = stores
        self._caller = caller
        self._own = own  # the one device a device caller may write for
        self._outcome = outcome
        self._devices: dict[str, UUID | str] = {}  # device id text -> id, or why refused
        self._check = ReadingCheck()
        self._pending: list[tuple[int, str, str, datetime, float]] = []
        self.last_seen = LastSeen()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, line: int, device: Any, metric: Any, time: Any, value: Any) -> None:
        if type(device) is not str or not device:
            self._outcome.reject(line, "deviceId is missing")
            return
        parsed_time = _time(time)
        parsed_value = value if type(value) is float else _number(value)
        problem = self._check.problem(metric, parsed_time, parsed_value)
        if problem is not None:
            self._outcome.reject(line, problem)
        else:  # no problem: metric is a str, parsed_time and parsed_value are set
            self._pending.append(
                (line, device, metric, parsed_time, parsed_value))  # type: ignore[arg-type]

    async def flush(self, writer: Writer) -> None:
        """Checks the devices not seen before (one registry query), then hands the batch
        to the writer (which writes it while the next one is parsed)."""
        pending, self._pending = self._pending, []
        unseen = {p[1] for p in pending} - self._devices.keys()
        if unseen:
            await self._resolve(unseen)
        tenant, devices, reject = self._caller.tenant_id, self._devices, self._outcome.reject
        records: list[Record] = []
        latest: Latest = {}
        last_seen = self.last_seen
        for line, device_text, metric, time, value in pending:
            device = devices[device_text]
            if type(device) is str:
                reject(line, device)
                continue
            assert isinstance(device, UUID)
            records.append((tenant, device, metric, time, value))
            key = (device, metric)
            if key not in latest or latest[key][0] < time:
                latest[key] = (time, value)
        for (device, _), (time, _) in latest.items():
            last_seen.saw(device, time)
        if records:
            times = [r[3] for r in records]
            self._outcome.valid += len(records)
            await writer.submit(records, min(times), max(times), latest)

    async def _resolve(self, texts: set[str]) -> None:
        ids: dict[str, UUID] = {}
        for text in texts:
            try:
                ids[text] = UUID(text)
            except ValueError:
                self._devices[text] = "deviceId is not a valid ID"
        if not ids:
            return
        own = self._own
        rows = await self._stores.registry.devices_by_ids(self._caller.tenant_id,
                                                          list(ids.values()))
        for (text, device), row in zip(ids.items(), rows, strict=True):
            self._devices[text] = device_problem(row, device, own) or device


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


async def _chunks(request: Request, settings: Settings
                  ) -> AsyncIterator[tuple[int, list[bytes]]]:
    """The body's complete lines, a received chunk at a time, with the number of the line
    before the first; enforces the size and line limits as the bytes arrive."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.ingest_max_bytes:
        raise Refused(413, "LIMIT_EXCEEDED",
                      f"Body exceeds the limit of {settings.ingest_max_bytes} bytes")
    received, number, rest = 0, 0, b""
    async for chunk in request.stream():
        received += len(chunk)
        if received > settings.ingest_max_bytes:
            raise Refused(413, "LIMIT_EXCEEDED",
                          f"Body exceeds the limit of {settings.ingest_max_bytes} bytes")
        *complete, rest = (rest + chunk).split(b"\n")
        _check_line_limit(number, complete, settings.ingest_max_lines)
        yield number, complete
        number += len(complete)
    if rest:
        _check_line_limit(number, [rest], settings.ingest_max_lines)
        yield number, [rest]


def _check_line_limit(before: int, lines: list[bytes], limit: int) -> None:
    # Blank lines are numbered but do not count against the limit beyond it.
    if before + len(lines) > limit and any(
            line.strip() for line in lines[max(0, limit - before):]):
        raise Refused(413, "LIMIT_EXCEEDED", f"Body exceeds the limit of {limit} lines")


async def _parse(
    request: Request, settings: Settings, kind: str, batch: Batch, outcome: Outcome,
) -> AsyncIterator[None]:
    """Feeds every line into ``batch``; yields whenever the batch is full."""
    columns: dict[str, int] | None = None
    loads, decode_error, add = orjson.loads, orjson.JSONDecodeError, batch.add
    async for before, lines in _chunks(request, settings):
        for number, raw in enumerate(lines, before + 1):
            if not raw or raw.isspace():
                continue
            if kind == "ndjson":
                try:
                    item = loads(raw)  # orjson takes bytes, checks UTF-8, skips \r
                except decode_error:
                    outcome.reject(number, _not_json(raw))
                    continue
                if type(item) is not dict:
                    outcome.reject(number, "line is not a JSON object")
                    continue
                get = item.get
                add(number, get("deviceId"), get("metric"), get("time"), get("value"))
            else:
                try:
                    text = raw.decode().rstrip("\r")
                except UnicodeDecodeError:
                    outcome.reject(number, "line is not UTF-8")
                    continue
                fields = next(csv.reader([text])) if '"' in text else text.split(",")
                if columns is None:
                    columns = _csv_header(fields)
                    continue
                if len(fields) != len(columns):
                    outcome.reject(number,
                                   f"expected {len(columns)} fields, got {len(fields)}")
                    continue
                add(number, *(fields[columns[c]] for c in CSV_COLUMNS))
            if len(batch) >= BATCH:
                yield


def _not_json(raw: bytes) -> str:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return "line is not UTF-8"
    return "line is not JSON"


def _csv_header(fields: list[str]) -> dict[str, int]:
    names = [f.strip() for f in fields]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing or len(set(names)) != len(names):
        raise Refused(400, "BAD_USER_INPUT",
                      "CSV must start with the header line deviceId,metric,time,value")
    return {name: names.index(name) for name in CSV_COLUMNS}


def _kind(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in ("application/x-ndjson", "application/jsonl", "application/json-seq"):
        return "ndjson"
    if media == "text/csv":
        return "csv"
    raise Refused(415, "BAD_USER_INPUT",
                  "Content-Type must be application/x-ndjson or text/csv")


async def _caller(request: Request, stores: Stores) -> tuple[Caller, UUID | None]:
    """The caller (Basic for a device, an API key or a JWT), admitted by the rule declared
    on ``ingestTelemetry``, and the one device it may write for (None: any)."""
    caller = await authenticate_limited(
        stores, request.state.settings, getattr(request.state, "address_limit", None),
        request.headers.get("authorization"), request.client.host if request.client else None)
    rule: Rule = request.state.ingest_rule
    return caller, rule.admit(caller, "POST /ingest")


async def ingest_endpoint(request: Request) -> Response:
    stores: Stores = request.state.stores
    settings: Settings = request.state.settings
    try:
        caller, own = await _caller(request, stores)
        await rate_limit.take(stores.shadows, settings, caller)
        kind = _kind(request)
        outcome = await _ingest(request, stores, settings, caller, own, kind)
    except (rate_limit.RateLimited, AuthFailuresLimited) as limited:
        return http_spec.error_response(limited, 429, None, limited.headers)
    except Refused as refused:
        return _error(refused.status, refused.code, refused.message)
    except GatewayError as error:
        status = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403,
                  "STORE_UNAVAILABLE": 503}.get(error.code, 400)
        return _error(status, error.code, error.message)
    except ClientDisconnect:
        return Response(status_code=499)  # nobody to read it; the transaction rolled back
    return JSONResponse(outcome.as_json())


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]},
                        status_code=status)


async def _ingest(
    request: Request, stores: Stores, settings: Settings, caller: Caller, own: UUID | None,
    kind: str,
) -> Outcome:
    outcome = Outcome()
    batch = Batch(stores, caller, own, outcome)
    telemetry = stores.telemetry
    with translate_errors("telemetry"):
        async with telemetry.acquire() as conn, conn.transaction():
            writer = Writer(conn, telemetry, caller.tenant_id)
            try:
                async for _ in _parse(request, settings, kind, batch, outcome):
                    await batch.flush(writer)
                await batch.flush(writer)
                await writer.finish()
            except BaseException:
                await writer.abandon()  # the connection must be idle for the rollback
                raise
            outcome.accepted = writer.accepted
    if writer.span is not None and writer.accepted:
        telemetry.wrote(*writer.span)  # committed: TimescaleDB refreshes what lies behind
    count_ingest(outcome.accepted, outcome.valid - outcome.accepted, outcome.rejected_count)
    await batch.last_seen.record(stores, caller.tenant_id)
    await announce(stores, caller.tenant_id, writer.latest)  # what was inserted, committed
    return outcome
