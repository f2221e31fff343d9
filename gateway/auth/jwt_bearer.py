"""JWT bearer tokens: verify one and say whom it names.

Two algorithms, each tied to its own configured key: HS256 with ``IOTSPHERE_JWT_SECRET``
(at least 32 bytes: RFC 7518 section 3.2 asks for a key as long as the hash) and RS256 with
``IOTSPHERE_JWT_PUBLIC_KEY`` or ``_FILE`` (an RSA public key of at least 2048 bits). The
token's header picks between the configured ones only; anything else (``none``, HS512,
HS256 while only a public key is set) is refused before any verification. That closes
algorithm confusion, where an RS256 public key is abused as an HMAC secret.

Claims: ``exp`` is required, ``nbf`` and ``iat`` are honoured, all three with a leeway of
``JWT_LEEWAY`` seconds (bounded, so a stolen expired token does not live on); ``iss`` and
``aud`` are checked when configured. The tenant claim (``JWT_TENANT_CLAIM``, default
``tenant``) holds a tenant id, the role claim (``JWT_ROLE_CLAIM``, default ``role``) one
of the roles, and ``sub`` the device id when the role is ``device``.

Error messages name what failed, never the token.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

import jwt

from gateway.auth import jwt_keys
from gateway.auth.roles import ROLES
from gateway.errors import Unauthenticated
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.stores.registry import RegistryStore

# How long "this tenant (and device) exists" is believed: one registry query per token
# subject per half minute instead of one per request. A decommission drops its device
# from this at once (announced to every replica); only if that announcement is lost does
# the device's token keep working up to this long.
SUBJECT_TTL = 30.0
_SUBJECTS_MAX = 10_000
_ALG_NAME = re.compile(r"^[A-Za-z0-9]{1,10}$")


@dataclass(frozen=True)
class Claims:
    tenant_id: UUID
    role: str
    subject: str | None
    device_id: UUID | None  # for role device: the device the token stands for
    # For what outlives the request: a WebSocket closes at exp (gateway.live.sockets).
    expires_at: float = 0.0  # exp, seconds since the epoch
    issued_at: float | None = None  # iat
    jti: str | None = None


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts, the compact JWS form (API keys are told apart first, by
    their ``iot_`` prefix)."""
    return token.count(".") == 2


class JwtVerifier:
    """Verification keys and claim rules from settings; refuses weak keys (SettingsError)."""

    def __init__(self, settings: Settings) -> None:
        self._keys: dict[str, Any] = {}
        if settings.jwt_secret is not None:
            self._keys["HS256"] = jwt_keys.hs256_secret(settings.jwt_secret)
        if settings.jwt_public_key is not None:
            self._keys["RS256"] = jwt_keys.rs256_key(settings.jwt_public_key)
        jwt_keys.check_leeway(settings.jwt_leeway)
        self._leeway = settings.jwt_leeway
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._tenant_claim = settings.jwt_tenant_claim
        self._role_claim = settings.jwt_role_claim

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def claims(self, token: str) -> Claims:
        """The verified claims of ``token``, or Unauthenticated saying what is wrong."""
        if not self._keys:
            raise Unauthenticated("Bearer tokens (JWT) are not enabled on this gateway")
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise Unauthenticated("Malformed bearer token") from None
        if alg not in self._keys:
            accepted = ", ".join(sorted(self._keys))
            # The header is the caller's text: named only when it is a plausible alg name.
            named = repr(alg) if isinstance(alg, str) and _ALG_NAME.match(alg) else "this"
            raise Unauthenticated(f"Token algorithm {named} is not accepted "
                                  f"(accepted: {accepted})")
        required = ["exp", self._tenant_claim, self._role_claim]
        try:
            payload = jwt.decode(
                token, self._keys[alg], algorithms=[alg], leeway=self._leeway,
                issuer=self._issuer, audience=self._audience,
                options={"require": required, "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_message(exc)) from None
        return self._read(payload)

    def _read(self, payload: dict[str, Any]) -> Claims:
        role = payload[self._role_claim]
        if role not in ROLES:
            raise Unauthenticated(f"Token claim {self._role_claim!r} must be one of "
                                  f"{', '.join(ROLES)}")
        tenant = _uuid(payload[self._tenant_claim])
        if tenant is None:
            raise Unauthenticated(f"Token claim {self._tenant_claim!r} must be a tenant id")
        subject = payload.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise Unauthenticated("Token claim 'sub' must be a string")
        device = None
        if role == "device":
            device = _uuid(subject)
            if device is None:
                raise Unauthenticated("A device token's 'sub' claim must be its device id")
        jti = payload.get("jti")
        if jti is not None and not isinstance(jti, str):
            raise Unauthenticated("Token claim 'jti' must be a string")
        issued = payload.get("iat")
        return Claims(tenant_id=tenant, role=role, subject=subject, device_id=device,
                      expires_at=float(payload["exp"]),
                      issued_at=float(issued) if isinstance(issued, int | float) else None,
                      jti=jti)

    async def check_subject(self, registry: RegistryStore, claims: Claims) -> None:
        """The tenant exists and, for a device, the device is live in it; believed for
        SUBJECT_TTL seconds once the registry said so (``registry.jwt_subjects``: a
        decommission drops its device at once, here and on every replica)."""
        key = (claims.tenant_id, claims.device_id)
        now = time.monotonic()
        subjects = registry.jwt_subjects
        if subjects.get(key, 0.0) > now:
            return
        row = await registry.jwt_subject(claims.tenant_id, claims.device_id)
        if not row["tenant_exists"]:
            raise Unauthenticated("The token's tenant does not exist")
        if claims.device_id is not None and row["device_status"] in (None, "DECOMMISSIONED"):
            raise Unauthenticated("The token's device does not exist or is decommissioned")
        if len(subjects) >= _SUBJECTS_MAX:
            subjects.clear()
        subjects[key] = now + SUBJECT_TTL


@lru_cache(maxsize=8)
def verifier(settings: Settings) -> JwtVerifier:
    """One verifier per settings (keys parsed once, the subject cache shared)."""
    return JwtVerifier(settings)


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _message(exc: jwt.PyJWTError) -> str:
    """Our words for PyJWT's errors: clear, and free of anything the token carried."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "Token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "Token is not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"Token lacks the required {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "Token signature does not verify"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "Token audience is not accepted"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "Token issuer is not accepted"
    if isinstance(exc, jwt.DecodeError):
        return "Malformed bearer token"
    return "Invalid bearer token"
