"""Input rules shared by the mutations: every violation is BAD_USER_INPUT naming the field."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.errors import BadUserInput, LimitExceeded

METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
MAX_LABELS = 32
MAX_CAPABILITIES = 64
MAX_JSON_BYTES = 64 * 1024
# Readings beyond this magnitude are refused: the 5-minute rollup keeps a sum of squares
# (for stddev), and squares of values near the float limit overflow PostgreSQL's float8.
# 1e100 squared, summed a billion times, is still far inside it; no sensor reads 1e100.
MAX_READING = 1e100


def storable_time(value: datetime) -> bool:
    """Whether the stores keep this instant as it is. asyncpg sends Python's first and
    last instants (0001-01-01T00:00:00Z, 9999-12-31T23:59:59.999999Z) as PostgreSQL's
    -infinity and infinity, which come back as datetimes without an offset (a revocation
    cut-off of 0001-01-01T00:00:00Z failed every later read of it, test_fuzz; a reading
    then asked for partitions from -infinity until the store timed out), and one beyond
    them in UTC (0001-01-01T00:30:00+01:00) cannot be sent at all. Only years 1 and 9999
    need the check."""
    try:
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    except OverflowError:
        return False
    return datetime.min < utc < datetime.max


def text(value: str | None, field: str, *, max_len: int, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise BadUserInput(f"{field} is required", argument=field)
        return None
    stripped = value.strip()
    if not stripped:
        raise BadUserInput(f"{field} must not be blank", argument=field)
    if len(stripped) > max_len:
        raise BadUserInput(f"{field} is longer than {max_len} characters", argument=field)
    if any(unicodedata.category(ch) == "Cc" for ch in stripped):
        raise BadUserInput(f"{field} must not contain control characters", argument=field)
    return stripped


def labels(values: list[str] | None, field: str = "input.labels") -> list[str] | None:
    if values is None:
        return None
    if len(values) > MAX_LABELS:
        raise BadUserInput(f"{field}: at most {MAX_LABELS} labels", argument=field)
    cleaned = [text(v, field, max_len=64, required=True) for v in values]
    return list(dict.fromkeys(v for v in cleaned if v is not None))


def metric(value: str, field: str) -> str:
    if not METRIC.match(value):
        raise BadUserInput(
            f"{field}: {value!r} is not a metric name (a letter, then up to 63 letters, digits "
            "or _ . : -)", argument=field,
        )
    return value


def json_size(value: Any, field: str) -> int:
    """Encoded size of a client JSON value; numbers beyond 64 bits are refused here, since
    no store (nor the response encoder) could round-trip them."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        raise BadUserInput(
            f"{field} holds a number outside the 64-bit range", argument=field
        ) from None


def json_object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadUserInput(f"{field} must be a JSON object", argument=field)
    if json_size(value, field) > MAX_JSON_BYTES:
        raise LimitExceeded(f"{field} is larger than {MAX_JSON_BYTES} bytes", argument=field)
    return value


def capabilities(values: list[Any] | None, field: str = "input.capabilities"
                 ) -> list[dict[str, Any]] | None:
    """Capability inputs as stored JSON objects, one per metric."""
    if values is None:
        return None
    if len(values) > MAX_CAPABILITIES:
        raise BadUserInput(f"{field}: at most {MAX_CAPABILITIES} capabilities", argument=field)
    seen: set[str] = set()
    out = []
    for n, cap in enumerate(values):
        name = metric(cap.metric, f"{field}[{n}].metric")
        if name in seen:
            raise BadUserInput(f"{field}: metric {name!r} appears twice", argument=field)
        seen.add(name)
        if cap.min is not None and cap.max is not None and cap.min > cap.max:
            raise BadUserInput(f"{field}[{n}]: min is greater than max", argument=field)
        entry: dict[str, Any] = {"metric": name}
        for key in ("unit", "min", "max", "description"):
            value = getattr(cap, key)
            if value is not None:
                entry[key] = value
        out.append(entry)
    return out
