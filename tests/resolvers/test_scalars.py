"""Interval parsing, ID parsing and cursors (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from gateway.errors import BadUserInput
from resolvers.pagination import decode_cursor, encode_cursor
from resolvers.scalars import format_interval, parse_id, parse_interval


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
