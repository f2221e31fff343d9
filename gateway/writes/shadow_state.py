"""Shadow document rules shared by reads and writes, per AWS IoT Device Shadow."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from gateway.errors import BadUserInput, LimitExceeded, VersionConflict
from gateway.stores.shadows import ShadowDoc
from gateway.writes.merge_patch import merge_patch
from gateway.writes.validate import json_size

_MISSING = object()
_PLAIN = frozenset((str, int, float, bool))


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
        # Two strings, numbers or booleans of one class, most of a state, are equal as JSON
        # exactly when they are equal in Python: no json_equal call for them.
        kind = want.__class__
        if kind in _PLAIN and have.__class__ is kind:
            if have != want:
                out[key] = want
            continue
        if isinstance(want, dict) and isinstance(have, dict):
            nested = delta(want, have)
            if nested:
                out[key] = nested
        elif have is _MISSING or not json_equal(want, have):
            out[key] = want
    return out


MAX_STATE_BYTES = 8 * 1024
MAX_DEPTH = 6
MAX_KEY_LENGTH = 128


def check_patch(patch: Any, field: str) -> dict[str, Any] | None:
    """A desired/reported patch must be a JSON object within the depth and key limits."""
    if patch is None:
        return None
    if not isinstance(patch, dict):
        raise BadUserInput(f"{field} must be a JSON object", argument=field)
    _check_shape(patch, field, 1)
    json_size(patch, field)
    return patch


def _check_shape(value: Any, field: str, depth: int) -> None:
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise LimitExceeded(
                f"{field} nests deeper than {MAX_DEPTH} levels", argument=field,
                limit="shadowDepth", maximum=MAX_DEPTH,
            )
        for key, item in value.items():
            if len(key) > MAX_KEY_LENGTH:
                raise LimitExceeded(
                    f"{field}: key {key[:32]!r}... is longer than {MAX_KEY_LENGTH} characters",
                    argument=field, limit="shadowKeyLength", maximum=MAX_KEY_LENGTH,
                )
            _check_shape(item, field, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_shape(item, field, depth + 1)


def _stamp(
    metadata: Any, before: Any, patch: dict[str, Any], after: dict[str, Any], timestamp: int
) -> dict[str, Any]:
    """The metadata of ``after`` (``before`` with ``patch`` merged in), same shape as it:
    each leaf the patch wrote gets {timestamp}, untouched keys keep theirs, deleted keys lose
    theirs, and a key that turned from leaf to object (or back) gets metadata of its new
    shape rather than a mix of both."""
    old = metadata if isinstance(metadata, dict) and isinstance(before, dict) and before else {}
    out: dict[str, Any] = {}
    for key, value in after.items():
        if key not in patch:
            if key in old:
                out[key] = old[key]
        elif isinstance(value, dict) and value:
            prior = before.get(key) if isinstance(before, dict) else None
            out[key] = _stamp(old.get(key), prior, patch[key], value, timestamp)
        else:
            out[key] = {"timestamp": timestamp}
    return out


def apply_update(
    current: ShadowDoc | None, last_version: int, *, desired: dict[str, Any] | None,
    reported: dict[str, Any] | None, expected_version: int | None, device_id: UUID,
    now: datetime,
) -> ShadowDoc:
    """The shadow after one accepted update, or VERSION_CONFLICT / LIMIT_EXCEEDED."""
    if expected_version is not None and expected_version != last_version:
        raise VersionConflict(
            f"Shadow of device {device_id} is at version {last_version}, not {expected_version}",
            currentVersion=last_version, expectedVersion=expected_version,
        )
    state_desired = current.desired if current else {}
    state_reported = current.reported if current else {}
    metadata = current.metadata if current else {}
    timestamp = int(now.timestamp())
    if desired is not None:
        merged = merge_patch(state_desired, desired)
        metadata = {**metadata, "desired": _stamp(
            metadata.get("desired"), state_desired, desired, merged, timestamp)}
        state_desired = merged
    if reported is not None:
        merged = merge_patch(state_reported, reported)
        metadata = {**metadata, "reported": _stamp(
            metadata.get("reported"), state_reported, reported, merged, timestamp)}
        state_reported = merged
    size = len(orjson.dumps({"desired": state_desired, "reported": state_reported}))
    if size > MAX_STATE_BYTES:
        raise LimitExceeded(
            f"Shadow state would be {size} bytes; the limit is {MAX_STATE_BYTES}",
            limit="shadowStateBytes", maximum=MAX_STATE_BYTES,
        )
    return ShadowDoc(
        device_id=device_id, version=last_version + 1, desired=state_desired,
        reported=state_reported, metadata=metadata, updated_at=now,
    )
