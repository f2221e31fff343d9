"""Settings: one frozen object built once from the environment (prefix ``IOTSPHERE_``).

A DSN left unset means "use the embedded store for it" (see ``gateway.runtime.devstack``).
A malformed value fails at start, naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.auth import jwt_keys
from gateway.errors import SettingsError

PREFIX = "IOTSPHERE_"


def _int(env: Mapping[str, str], key: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(PREFIX + key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{PREFIX}{key} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(PREFIX + key)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be a number, got {raw!r}") from None


def _str(env: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    raw = env.get(PREFIX + key)
    return default if raw is None or raw == "" else raw


def _choice(env: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first is the default."""
    raw = _str(env, key, choices[0]) or choices[0]
    if raw not in choices:
        raise SettingsError(f"{PREFIX}{key} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _path(env: Mapping[str, str], key: str) -> Path | None:
    raw = _str(env, key)
    return Path(raw) if raw else None


@dataclass(frozen=True)
class Settings:
    registry_dsn: str | None = None
    assets_dsn: str | None = None
    telemetry_dsn: str | None = None
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".iotsphere")
    env: str = "development"
    max_page_size: int = 500
    max_points: int = 10_000
    pool_min_size: int = 1
    pool_max_size: int = 10
    store_timeout: float = 5.0
    reconcile_interval: float = 300.0
    allowed_origins: tuple[str, ...] = ()
    ingest_max_bytes: int = 256 * 1024 * 1024
    ingest_max_lines: int = 5_000_000
    telemetry_retention_days: int = 0  # 0 keeps readings forever
    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2_000
    max_body_bytes: int = 2 * 1024 * 1024
    request_timeout: float = 30.0
    # GraphQL HTTP requests executing at once per process; the rest wait (within the
    # request timeout). Execution is CPU-bound, so more in flight only adds memory.
    max_concurrent_requests: int = 8
    max_cost: int = 100_000  # estimated field resolutions per operation (resolvers/cost.py)
    max_batch_operations: int = 10  # operations in one batched (JSON array) HTTP request
    rate_limit: float = 100.0  # operations per second per API key (token bucket); 0 = off
    rate_burst: int = 1_000  # the bucket's size: operations a key may spend at once
    persisted_operations: str = "off"  # off | allow | only (gateway/persisted.py)
    persisted_manifest: Path | None = None  # JSON map of sha256 hash -> document
    breaker_failures: int = 5  # consecutive outage errors that open a store's circuit
    breaker_cooldown: float = 1.0  # seconds an open circuit fails fast before a probe
    auth_outage_grace: float = 60.0  # seconds a verified key outlives a registry outage
    # JWT bearer tokens (gateway/jwt_auth.py); off while neither key is set.
    jwt_secret: str | None = None  # HS256, at least 32 bytes
    jwt_public_key: str | None = None  # RS256 PEM (from JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: int = 30  # seconds of clock skew allowed on exp/nbf/iat, at most 300
    jwt_tenant_claim: str = "tenant"
    jwt_role_claim: str = "role"
    workers: int = 1  # uvicorn worker processes of `iotsphere serve`
    # Seconds from SIGTERM to the end of in-flight work (gateway/draining.py).
    shutdown_grace: float = 20.0
    otel_endpoint: str | None = None  # OTLP/HTTP base URL; tracing is off without one

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def embedded(self) -> bool:
        """True when at least one store is left to the embedded default."""
        return None in (self.registry_dsn, self.assets_dsn, self.telemetry_dsn, self.redis_url)

    def with_stores(
        self, *, registry: str, assets: str, telemetry: str, redis: str
    ) -> Settings:
        """Fill in the DSNs left unset, keeping every one the operator gave."""
        return replace(
            self,
            registry_dsn=self.registry_dsn or registry,
            assets_dsn=self.assets_dsn or assets,
            telemetry_dsn=self.telemetry_dsn or telemetry,
            redis_url=self.redis_url or redis,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings_env = _str(env, "ENV", "development")
        if settings_env not in ("development", "production"):
            raise SettingsError(
                f"{PREFIX}ENV must be 'development' or 'production', got {settings_env!r}"
            )
        return check_jwt(cls(
            registry_dsn=_str(env, "REGISTRY_DSN"),
            assets_dsn=_str(env, "ASSETS_DSN"),
            telemetry_dsn=_str(env, "TELEMETRY_DSN"),
            redis_url=_str(env, "REDIS_URL"),
            host=_str(env, "HOST", "127.0.0.1") or "127.0.0.1",
            port=_int(env, "PORT", 8000, minimum=0),
            data_dir=Path(_str(env, "DATA_DIR", ".iotsphere") or ".iotsphere"),
            env=settings_env or "development",
            max_page_size=_int(env, "MAX_PAGE_SIZE", 500, minimum=1),
            max_points=_int(env, "MAX_POINTS", 10_000, minimum=1),
            pool_min_size=_int(env, "POOL_MIN_SIZE", 1, minimum=0),
            pool_max_size=_int(env, "POOL_MAX_SIZE", 10, minimum=1),
            store_timeout=_float(env, "STORE_TIMEOUT", 5.0),
            reconcile_interval=_float(env, "RECONCILE_INTERVAL", 300.0),
            ingest_max_bytes=_int(env, "INGEST_MAX_BYTES", 256 * 1024 * 1024, minimum=1),
            ingest_max_lines=_int(env, "INGEST_MAX_LINES", 5_000_000, minimum=1),
            telemetry_retention_days=_int(env, "TELEMETRY_RETENTION_DAYS", 0, minimum=0),
            max_depth=_int(env, "MAX_DEPTH", 10, minimum=1),
            max_aliases=_int(env, "MAX_ALIASES", 30, minimum=0),
            max_tokens=_int(env, "MAX_TOKENS", 2_000, minimum=1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1),
            request_timeout=_float(env, "REQUEST_TIMEOUT", 30.0),
            max_concurrent_requests=_int(env, "MAX_CONCURRENT_REQUESTS", 8, minimum=1),
            max_cost=_int(env, "MAX_COST", 100_000, minimum=1),
            max_batch_operations=_int(env, "MAX_BATCH_OPERATIONS", 10, minimum=1),
            rate_limit=_float(env, "RATE_LIMIT", 100.0),
            rate_burst=_int(env, "RATE_BURST", 1_000, minimum=1),
            persisted_operations=_choice(env, "PERSISTED_OPERATIONS", ("off", "allow", "only")),
            persisted_manifest=_path(env, "PERSISTED_MANIFEST"),
            breaker_failures=_int(env, "BREAKER_FAILURES", 5, minimum=1),
            breaker_cooldown=_float(env, "BREAKER_COOLDOWN", 1.0),
            auth_outage_grace=_float(env, "AUTH_OUTAGE_GRACE", 60.0),
            jwt_secret=_str(env, "JWT_SECRET"),
            jwt_public_key=_public_key(env),
            jwt_issuer=_str(env, "JWT_ISSUER"),
            jwt_audience=_str(env, "JWT_AUDIENCE"),
            jwt_leeway=_int(env, "JWT_LEEWAY", 30, minimum=0),
            jwt_tenant_claim=_str(env, "JWT_TENANT_CLAIM", "tenant") or "tenant",
            jwt_role_claim=_str(env, "JWT_ROLE_CLAIM", "role") or "role",
            workers=_int(env, "WORKERS", 1, minimum=1),
            shutdown_grace=_float(env, "SHUTDOWN_GRACE", 20.0),
            otel_endpoint=_str(env, "OTEL_ENDPOINT"),
            allowed_origins=tuple(
                o.strip().rstrip("/") for o in (_str(env, "ALLOWED_ORIGINS", "") or "").split(",")
                if o.strip()
            ),
        ))


def _public_key(env: Mapping[str, str]) -> str | None:
    """The RS256 public key PEM, given inline or as a file."""
    inline, path = _str(env, "JWT_PUBLIC_KEY"), _str(env, "JWT_PUBLIC_KEY_FILE")
    if inline and path:
        raise SettingsError(f"Set {PREFIX}JWT_PUBLIC_KEY or {PREFIX}JWT_PUBLIC_KEY_FILE, not both")
    if path is None:
        return inline
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{PREFIX}JWT_PUBLIC_KEY_FILE cannot be read: {exc}") from None


def check_jwt(settings: Settings) -> Settings:
    """Weak or malformed JWT keys stop the gateway at start (SettingsError naming the key)."""
    if settings.jwt_secret is not None:
        jwt_keys.hs256_secret(settings.jwt_secret)
    if settings.jwt_public_key is not None:
        jwt_keys.rs256_key(settings.jwt_public_key)
    if settings.jwt_secret is not None or settings.jwt_public_key is not None:
        jwt_keys.check_leeway(settings.jwt_leeway)
    return settings


# The keys the gateway reads, for documentation and for the compose.yml check.
KEYS = (
    "MAX_COST", "MAX_CONCURRENT_REQUESTS",
    "MAX_BATCH_OPERATIONS", "RATE_LIMIT", "RATE_BURST", "PERSISTED_OPERATIONS",
    "PERSISTED_MANIFEST",
    "REGISTRY_DSN", "ASSETS_DSN", "TELEMETRY_DSN", "REDIS_URL", "HOST", "PORT", "DATA_DIR",
    "ENV", "MAX_PAGE_SIZE", "MAX_POINTS", "POOL_MIN_SIZE", "POOL_MAX_SIZE", "STORE_TIMEOUT",
    "RECONCILE_INTERVAL", "ALLOWED_ORIGINS", "INGEST_MAX_BYTES", "INGEST_MAX_LINES",
    "TELEMETRY_RETENTION_DAYS", "MAX_DEPTH", "MAX_ALIASES", "MAX_TOKENS", "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT", "BREAKER_FAILURES", "BREAKER_COOLDOWN", "AUTH_OUTAGE_GRACE",
    "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_PUBLIC_KEY_FILE", "JWT_ISSUER", "JWT_AUDIENCE",
    "JWT_LEEWAY", "JWT_TENANT_CLAIM", "JWT_ROLE_CLAIM",
    "WORKERS", "SHUTDOWN_GRACE", "OTEL_ENDPOINT",
)
