"""Callers and API keys: ``Authorization: Bearer <key>`` resolves a tenant and a role.

Keys look like ``iot_<43 url-safe chars>`` (256 random bits); only their sha256 is stored,
which is enough for a secret of that entropy and lets a request find its key by index.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from dataclasses import dataclass
from uuid import UUID

from gateway.credentials import verify_secret
from gateway.errors import Forbidden, Unauthenticated
from gateway.stores.registry import RegistryStore

KEY_PREFIX = "iot_"
ROLES = ("admin", "operator", "viewer", "device")
@dataclass(frozen=True)
class Caller:
    tenant_id: UUID
    role: str
    key_id: UUID  # the API key, or the device credential
    device_id: UUID | None = None  # set when a device authenticated as itself


# Roles that may write (mutations, bulk ingest). Viewers and device API keys only read;
# devices write through their own credentials. The security issue refines this per field.
WRITERS = frozenset({"admin", "operator"})


def require_writer(caller: Caller | None) -> None:
    if caller is None or caller.role not in WRITERS:
        role = caller.role if caller else "anonymous"
        raise Forbidden(f"The {role} role may not write", role=role)


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("Missing Authorization header: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <key>'")
    return token.strip()


async def authenticate(registry: RegistryStore, authorization: str | None) -> Caller:
    token = bearer_token(authorization)
    if not token.startswith(KEY_PREFIX):
        raise Unauthenticated("Invalid API key")
    row = await registry.api_key(hash_key(token))
    if row is None:
        raise Unauthenticated("Invalid API key")
    return Caller(tenant_id=row["tenant_id"], role=row["role"], key_id=row["id"])


async def authenticate_device(registry: RegistryStore, authorization: str | None) -> Caller:
    """``Authorization: Basic base64(<device id>:<credential secret>)``: the device's own
    identity, as issued by registerDevice."""
    scheme, _, token = (authorization or "").partition(" ")
    try:
        device_text, _, secret = base64.b64decode(token.strip(), validate=True).decode(
        ).partition(":")
        device_id = UUID(device_text)
    except (ValueError, UnicodeDecodeError):
        raise Unauthenticated("Invalid device credentials") from None
    if scheme.lower() != "basic" or not secret:
        raise Unauthenticated("Invalid device credentials")
    for row in await registry.device_credentials_for_auth(device_id):
        # scrypt takes tens of milliseconds by design: off the event loop.
        if await asyncio.to_thread(verify_secret, secret, row["secret_hash"]):
            if row["status"] == "DECOMMISSIONED":
                break
            return Caller(tenant_id=row["tenant_id"], role="device", key_id=row["id"],
                          device_id=device_id)
    raise Unauthenticated("Invalid device credentials")


async def create_tenant_with_admin_key(
    registry: RegistryStore, name: str
) -> tuple[UUID, str]:
    """Creates a tenant and its first admin key; the key is returned once, never stored."""
    tenant = await registry.create_tenant(name)
    key = new_api_key()
    await registry.create_api_key(tenant["id"], "first admin key", hash_key(key), "admin")
    return tenant["id"], key
