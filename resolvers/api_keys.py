"""API key management in the schema: ``apiKeys``, ``createApiKey``, ``revokeApiKey``, for
admins only. A key's secret appears once, in ``createApiKey``'s payload."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from gateway.auth import api_keys
from gateway.context import Info
from resolvers.pagination import PageInfo, check_page_size, decode_cursor, encode_cursor, page_info
from resolvers.permissions import allow
from resolvers.scalars import parse_id


@strawberry.enum(description="What a caller may do; see the role table in docs/auth-and-roles.md.")
class Role(Enum):
    ADMIN = strawberry.enum_value("admin", description="Everything in its tenant, API keys "
                                  "included.")
    OPERATOR = strawberry.enum_value("operator", description="Reads; writes devices, assets, "
                                     "shadows and telemetry.")
    VIEWER = strawberry.enum_value("viewer", description="Reads only.")
    DEVICE = strawberry.enum_value("device", description="One device: reads itself and its "
                                   "shadow, writes its reported state and its telemetry.")


@strawberry.type
class ApiKey:
    id: strawberry.ID
    name: str
    role: Role
    device_id: strawberry.ID | None = strawberry.field(
        description="The device a key of role DEVICE stands for.")
    created_at: datetime
    last_used_at: datetime | None = strawberry.field(
        description="When the key last authenticated a request, to the minute.")
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        device = row["device_id"]
        return cls(
            id=strawberry.ID(str(row["id"])), name=row["name"], role=Role(row["role"]),
            device_id=strawberry.ID(str(device)) if device else None,
            created_at=row["created_at"], last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
        )


@strawberry.input
class CreateApiKeyInput:
    name: str = strawberry.field(description="1 to 100 characters, for people to tell keys "
                                 "apart.")
    role: Role
    device_id: strawberry.ID | None = strawberry.field(
        default=None, description="Required for role DEVICE (the key then acts as that "
        "device); refused for other roles.")


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey
    secret: str = strawberry.field(
        description="The key, for 'Authorization: Bearer <secret>'. Shown once: only its "
        "hash is stored.")


@strawberry.type
class ApiKeyEdge:
    cursor: str
    node: ApiKey


@strawberry.type
class ApiKeyConnection:
    edges: list[ApiKeyEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class ApiKeyQuery:
    @strawberry.field(extensions=[allow("admin")],
                      description="The tenant's API keys, oldest first (admin only).")
    async def api_keys(
        self, info: Info, first: int | None = 50, after: str | None = None,
        include_revoked: bool = False,
    ) -> ApiKeyConnection | None:
        ctx = info.context
        size = check_page_size(first, ctx.settings.max_page_size)
        rows, total = await api_keys.page(
            ctx.stores.registry, ctx.tenant_id, first=size, after=decode_cursor(after),
            include_revoked=include_revoked)
        edges = [ApiKeyEdge(cursor=encode_cursor(r["created_at"], r["id"]),
                            node=ApiKey.from_row(r)) for r in rows[:size]]
        return ApiKeyConnection(
            edges=edges, total_count=total,
            page_info=page_info([e.cursor for e in edges], len(rows) > size, after))


@strawberry.type
class ApiKeyMutation:
    @strawberry.mutation(extensions=[allow("admin")],
                         description="A new API key of the caller's tenant (admin only).")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyPayload:
        ctx = info.context
        device = parse_id(input.device_id, "input.deviceId") if input.device_id else None
        made = await api_keys.create(ctx.stores.registry, ctx.tenant_id, name=input.name,
                                     role=str(input.role.value), device_id=device)
        return CreateApiKeyPayload(api_key=ApiKey.from_row(made.row), secret=made.secret)

    @strawberry.mutation(
        extensions=[allow("admin")],
        description="Revokes a key at once (admin only); the tenant's last active admin key "
        "is kept.")
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> ApiKey:
        ctx = info.context
        row = await api_keys.revoke(ctx.stores, ctx.tenant_id, parse_id(id))
        return ApiKey.from_row(row)
