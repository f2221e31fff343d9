"""JWT revocation for a tenant's admins: one token by its ``jti``, or every token of a
subject (``sub``) issued before a time. Stored in the registry (``revoked_tokens``),
refused at once by this replica, announced over Redis so every replica refuses it and
closes the WebSockets opened with it (``gateway.live.sockets``)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from gateway.errors import BadUserInput
from gateway.live.sockets import announce_revocation
from gateway.stores import Stores
from gateway.stores.revoked_tokens import TokenRevocation

CLAIM_MAX = 200


def _claim(value: str, argument: str) -> str:
    if not 1 <= len(value) <= CLAIM_MAX:
        raise BadUserInput(f"{argument} must have 1 to {CLAIM_MAX} characters",
                           argument=argument)
    return value


async def revoke(
    stores: Stores, tenant_id: UUID, *, jti: str | None, subject: str | None,
    issued_before: datetime | None, expires_at: datetime | None,
) -> asyncpg.Record:
    """``jti``: that token of the tenant. ``subject``: its tokens issued before
    ``issued_before`` (default now). ``expires_at``: when the revoked tokens expire, after
    which the revocation is dropped (kept for ever without it)."""
    if (jti is None) == (subject is None):
        raise BadUserInput("Give input.jti (one token) or input.subject (a subject's "
                           "tokens), not both", argument="input")
    if jti is not None:
        if issued_before is not None:
            raise BadUserInput("input.issuedBefore goes with input.subject",
                               argument="input.issuedBefore")
        jti = _claim(jti, "input.jti")
    else:
        assert subject is not None
        subject = _claim(subject, "input.subject")
        issued_before = issued_before or datetime.now(UTC)
    row = await stores.registry.revoke_token(tenant_id, jti=jti, subject=subject,
                                             issued_before=issued_before,
                                             expires_at=expires_at)
    await announce_revocation(stores.shadows, tenant_id, [], None,
                              [TokenRevocation.from_row(row)])
    return row
