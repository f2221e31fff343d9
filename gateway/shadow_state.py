"""Shadow document rules shared by reads and writes, per AWS IoT Device Shadow."""

from __future__ import annotations

from typing import Any

_MISSING = object()


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``, but ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def delta(desired: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    """The part of ``desired`` that ``reported`` does not match. Nested objects are compared
    key by key and keep their path; arrays and scalars are compared whole."""
    out: dict[str, Any] = {}
    for key, want in desired.items():
        if want is None:
            continue
        have = reported.get(key, _MISSING)
        if isinstance(want, dict) and isinstance(have, dict):
            nested = delta(want, have)
            if nested:
                out[key] = nested
        elif have is _MISSING or not json_equal(want, have):
            out[key] = want
    return out
