"""The one reading check both ingest routes use: each reason, the future bound, and the
last-seen times moving forward only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from gateway.writes.readings import MAX_FUTURE, LastSeen, ReadingCheck, device_problem

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("metric", "time", "value", "reason"), [
    ("temperature", NOW, 21.5, None),
    ("9lives", NOW, 1.0, "metric '9lives' is not a metric name"),
    (7, NOW, 1.0, "metric 7 is not a metric name"),
    ("t", None, 1.0, "time is not an RFC 3339 date-time"),
    ("t", NOW + MAX_FUTURE, 1.0, None),
    ("t", NOW + MAX_FUTURE + timedelta(microseconds=1), 1.0,
     "time is more than 5 minutes in the future"),
    ("t", NOW, float("nan"), "value is not a finite number"),
    ("t", NOW, None, "value is not a finite number"),
    ("t", NOW, -1e300, "value is beyond 1e+100 in magnitude"),
])
def test_each_reason(metric: object, time: datetime | None, value: float | None,
                     reason: str | None) -> None:
    assert ReadingCheck(NOW).problem(metric, time, value) == reason


def test_device_reasons() -> None:
    device, other = uuid4(), uuid4()
    assert device_problem(None, device) == "unknown device"
    assert device_problem({"status": "ACTIVE"}, device) is None
    assert device_problem({"status": "DECOMMISSIONED"}, device) == "device is decommissioned"
    assert device_problem({"status": "ACTIVE"}, device, own=device) is None
    assert device_problem({"status": "ACTIVE"}, device, own=other) == (
        "a device may only write its own readings")


def test_last_seen_keeps_the_newest_time_per_device() -> None:
    a, b = uuid4(), uuid4()
    seen = LastSeen()
    for device, minutes in ((a, 3), (a, 1), (b, 2), (a, 5), (b, 0)):
        seen.saw(device, NOW + timedelta(minutes=minutes))
    assert seen.times == {a: NOW + timedelta(minutes=5), b: NOW + timedelta(minutes=2)}
