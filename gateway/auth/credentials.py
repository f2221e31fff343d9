"""Device credential secrets: shown once, stored as a salted scrypt hash, checked in constant
time. scrypt is in the standard library and memory-hard, so a leaked hash is costly to crack
even though device secrets are random."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# n=2**14, r=8, p=1: ~16 MB and ~30 ms per check on one core, OWASP's floor for scrypt.
_N, _R, _P = 2**14, 8, 1


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
