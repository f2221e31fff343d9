"""day_runs: the days a batch of readings asks partitions for (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gateway.stores.telemetry import day_runs


def _at(*args: int, tz: timezone = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def test_a_span_of_a_week_or_less_is_asked_for_whole() -> None:
    first, last = _at(2026, 12, 1, 23), _at(2026, 12, 8, 22)
    assert day_runs(first, last, iter(())) == [(first, last)]  # times not even read


def test_a_wider_batch_asks_for_its_runs_of_consecutive_days() -> None:
    times = [_at(2026, 12, 8, 10), _at(2000, 1, 1, 12), _at(2026, 12, 7, 1),
             _at(2026, 12, 8, 9), _at(2000, 1, 3)]
    assert day_runs(min(times), max(times), times) == [
        (_at(2000, 1, 1), _at(2000, 1, 1)), (_at(2000, 1, 3), _at(2000, 1, 3)),
        (_at(2026, 12, 7), _at(2026, 12, 8))]


def test_days_are_utc_days() -> None:
    minus_one = timezone(timedelta(hours=-1))
    times = [_at(1999, 12, 31, 23, 30, tz=minus_one), _at(2026, 12, 8, 0, 30, tz=minus_one)]
    assert day_runs(min(times), max(times), times) == [
        (_at(2000, 1, 1), _at(2000, 1, 1)), (_at(2026, 12, 8), _at(2026, 12, 8))]
