"""Settings: one frozen object built once from the environment (prefix ``IOTSPHERE_``).

Each setting is declared once, as a field of ``Settings`` made by ``setting(...)``: its
type (the annotation), default, meaning and bounds. Parsing (``Settings.from_env``), the
``KEYS`` the gateway reads and docs/configuration.md (``python -m gateway.settings
--markdown``, or ``make docs``) all come from that declaration; a test fails when the
file drifts. A malformed value fails at start, naming the key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.auth import jwt_keys
from gateway.errors import SettingsError

if TYPE_CHECKING:
    from gateway.stores.metadata_indexes import RangePath

PREFIX = "IOTSPHERE_"

MiB = 1024 * 1024
Reader = Callable[[Mapping[str, str]], Any]


def setting(default: Any, meaning: str, *, minimum: int | None = None,
            choices: tuple[str, ...] = (), shown: str | None = None,
            read: Reader | None = None, also: tuple[str, ...] = ()) -> Any:
    """The one declaration of a setting. Its key is the field's name in upper case.

    ``minimum`` bounds an integer; ``choices`` lists the accepted values of a string;
    ``shown`` is how the docs show the default; ``read`` replaces the parsing of the
    field's type (``also`` names the further keys it reads)."""
    return field(default=default, metadata={
        "meaning": meaning, "minimum": minimum, "choices": choices, "shown": shown,
        "read": read, "also": also})


def _raw(env: Mapping[str, str], key: str) -> str | None:
    raw = env.get(PREFIX + key)
    return None if raw is None or raw == "" else raw


def _int(raw: str, key: str, minimum: int | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{PREFIX}{key} must be >= {minimum}, got {value}")
    return value


def _float(raw: str, key: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be a number, got {raw!r}") from None


def _choice(raw: str, key: str, choices: tuple[str, ...]) -> str:
    if raw in choices:
        return raw
    if len(choices) == 2:
        expected = " or ".join(repr(c) for c in choices)
    else:
        expected = "one of " + ", ".join(choices)
    raise SettingsError(f"{PREFIX}{key} must be {expected}, got {raw!r}")


def _bool(raw: str, key: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{key} must be true or false, got {raw!r}")


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


# How a value of each declared type is read from its text, and how the docs name it.
_TYPES: dict[str, tuple[str, Callable[[str, str, Field[Any]], Any]]] = {
    "str": ("text", lambda raw, key, f: _choice(raw, key, f.metadata["choices"])
            if f.metadata["choices"] else raw),
    "str | None": ("text", lambda raw, key, f: raw),
    "int": ("integer", lambda raw, key, f: _int(raw, key, f.metadata["minimum"])),
    "float": ("number", lambda raw, key, f: _float(raw, key)),
    "bool": ("true or false", lambda raw, key, f: _bool(raw, key)),
    "Path": ("path", lambda raw, key, f: Path(raw)),
    "Path | None": ("path", lambda raw, key, f: Path(raw)),
    "tuple[str, ...]": ("comma-separated list", lambda raw, key, f: _origins(raw)),
}


def _public_key(env: Mapping[str, str]) -> str | None:
    """The RS256 public key PEM, given inline or as a file."""
    inline, path = _raw(env, "JWT_PUBLIC_KEY"), _raw(env, "JWT_PUBLIC_KEY_FILE")
    if inline and path:
        raise SettingsError(f"Set {PREFIX}JWT_PUBLIC_KEY or {PREFIX}JWT_PUBLIC_KEY_FILE, not both")
    if path is None:
        return inline
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{PREFIX}JWT_PUBLIC_KEY_FILE cannot be read: {exc}") from None


def _metadata_range_paths(env: Mapping[str, str]) -> tuple[RangePath, ...]:
    # Imported here: gateway.stores imports this module.
    from gateway.stores.metadata_indexes import parse
    raw = _raw(env, "METADATA_RANGE_PATHS")
    try:
        return parse(raw) if raw else ()
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}METADATA_RANGE_PATHS: {exc}") from None


@dataclass(frozen=True)
class Settings:
    # Stores. A DSN left unset is served by the embedded stack (gateway.runtime.devstack).
    registry_dsn: str | None = setting(
        None, "PostgreSQL DSN of the device registry", shown="embedded")
    assets_dsn: str | None = setting(None, "PostgreSQL DSN of the asset DB", shown="embedded")
    telemetry_dsn: str | None = setting(
        None, "PostgreSQL/TimescaleDB DSN of the telemetry store", shown="embedded")
    redis_url: str | None = setting(
        None, "Redis URL of the shadow store; `redis+cluster://host:port` (any node) for a "
        "Redis/Valkey Cluster", shown="embedded")
    # Read replicas (docs/operations.md, Read replicas): streaming standbys of each store's
    # primary, serving the reads that tolerate lag while within READ_REPLICA_MAX_LAG.
    registry_read_dsn: str | None = setting(
        None, "PostgreSQL DSN of a streaming standby of the registry: device lists and "
        "counts of queries read there", shown="none")
    assets_read_dsn: str | None = setting(
        None, "PostgreSQL DSN of a streaming standby of the asset DB: the asset tree and "
        "asset pages of queries read there", shown="none")
    telemetry_read_dsn: str | None = setting(
        None, "PostgreSQL/TimescaleDB DSN of a streaming standby of the telemetry store: "
        "series, rollups, forecasts and latest values of queries read there", shown="none")
    read_replica_max_lag: float = setting(
        5.0, "seconds a read replica may be behind its primary and still serve reads; "
        "further behind, or not answering, it is left out (its reads go to the primary) "
        "until a probe finds it within the bound again; must exceed `READ_REPLICA_PROBE_INTERVAL`")
    read_replica_probe_interval: float = setting(
        1.0, "seconds between probes of each read replica's position against its primary")
    # The process.
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on", minimum=0)
    data_dir: Path = setting(
        Path(".iotsphere"), "embedded servers' data, logs and `admin-key`")
    env: str = setting(
        "development", "`production` turns GraphiQL, introspection and field suggestions off",
        choices=("development", "production"))
    workers: int = setting(
        1, "worker processes of `iotsphere serve` (`--workers N` overrides)", minimum=1)
    shutdown_grace: float = setting(
        20.0, "seconds from SIGTERM to the end of in-flight work (docs/operations.md)")
    # Store clients.
    pool_min_size: int = setting(1, "smallest asyncpg pool per database", minimum=0)
    pool_max_size: int = setting(10, "largest asyncpg pool per database", minimum=1)
    pg_statement_cache: int = setting(
        100, "prepared statements asyncpg caches per connection; 0 behind PgBouncer in "
        "transaction pooling mode (docs/operations.md)", minimum=0)
    store_timeout: float = setting(
        5.0, "seconds before a store call (connect, query, release) fails with "
        "`STORE_UNAVAILABLE`")
    breaker_failures: int = setting(
        5, "consecutive outage errors that open a store's circuit", minimum=1)
    breaker_cooldown: float = setting(
        1.0, "seconds an open circuit fails fast before one probe call goes through")
    reconcile_interval: float = setting(300.0, "seconds between reconciler runs")
    job_leader_check: float = setting(
        5.0, "seconds between a replica's attempts to take over the background jobs, and "
        "between the leader's checks of its lock connection (gateway/jobs/leader.py)")
    telemetry_retention_days: int = setting(
        0, "readings older than this many days are dropped by whole days (chunks on "
        "TimescaleDB); `0` keeps them forever", minimum=0)
    metadata_range_paths: tuple[RangePath, ...] = setting(
        (), "Device.metadata paths whose `metadataPath` number or time ranges get an index "
        "in the asset DB, created at start, e.g. `rating:number,specs.installed:time` "
        "(dot-separated keys; docs/connections.md); a range on another path reads every "
        "profile of the tenant", shown="none", read=_metadata_range_paths)
    # Limits on a GraphQL request (docs/api-and-errors.md).
    max_page_size: int = setting(
        500, "largest `first` a connection accepts (`LIMIT_EXCEEDED` `maxPageSize`, refused "
        "before execution)", minimum=1)
    max_points: int = setting(
        10_000, "most points a series may return (raw `limit`, or range / bucket)", minimum=1)
    max_depth: int = setting(
        10, "deepest selection a document may nest (`LIMIT_EXCEEDED` `maxDepth`)", minimum=1)
    max_aliases: int = setting(
        30, "most aliases in a document (`LIMIT_EXCEEDED` `maxAliases`)", minimum=0)
    max_tokens: int = setting(
        2_000, "most tokens in a document (`LIMIT_EXCEEDED` `maxTokens`)", minimum=1)
    max_cost: int = setting(
        100_000, "largest estimated cost (field resolutions) of an operation "
        "(`LIMIT_EXCEEDED` `maxCost` with `cost` and `maximum`, before execution)", minimum=1)
    max_body_bytes: int = setting(
        2 * MiB, "largest GraphQL request body (413)", minimum=1, shown="2 MiB")
    max_batch_operations: int = setting(
        10, "most operations in one batched (JSON array) request; more is `LIMIT_EXCEEDED` "
        "(400) and nothing runs", minimum=1)
    request_timeout: float = setting(
        30.0, "seconds before a GraphQL request is cut off and its store work cancelled (504)")
    max_concurrent_requests: int = setting(
        8, "GraphQL HTTP requests executing at once per process; more wait their turn "
        "(within `REQUEST_TIMEOUT`; `iotsphere_http_operations_waiting` counts them). "
        "Execution is CPU-bound: more in flight only holds more half-built responses (soak "
        "at 32 clients: 26 -> 29-35 req/s, lower p50, less memory)", minimum=1)
    # Rate limits and persisted operations (docs/http-and-websocket.md).
    rate_limit: float = setting(
        100.0, "operations per second refilled into each API key's token bucket; `0` turns "
        "rate limiting off")
    rate_burst: int = setting(
        1_000, "size of each key's token bucket: operations it may spend at once", minimum=1)
    auth_failure_rate_limit: float = setting(
        10.0, "failed authentications (no, a bad or a revoked credential) per second refilled "
        "into each client address's token bucket, shared by the replicas through Redis; "
        "beyond it 429 without any lookup (docs/http-and-websocket.md); `0` turns it off")
    auth_failure_burst: int = setting(
        100, "size of each client address's bucket of failed authentications", minimum=1)
    persisted_operations: str = setting(
        "off", "which documents run: `off` as sent; `allow` the manifest's by hash and any "
        "other as sent; `only` the manifest's and nothing else (docs/http-and-websocket.md)",
        choices=("off", "allow", "only"))
    persisted_manifest: Path | None = setting(
        None, "JSON object of sha256 hash -> document (or Apollo's persisted query "
        "manifest), checked at start", shown="none")
    allowed_origins: tuple[str, ...] = setting(
        (), "origins allowed to open WebSockets besides the gateway's own host, and answered "
        "with CORS headers", shown="none")
    ws_compression: str = setting(
        "shared", "how WebSocket messages are compressed when the client offers "
        "permessage-deflate: `shared` compresses each subscription result once for every "
        "socket (no context takeover: about half the CPU per delivered message, but small "
        "messages cost several times the bytes); `per-socket` keeps each socket's context "
        "(fewest bytes, a compression per message and socket) (docs/http-and-websocket.md)",
        choices=("shared", "per-socket"))
    telemetry_events_per_second: float = setting(
        20.0, "most telemetryChanged events a subscription receives per second; readings "
        "arriving faster coalesce to each device's newest (docs/telemetry-and-ingest.md)")
    # Ingest (docs/telemetry-and-ingest.md).
    ingest_max_bytes: int = setting(
        256 * MiB, "largest `POST /ingest` body (413 beyond, nothing stored)", minimum=1,
        shown="256 MiB")
    ingest_max_lines: int = setting(
        5_000_000, "most lines in one `POST /ingest` body (413 beyond, nothing stored)",
        minimum=1)
    # Authentication (docs/auth-and-roles.md). JWT bearer tokens are off while neither
    # key is set.
    auth_outage_grace: float = setting(
        60.0, "seconds an API key the registry verified stays accepted while the registry "
        "is unreachable (`0`: never)")
    api_key_cache_ttl: float = setting(
        5.0, "seconds an API key the registry verified (or did not know) is answered from "
        "memory without a registry round trip; a revocation drops it at once on every "
        "replica (`0`: ask every time)")
    jwt_secret: str | None = setting(
        None, "HS256 secret, at least 32 bytes (a shorter one stops the gateway at start)",
        shown="none")
    jwt_public_key: str | None = setting(
        None, "RS256: an RSA public key (PEM, at least 2048 bits), inline, or read from the "
        "file `JWT_PUBLIC_KEY_FILE` names (not both)", shown="none", read=_public_key,
        also=("JWT_PUBLIC_KEY_FILE",))
    jwt_issuer: str | None = setting(None, "when set, a token's `iss` must match", shown="none")
    jwt_audience: str | None = setting(
        None, "when set, a token's `aud` must match", shown="none")
    jwt_leeway: int = setting(
        30, "seconds of clock skew allowed on `exp`, `nbf`, `iat` (at most 300)", minimum=0)
    jwt_tenant_claim: str = setting(
        "tenant", "claim holding the tenant id (e.g. `https://iotsphere/tenant` for identity "
        "providers that namespace custom claims)")
    jwt_role_claim: str = setting("role", "claim holding the role")
    # Execution (README, Planned execution).
    planned_execution: bool = setting(
        True, "queries run by plan (resolvers/execution/): a plan per document, no resolver "
        "call per plain field; `false`: every field through graphql-core", shown="`true`")
    # Tracing (docs/operations.md).
    otel_endpoint: str | None = setting(
        None, "OTLP/HTTP collector base URL (else `OTEL_EXPORTER_OTLP_ENDPOINT`); tracing is "
        "off without one", shown="none")

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
        values: dict[str, Any] = {}
        for f in fields(cls):
            read = f.metadata["read"]
            if read is not None:
                values[f.name] = read(env)
                continue
            key = f.name.upper()
            raw = _raw(env, key)
            if raw is not None:
                values[f.name] = _TYPES[str(f.type)][1](raw, key, f)
        return check_read_replicas(check_jwt(cls(**values)))


def check_jwt(settings: Settings) -> Settings:
    """Weak or malformed JWT keys stop the gateway at start (SettingsError naming the key)."""
    if settings.jwt_secret is not None:
        jwt_keys.hs256_secret(settings.jwt_secret)
    if settings.jwt_public_key is not None:
        jwt_keys.rs256_key(settings.jwt_public_key)
    if settings.jwt_secret is not None or settings.jwt_public_key is not None:
        jwt_keys.check_leeway(settings.jwt_leeway)
    return settings


def check_read_replicas(settings: Settings) -> Settings:
    """A lag bound the probes cannot resolve stops the gateway at start: a replica that is
    caught up still looks up to one probe interval behind, so it would flap in and out."""
    if not any((settings.registry_read_dsn, settings.assets_read_dsn,
                settings.telemetry_read_dsn)):
        return settings
    if settings.read_replica_probe_interval <= 0:
        raise SettingsError(f"{PREFIX}READ_REPLICA_PROBE_INTERVAL must be > 0, got "
                            f"{settings.read_replica_probe_interval:g}")
    if settings.read_replica_max_lag <= settings.read_replica_probe_interval:
        raise SettingsError(
            f"{PREFIX}READ_REPLICA_MAX_LAG ({settings.read_replica_max_lag:g}) must exceed "
            f"{PREFIX}READ_REPLICA_PROBE_INTERVAL ({settings.read_replica_probe_interval:g})")
    return settings


def _declared() -> tuple[Field[Any], ...]:
    declared = fields(Settings)
    for f in declared:
        if str(f.type) not in _TYPES and f.metadata.get("read") is None:
            raise TypeError(f"Settings.{f.name}: no reader for type {f.type}")
        if f.metadata.get("choices") and f.default not in f.metadata["choices"]:
            raise TypeError(f"Settings.{f.name}: default {f.default!r} is not a choice")
    return declared


DECLARED = _declared()

# The keys the gateway reads (without the prefix), for the docs and the compose.yml check.
KEYS = tuple(k for f in DECLARED for k in (f.name.upper(), *f.metadata["also"]))


def _shown_default(f: Field[Any]) -> str:
    if f.metadata["shown"] is not None:
        return str(f.metadata["shown"])
    value = f.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


_HEADER = """\
# Configuration

<!-- Generated from gateway/settings.py by `make docs`; edit the declaration there. -->

The gateway reads environment variables with the prefix `IOTSPHERE_`, once at start,
into one frozen `Settings` object. A malformed value (not a number, below its minimum,
not one of its choices, a weak JWT key) stops the gateway at start with an error naming
the variable. An empty value counts as unset.

| variable | type | default | meaning |
| --- | --- | --- | --- |
"""

_FOOTER = """
Any store DSN left unset is served by the embedded stack: one local PostgreSQL 18
(databases `registry`, `assets`, `telemetry`) and one local Valkey 8.1 with keyspace
notifications and AOF persistence, started under `DATA_DIR` and stopped with the gateway
(docs/operations.md). A `*_READ_DSN` left unset means no read replica: that store's reads
all go to its primary.

Read outside this object: `IOTSPHERE_LOG_LEVEL` (log level, `INFO`; above `INFO` uvicorn
writes no access lines either; read before the settings, so a settings error is logged),
`OTEL_EXPORTER_OTLP_ENDPOINT` (used when `OTEL_ENDPOINT` is unset) and `OTEL_SERVICE_NAME`
(`iotsphere-gateway`).
"""


def markdown() -> str:
    """docs/configuration.md, generated from the declaration."""
    rows = []
    for f in DECLARED:
        names = " / ".join(f"`{k}`" for k in (f.name.upper(), *f.metadata["also"]))
        kind = _TYPES[str(f.type)][0] if str(f.type) in _TYPES else "text"
        if f.metadata["choices"]:
            kind = "one of " + ", ".join(f"`{c}`" for c in f.metadata["choices"])
        elif f.metadata["minimum"] is not None:
            kind = f"{kind} >= {f.metadata['minimum']}"
        rows.append(f"| {names} | {kind} | {_shown_default(f)} | {f.metadata['meaning']} |\n")
    return _HEADER + "".join(rows) + _FOOTER


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m gateway.settings --markdown")
    sys.stdout.write(markdown())
