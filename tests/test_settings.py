"""Settings from the IOTSPHERE_ environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import DECLARED, KEYS, Settings, SettingsError, markdown


def test_defaults_leave_every_store_embedded() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.data_dir) == (
        "127.0.0.1", 8000, Path(".iotsphere"))
    assert settings.embedded
    assert not settings.production


def test_dsns_given_are_kept_and_the_rest_filled_in() -> None:
    settings = Settings.from_env({"IOTSPHERE_REGISTRY_DSN": "postgresql://r/registry",
                                  "IOTSPHERE_PORT": "9000"})
    assert settings.port == 9000
    filled = settings.with_stores(registry="x", assets="postgresql://a/assets",
                                  telemetry="postgresql://t/telemetry", redis="redis://r")
    assert filled.registry_dsn == "postgresql://r/registry"
    assert filled.assets_dsn == "postgresql://a/assets"
    assert not filled.embedded


@pytest.mark.parametrize(("key", "value"), [
    ("IOTSPHERE_PORT", "eighty"), ("IOTSPHERE_PORT", "-1"), ("IOTSPHERE_ENV", "staging"),
    ("IOTSPHERE_MAX_PAGE_SIZE", "0"), ("IOTSPHERE_STORE_TIMEOUT", "soon"),
    ("IOTSPHERE_PLANNED_EXECUTION", "maybe"),
])
def test_malformed_values_fail_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_env({key: value})


def test_configuration_reference_is_generated_from_the_declaration() -> None:
    """docs/configuration.md is `make docs` output; edit gateway/settings.py, then run it."""
    written = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert written == markdown(), "docs/configuration.md drifted: run `make docs`"


def test_every_declared_setting_is_read_from_its_key() -> None:
    env = {"IOTSPHERE_REGISTRY_DSN": "postgresql://r/x", "IOTSPHERE_MAX_COST": "7",
           "IOTSPHERE_RATE_LIMIT": "0.5", "IOTSPHERE_DATA_DIR": "/tmp/d",
           "IOTSPHERE_ALLOWED_ORIGINS": "https://a.example/, https://b.example",
           "IOTSPHERE_PERSISTED_OPERATIONS": "allow", "IOTSPHERE_JWT_ROLE_CLAIM": "r"}
    settings = Settings.from_env(env)
    assert (settings.registry_dsn, settings.max_cost, settings.rate_limit) == (
        "postgresql://r/x", 7, 0.5)
    assert settings.data_dir == Path("/tmp/d")
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert (settings.persisted_operations, settings.jwt_role_claim) == ("allow", "r")
    assert {"MAX_COST", "JWT_PUBLIC_KEY", "JWT_PUBLIC_KEY_FILE", "OTEL_ENDPOINT"} <= set(KEYS)
    assert len(KEYS) == len(set(KEYS)) == len(DECLARED) + 1


@pytest.mark.parametrize(("value", "planned"), [
    (None, True), ("true", True), ("1", True), ("false", False), ("off", False)])
def test_planned_execution_is_on_unless_switched_off(value: str | None, planned: bool) -> None:
    env = {} if value is None else {"IOTSPHERE_PLANNED_EXECUTION": value}
    assert Settings.from_env(env).planned_execution is planned


def test_read_replicas_need_a_lag_bound_the_probes_can_resolve() -> None:
    dsn = {"IOTSPHERE_TELEMETRY_READ_DSN": "postgresql://standby/telemetry"}
    settings = Settings.from_env({**dsn, "IOTSPHERE_READ_REPLICA_MAX_LAG": "2.5"})
    assert (settings.telemetry_read_dsn, settings.read_replica_max_lag) == (
        "postgresql://standby/telemetry", 2.5)
    with pytest.raises(SettingsError, match="READ_REPLICA_MAX_LAG"):
        Settings.from_env({**dsn, "IOTSPHERE_READ_REPLICA_MAX_LAG": "1"})
    with pytest.raises(SettingsError, match="READ_REPLICA_PROBE_INTERVAL"):
        Settings.from_env({**dsn, "IOTSPHERE_READ_REPLICA_PROBE_INTERVAL": "0"})
    # Without a read DSN the bound is not used, so not checked.
    assert Settings.from_env({"IOTSPHERE_READ_REPLICA_MAX_LAG": "0"}).registry_read_dsn is None
