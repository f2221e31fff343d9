"""Custom scalars and argument parsing shared by the resolvers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import NewType
from uuid import UUID

import strawberry

from gateway.errors import BadUserInput
from gateway.writes.validate import storable_time
from resolvers.execution.leaf_coercion import unchanged

Interval = NewType("Interval", timedelta)

_SHORT = re.compile(r"^(\d+)(s|m|h|d|w)$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_interval(value: object) -> timedelta:
    if not isinstance(value, str):
        raise BadUserInput(f"Interval must be a string such as '5m' or 'PT5M', got {value!r}")
    text = value.strip()
    seconds: float
    if match := _SHORT.match(text):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    elif (match := _ISO.match(text)) and text not in ("P", "PT") and not text.endswith("T"):
        parts = match.groupdict(default="0")
        seconds = (
            int(parts["w"]) * 604800 + int(parts["d"]) * 86400 + int(parts["h"]) * 3600
            + int(parts["m"]) * 60 + float(parts["s"])
        )
    else:
        raise BadUserInput(
            f"Invalid Interval {value!r}: use 30s, 5m, 1h, 1d, 7d or an ISO-8601 duration"
        )
    try:
        interval = timedelta(seconds=seconds)
    except OverflowError:
        raise BadUserInput(f"Interval {value!r} is too long") from None
    # Checked after conversion: a sub-microsecond value rounds to zero.
    if interval <= timedelta(0):
        raise BadUserInput(f"Interval must be positive, got {value!r}")
    return interval


def format_interval(value: timedelta) -> str:
    """The shortest unit form; a single day stays ``24h``, as dashboards write it."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0 and not (unit == "d" and seconds == _UNITS["d"]):
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


INTERVAL_SCALAR = strawberry.scalar(
    name="Interval",
    description="A time span, on the wire a string. Output: the shortest of `<n>s`, `<n>m`, "
    "`<n>h`, `<n>d` (one day stays `24h`). Input: those, or an ISO-8601 duration such as "
    "`PT5M`. TypeScript: `string`.",
    serialize=format_interval,
    parse_value=parse_interval,
)


def parse_datetime(value: object) -> datetime:
    """RFC 3339 / ISO 8601 with the standard library's C parser (dateutil, Strawberry's
    default, costs ~40 µs a value, which dominates a 10,000-reading ingest)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.year in (1, 9999) and not storable_time(parsed):
                raise BadUserInput(
                    f"DateTime {value!r} is out of range: use a time after "
                    "0001-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999Z")
            return parsed
    raise BadUserInput(
        f"Invalid DateTime {value!r}: use RFC 3339, e.g. 2026-11-26T19:00:00Z"
    )


DATETIME_SCALAR = strawberry.scalar(
    name="DateTime",
    description="A point in time, on the wire an RFC 3339 string. Output: always with an "
    "offset, microseconds when not zero, e.g. `2026-11-26T19:00:00+00:00`. Input: RFC 3339 "
    "with an offset, e.g. `2026-11-26T19:00:00Z`, after 0001-01-01T00:00:00Z and before "
    "9999-12-31T23:59:59.999999Z. TypeScript: `string`.",
    serialize=lambda value: value.isoformat(),
    parse_value=parse_datetime,
)


def parse_id(value: object, what: str = "id") -> UUID:
    """A client-supplied ID as a UUID; anything else is BAD_USER_INPUT naming the argument."""
    try:
        return UUID(str(value))
    except ValueError:
        raise BadUserInput(
            f"Malformed {what}: {value!r} is not a valid ID", argument=what
        ) from None


JSON_SCALAR = strawberry.scalar(
    name="JSON",
    description="Any JSON value (object, array, string, number, boolean or null), sent and "
    "received as itself, not as a string. Objects such as Device.metadata and Shadow.desired "
    "are JSON objects. TypeScript: a JSON value type (docs/clients.md).",
    specified_by_url="https://ecma-international.org/publications-and-standards/standards/ecma-404/",
    serialize=unchanged,  # the planned fills then store dicts and lists as they are
    parse_value=lambda value: value,
)
