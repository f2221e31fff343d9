"""Interval and DateTime parsing, ID parsing and cursors (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from gateway.errors import BadUserInput
from resolvers.pagination import decode_cursor, encode_cursor
from resolvers.scalars import format_interval, parse_datetime, parse_id, parse_interval


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)), ("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)),
    ("1d", timedelta(days=1)), ("7d", timedelta(days=7)), ("PT5M", timedelta(minutes=5)),
    ("P1DT2H", timedelta(days=1, hours=2)), ("PT0.5S", timedelta(milliseconds=500)),
    ("P2W", timedelta(weeks=2)),
])
def test_interval_parses_short_and_iso_forms(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize("text", ["", "5x", "P", "PT", "-5m", "0s", "PT0S", "5", 5, "1dT"])
def test_interval_rejects_malformed_values(text: object) -> None:
    with pytest.raises(BadUserInput):
        parse_interval(text)


@pytest.mark.parametrize(("value", "text"), [
    (timedelta(minutes=5), "5m"), (timedelta(hours=24), "24h"), (timedelta(days=7), "7d"),
    (timedelta(seconds=90), "90s"), (timedelta(hours=2), "2h"),
])
def test_interval_serializes_to_the_short_form(value: timedelta, text: str) -> None:
    assert format_interval(value) == text
    assert parse_interval(text) == value


@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00", "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59.999999Z", "9999-12-31T23:00:00-01:00",
])
def test_datetimes_the_stores_cannot_keep_are_bad_input(text: str) -> None:
    # Python's first and last instants travel to PostgreSQL as -infinity / infinity and
    # come back without an offset; those beyond them in UTC cannot be sent at all.
    with pytest.raises(BadUserInput, match="out of range"):
        parse_datetime(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("0001-01-01T00:00:00.000001Z", datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ("0001-01-01T00:30:00-01:00", datetime(1, 1, 1, 1, 30, tzinfo=UTC)),
    ("9999-12-31T23:59:59.999998Z", datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC)),
    ("2026-11-26T19:00:00+14:00", datetime(2026, 11, 26, 5, 0, tzinfo=UTC)),
])
def test_datetimes_next_to_the_ends_of_the_range_parse(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


def test_ids_must_be_uuids() -> None:
    device = uuid4()
    assert parse_id(str(device)) == device
    with pytest.raises(BadUserInput, match="Malformed deviceId"):
        parse_id("not-a-uuid", "deviceId")


def test_cursor_round_trips_and_rejects_garbage() -> None:
    created, row = datetime(2026, 11, 26, 19, 0, tzinfo=UTC), uuid4()
    assert decode_cursor(encode_cursor(created, row)) == (created, row)
    assert decode_cursor(None) is None
    for garbage in ("!!!", "Zm9v", ""):
        with pytest.raises(BadUserInput):
            decode_cursor(garbage)
