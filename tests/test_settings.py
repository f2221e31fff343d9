"""Settings from the IOTSPHERE_ environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError


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
])
def test_malformed_values_fail_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_env({key: value})
