"""Shadow delta per AWS IoT rules (pure logic, no store)."""

from __future__ import annotations

from gateway.writes.shadow_state import delta, json_equal


def test_delta_keeps_only_differing_desired_keys() -> None:
    desired = {"mode": "run", "rate": 10, "led": "on"}
    reported = {"mode": "run", "rate": 1}
    assert delta(desired, reported) == {"rate": 10, "led": "on"}


def test_delta_keeps_nested_paths() -> None:
    desired = {"cfg": {"a": 1, "b": {"c": 2, "d": 3}}}
    reported = {"cfg": {"a": 1, "b": {"c": 2, "d": 4}}}
    assert delta(desired, reported) == {"cfg": {"b": {"d": 3}}}


def test_delta_compares_arrays_whole() -> None:
    assert delta({"l": [1, 2, 3]}, {"l": [1, 2]}) == {"l": [1, 2, 3]}
    assert delta({"l": [1, 2]}, {"l": [1, 2]}) == {}


def test_delta_replaces_when_types_differ() -> None:
    assert delta({"x": {"y": 1}}, {"x": 5}) == {"x": {"y": 1}}
    assert delta({"x": 5}, {"x": {"y": 1}}) == {"x": 5}


def test_json_equality_distinguishes_booleans_from_numbers() -> None:
    assert not json_equal(True, 1)
    assert json_equal(1, 1.0)
    assert delta({"on": True}, {"on": 1}) == {"on": True}
    assert delta({}, {"extra": 1}) == {}
