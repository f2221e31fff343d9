"""Who is calling: ``Authorization`` resolves a tenant, a role and, for a device, its id.

Three kinds of credential, told apart by shape:

- ``Bearer iot_<43 url-safe chars>``: an API key (256 random bits). Only its sha256 is
  stored, which is enough for a secret of that entropy and lets a request find its key by
  index. A key of role device is bound to one device.
- ``Bearer eyJ...``: a JWT, verified by ``gateway.auth.jwt_bearer`` against the configured keys.
- ``Basic base64(<device id>:<secret>)``: a device's own credential from registerDevice.

No error message repeats the credential it was given.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from dataclasses import dataclass
from uuid import UUID, uuid5

from gateway.auth.credentials import verify_secret
from gateway.auth.jwt_bearer import Claims, looks_like_jwt, verifier
from gateway.auth.roles import ROLES
from gateway.errors import Unauthenticated
from gateway.settings import Settings
from gateway.stores.registry import RegistryStore

__all__ = ["ROLES", "Caller", "authenticate", "authenticate_device", "hash_key", "new_api_key"]

KEY_PREFIX = "iot_"
_JWT_CALLERS = UUID("7c0e8a64-3f0a-4d7e-9a53-0f6f1f1c2a10")  # uuid5 namespace, see _token


@dataclass(frozen=True)
class Caller:
    tenant_id: UUID
    role: str
    # The API key or device credential; for a JWT, a UUID derived from (tenant, sub), so
    # per-caller limits see one identity per subject.
    key_id: UUID
    device_id: UUID | None = None  # set whenever the caller is one device (role device)
    token: Claims | None = None  # a JWT caller's verified claims (exp, iat, jti)


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("Missing Authorization header: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "Authorization must be 'Bearer <API key or token>' or 'Basic <device credentials>'")
    return token.strip()


async def authenticate(
    registry: RegistryStore, authorization: str | None, *, settings: Settings | None = None
) -> Caller:
    """The caller of an ``Authorization`` header value. JWTs need ``settings`` (their
    keys); without it, or with no JWT key configured, a JWT is refused."""
    if authorization and authorization[:6].lower() == "basic ":
        return await authenticate_device(registry, authorization)
    token = bearer_token(authorization)
    if token.startswith(KEY_PREFIX):
        return await _api_key(registry, token)
    if looks_like_jwt(token):
        return await _token(registry, token, settings)
    raise Unauthenticated("Invalid API key")


async def _api_key(registry: RegistryStore, key: str) -> Caller:
    row = await registry.api_key(hash_key(key))
    if row is None:
        raise Unauthenticated("Invalid API key")
    device_id = row.get("device_id")
    if row["role"] == "device" and (
        device_id is None or row.get("device_status") in (None, "DECOMMISSIONED")
    ):
        raise Unauthenticated("Invalid API key: its device is decommissioned")
    return Caller(tenant_id=row["tenant_id"], role=row["role"], key_id=row["id"],
                  device_id=device_id)


async def _token(registry: RegistryStore, token: str, settings: Settings | None) -> Caller:
    if settings is None:
        raise Unauthenticated("Bearer tokens (JWT) are not enabled on this gateway")
    check = verifier(settings)
    claims = check.claims(token)
    await check.check_subject(registry, claims)
    if await registry.token_revoked(claims.tenant_id, claims.jti, claims.subject,
                                    claims.issued_at):
        raise Unauthenticated("Token has been revoked")
    subject = claims.subject if claims.subject is not None else f"role:{claims.role}"
    return Caller(
        tenant_id=claims.tenant_id, role=claims.role,
        key_id=uuid5(_JWT_CALLERS, f"{claims.tenant_id}/{subject}"), device_id=claims.device_id,
        token=claims,
    )


# Device credentials that verified once, as sha256(stored hash, secret): a device that
# sends Basic on every GraphQL request pays scrypt (~30 ms of CPU) once, not each time. The
# credential row is still read per request, so revocation counts at once.
_VERIFIED: set[bytes] = set()
_VERIFIED_MAX = 10_000


def _verified_token(secret: str, secret_hash: str) -> bytes:
    return hashlib.sha256(f"{secret_hash}\0{secret}".encode()).digest()


async def _verify(secret: str, secret_hash: str) -> bool:
    token = _verified_token(secret, secret_hash)
    if token in _VERIFIED:
        return True
    # scrypt takes tens of milliseconds by design: off the event loop.
    if not await asyncio.to_thread(verify_secret, secret, secret_hash):
        return False
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED.add(token)
    return True


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
        if await _verify(secret, row["secret_hash"]):
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
