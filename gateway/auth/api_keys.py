"""API key management for a tenant's admins: create (the secret returned once), revoke,
list. Keys are generated and hashed by ``gateway.auth.callers``; only the hash is stored, and the
secret is never logged (the request log holds no variables and no response bodies)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from gateway.auth.callers import hash_key, new_api_key
from gateway.auth.roles import ROLES
from gateway.errors import BadUserInput, NotFound
from gateway.live.sockets import announce_revocation
from gateway.stores import Stores
from gateway.stores.registry import RegistryStore

NAME_MAX = 100


@dataclass(frozen=True)
class NewKey:
    row: asyncpg.Record
    secret: str  # the key itself: returned to the caller once, never stored


def _name(raw: str) -> str:
    name = raw.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise BadUserInput(f"input.name must have 1 to {NAME_MAX} characters",
                           argument="input.name")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise BadUserInput("input.name must not contain control characters",
                           argument="input.name")
    return name


async def create(
    registry: RegistryStore, tenant_id: UUID, *, name: str, role: str, device_id: UUID | None
) -> NewKey:
    """A key of ``role``; a device key must name a live device of the tenant (it then
    acts as that device), and only a device key may name one."""
    if role not in ROLES:
        raise BadUserInput(f"input.role must be one of {', '.join(ROLES)}", argument="input.role")
    if role == "device" and device_id is None:
        raise BadUserInput("A key of role DEVICE needs input.deviceId: the device it stands for",
                           argument="input.deviceId")
    if role != "device" and device_id is not None:
        raise BadUserInput("input.deviceId is only for keys of role DEVICE",
                           argument="input.deviceId")
    secret = new_api_key()
    row = await registry.create_api_key(tenant_id, _name(name), hash_key(secret), role,
                                        device_id)
    if row is None:
        raise NotFound(f"No device {device_id}", argument="input.deviceId")
    return NewKey(row, secret)


async def revoke(stores: Stores, tenant_id: UUID, key_id: UUID) -> asyncpg.Record:
    """Revokes the key at once (every later request with it is UNAUTHENTICATED, and every
    replica closes the WebSockets it opened); revoking a revoked key changes nothing. The
    tenant's last active admin key is kept, so that the tenant cannot lock itself out of
    key management."""
    row = await stores.registry.revoke_api_key(tenant_id, key_id)
    if row is None:
        raise NotFound(f"No API key {key_id}", argument="id")
    if row["refused"]:
        raise BadUserInput("This is the tenant's last active admin key: create another admin "
                           "key before revoking it", argument="id")
    await announce_revocation(stores.shadows, tenant_id, [key_id])
    return row


async def page(
    registry: RegistryStore, tenant_id: UUID, *, first: int,
    after: tuple[datetime, UUID] | None, include_revoked: bool,
) -> tuple[list[asyncpg.Record], int]:
    return await registry.page_api_keys(tenant_id, first=first, after=after,
                                        include_revoked=include_revoked)
