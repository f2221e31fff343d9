"""JWT verification keys, checked at start: a weak or malformed key is a SettingsError
naming the setting, so the gateway never runs with a key an attacker could brute-force."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.errors import SettingsError

# RFC 7518 section 3.2: an HS256 key at least as long as the hash.
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
# Bounded, so a stolen expired token does not live on.
MAX_LEEWAY = 300


def hs256_secret(secret: str) -> bytes:
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"IOTSPHERE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes for "
            f"HS256, got {len(raw)}")
    return raw


def rs256_key(pem: str) -> RSAPublicKey:
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise SettingsError("IOTSPHERE_JWT_PUBLIC_KEY is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise SettingsError("IOTSPHERE_JWT_PUBLIC_KEY must be an RSA key (RS256)")
    if key.key_size < MIN_RSA_BITS:
        raise SettingsError(
            f"IOTSPHERE_JWT_PUBLIC_KEY must have at least {MIN_RSA_BITS} bits, "
            f"got {key.key_size}")
    return key


def check_leeway(leeway: int) -> None:
    if not 0 <= leeway <= MAX_LEEWAY:
        raise SettingsError(
            f"IOTSPHERE_JWT_LEEWAY must be between 0 and {MAX_LEEWAY} seconds, got {leeway}")
