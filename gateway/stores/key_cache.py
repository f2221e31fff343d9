"""What this process remembers of API-key lookups, so a known key costs no registry round
trip per request and a flood of one bad key costs one.

- ``VerifiedKeys``: rows the registry returned for a key. Served without asking for
  ``fresh_for`` seconds (``API_KEY_CACHE_TTL``, default 5); kept for ``grace`` seconds
  (``AUTH_OUTAGE_GRACE``) for use only while the registry is unreachable.
- ``BadKeys``: hashes the registry knew nothing of (unknown or revoked), refused from
  memory for ``fresh_for`` seconds.

A revocation is dropped at once: by the replica that committed it (``forget_ids`` before
it answers) and by every other one when the announcement arrives over Redis
(``gateway.live.hub``). An announcement lost while Redis is down leaves a revoked key
usable for at most ``fresh_for`` seconds on the replicas that had it cached.

Both are bounded (the oldest entry goes first) and per process; keys are held by their
sha256, never their secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

MAX_KEYS = 10_000


class VerifiedKeys:
    def __init__(self, grace: float, fresh_for: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._grace = grace
        self._fresh_for = fresh_for
        self._clock = clock
        self._rows: dict[bytes, tuple[float, Any]] = {}

    def remember(self, key_hash: bytes, row: Any) -> None:
        if max(self._grace, self._fresh_for) <= 0:
            return
        self._rows.pop(key_hash, None)  # re-inserted last: eviction drops the stalest
        self._rows[key_hash] = (self._clock(), row)
        if len(self._rows) > MAX_KEYS:
            del self._rows[next(iter(self._rows))]

    def forget(self, key_hash: bytes) -> None:
        self._rows.pop(key_hash, None)

    def forget_ids(self, key_ids: Iterable[UUID]) -> None:
        """Drops revoked keys (by id: a revocation names keys, not their secrets)."""
        gone = set(key_ids)
        if gone:
            self._drop(lambda row: row["id"] in gone)

    def forget_device(self, device_id: UUID) -> None:
        """Drops the keys of a decommissioned device (their rows say it was live)."""
        self._drop(lambda row: row.get("device_id") == device_id)

    def _drop(self, matches: Callable[[Any], bool]) -> None:
        for key_hash in [h for h, (_, row) in self._rows.items() if matches(row)]:
            del self._rows[key_hash]

    def fresh(self, key_hash: bytes) -> Any | None:
        """The row if the registry returned it within ``fresh_for`` seconds, else None."""
        return self._within(key_hash, self._fresh_for)

    def recent(self, key_hash: bytes) -> Any | None:
        """The row if verified within the outage grace period, else None."""
        return self._within(key_hash, self._grace)

    def _within(self, key_hash: bytes, seconds: float) -> Any | None:
        entry = self._rows.get(key_hash)
        if entry is None or self._clock() - entry[0] > seconds:
            return None
        return entry[1]


class BadKeys:
    def __init__(self, fresh_for: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._fresh_for = fresh_for
        self._clock = clock
        self._until: dict[bytes, float] = {}

    def add(self, key_hash: bytes) -> None:
        if self._fresh_for <= 0:
            return
        self._until.pop(key_hash, None)
        self._until[key_hash] = self._clock() + self._fresh_for
        if len(self._until) > MAX_KEYS:
            del self._until[next(iter(self._until))]

    def discard(self, key_hash: bytes) -> None:
        """A key just created with this hash (the embedded stack's known dev key)."""
        self._until.pop(key_hash, None)

    def __contains__(self, key_hash: bytes) -> bool:
        until = self._until.get(key_hash)
        if until is None:
            return False
        if until < self._clock():
            del self._until[key_hash]
            return False
        return True
