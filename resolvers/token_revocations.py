"""JWT revocation in the schema: ``revokeToken``, for admins only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from gateway.auth import jwt_revocation
from gateway.context import Info
from resolvers.permissions import allow


@strawberry.input(description="One token (`jti`) or a subject's tokens issued before a time "
                  "(`subject`, `issuedBefore`).")
class RevokeTokenInput:
    jti: str | None = strawberry.field(
        default=None, description="The token's `jti` claim: that token is refused.")
    subject: str | None = strawberry.field(
        default=None, description="The tokens' `sub` claim: those issued before "
        "`issuedBefore` are refused (a token without `iat` counts as issued before).")
    issued_before: datetime | None = strawberry.field(
        default=None, description="With `subject`; default now.")
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the revoked tokens expire: the revocation is kept "
        "until then (for ever without it).")


@strawberry.type(description="A JWT revocation of the caller's tenant.")
class TokenRevocation:
    id: strawberry.ID
    jti: str | None
    subject: str | None
    issued_before: datetime | None
    expires_at: datetime | None
    revoked_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> TokenRevocation:
        return cls(id=strawberry.ID(str(row["id"])), jti=row["jti"], subject=row["subject"],
                   issued_before=row["issued_before"], expires_at=row["expires_at"],
                   revoked_at=row["revoked_at"])


@strawberry.type
class TokenRevocationMutation:
    @strawberry.mutation(
        extensions=[allow("admin")],
        description="Revokes JWTs of the caller's tenant at once, on every replica, closing "
        "the WebSockets opened with them (admin only).")
    async def revoke_token(self, info: Info, input: RevokeTokenInput) -> TokenRevocation:
        ctx = info.context
        row = await jwt_revocation.revoke(
            ctx.stores, ctx.tenant_id, jti=input.jti, subject=input.subject,
            issued_before=input.issued_before, expires_at=input.expires_at)
        return TokenRevocation.from_row(row)
