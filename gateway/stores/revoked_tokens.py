"""The revoked JWTs this process refuses: a copy of the registry's live ``revoked_tokens``
rows, so checking a token costs no round trip.

The copy is re-read every ``REFRESH`` seconds (one registry query per process, whatever
the traffic) and grows at once when a revocation is announced over Redis
(``gateway.live.hub``) or made by this replica. So a revoked token is refused on every
replica as soon as the announcement arrives, and within ``REFRESH`` seconds even if it
was lost. A revocation names one token (tenant, ``jti``) or a subject's tokens issued
before a time (tenant, ``sub``, ``iat`` earlier than the cut-off; a token without ``iat``
counts as issued before any cut-off).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

REFRESH = 30.0
RETRY = 1.0  # after a failed re-read, while the old copy still serves


@dataclass(frozen=True)
class TokenRevocation:
    tenant_id: UUID
    jti: str | None = None
    subject: str | None = None
    issued_before: float | None = None  # seconds since the epoch

    @classmethod
    def from_row(cls, row: Any) -> TokenRevocation:
        before: datetime | None = row["issued_before"]
        if before is not None and before.tzinfo is None:
            # PostgreSQL's -infinity or infinity, which asyncpg reads as datetime.min or
            # .max without an offset: the ends of the range, in UTC. The API refuses such
            # a cut-off (DateTime out of range); a row written otherwise must not fail
            # every re-read of the copy, and with it every JWT.
            before = before.replace(tzinfo=UTC)
        return cls(row["tenant_id"], row["jti"], row["subject"],
                   before.timestamp() if before is not None else None)

    def matches(self, tenant_id: UUID, jti: str | None, subject: str | None,
                issued_at: float | None) -> bool:
        if tenant_id != self.tenant_id:
            return False
        if self.jti is not None:
            return jti == self.jti
        return (subject is not None and subject == self.subject
                and self.issued_before is not None
                and (issued_at is None or issued_at < self.issued_before))

    def as_json(self) -> dict[str, Any]:
        return {"jti": self.jti, "subject": self.subject, "issuedBefore": self.issued_before}

    @classmethod
    def from_json(cls, tenant_id: UUID, data: dict[str, Any]) -> TokenRevocation:
        jti, subject, before = data.get("jti"), data.get("subject"), data.get("issuedBefore")
        if not (isinstance(jti, str) or (isinstance(subject, str)
                                         and isinstance(before, int | float))):
            raise ValueError("a token revocation names a jti, or a subject and a time")
        return cls(tenant_id, jti if isinstance(jti, str) else None,
                   subject if isinstance(subject, str) else None,
                   float(before) if isinstance(before, int | float) else None)


class RevokedTokens:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._jtis: set[tuple[UUID, str]] = set()
        self._cutoffs: dict[tuple[UUID, str], float] = {}
        self._next_read: float | None = None  # None: never read
        self._since_read: list[TokenRevocation] = []

    @property
    def loaded(self) -> bool:
        return self._next_read is not None

    def due(self) -> bool:
        return self._next_read is None or self._clock() >= self._next_read

    def reading(self) -> None:
        """A re-read starts: revocations added from now on survive its result. Other
        requests meanwhile use the current copy (no stampede of re-reads)."""
        self._since_read = []
        if self._next_read is not None:
            self._next_read = self._clock() + RETRY

    def replace(self, rows: Iterable[TokenRevocation]) -> None:
        self._jtis.clear()
        self._cutoffs.clear()
        for revocation in [*rows, *self._since_read]:
            self._apply(revocation)
        self._next_read = self._clock() + REFRESH

    def read_failed(self) -> None:
        if self._next_read is not None:
            self._next_read = self._clock() + RETRY

    def add(self, revocation: TokenRevocation) -> None:
        self._since_read.append(revocation)
        self._apply(revocation)

    def _apply(self, revocation: TokenRevocation) -> None:
        if revocation.jti is not None:
            self._jtis.add((revocation.tenant_id, revocation.jti))
        elif revocation.subject is not None and revocation.issued_before is not None:
            key = (revocation.tenant_id, revocation.subject)
            self._cutoffs[key] = max(self._cutoffs.get(key, 0.0), revocation.issued_before)

    def revoked(self, tenant_id: UUID, jti: str | None, subject: str | None,
                issued_at: float | None) -> bool:
        if jti is not None and (tenant_id, jti) in self._jtis:
            return True
        if subject is None:
            return False
        cutoff = self._cutoffs.get((tenant_id, subject))
        return cutoff is not None and (issued_at is None or issued_at < cutoff)
