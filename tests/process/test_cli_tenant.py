"""`iotsphere tenant create NAME` prints a working admin key once; `iotsphere tenant list`
lists tenants; a taken or malformed name is refused without a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.auth.callers import hash_key
from gateway.runtime.cli import main
from gateway.settings import Settings
from gateway.stores import Stores

KEY_LINE = re.compile(r"^admin key \(shown once, store it now\): (iot_[A-Za-z0-9_-]{43})$",
                      re.MULTILINE)


@pytest.fixture
def env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command sees the test's own stores, so nothing embedded starts."""
    assert settings.registry_dsn and settings.assets_dsn and settings.telemetry_dsn
    assert settings.redis_url
    for key, value in {"REGISTRY_DSN": settings.registry_dsn, "ASSETS_DSN": settings.assets_dsn,
                       "TELEMETRY_DSN": settings.telemetry_dsn, "REDIS_URL": settings.redis_url,
                       "DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(f"IOTSPHERE_{key}", value)


async def test_create_prints_a_working_admin_key_and_list_shows_it(
    env: None, stores: Stores, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command runs its own event loop, as it does from a shell: off this test's loop.
    import asyncio

    assert await asyncio.to_thread(main, ["tenant", "create", "acme"]) == 0
    out = capsys.readouterr().out
    match = KEY_LINE.search(out)
    assert match, out
    row = await stores.registry.api_key(hash_key(match[1]))
    assert row is not None and row["role"] == "admin"
    tenant = await stores.registry.tenant_by_name("acme")
    assert tenant is not None and row["tenant_id"] == tenant["id"]
    assert f"tenant acme ({tenant['id']})" in out

    assert await asyncio.to_thread(main, ["tenant", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"{tenant['id']}  acme  " in listed
    assert match[1] not in listed  # the key is printed once, at creation

    for name, why in (("acme", "exists already"), ("  ", "1 to 100 characters")):
        assert await asyncio.to_thread(main, ["tenant", "create", name]) == 1
        captured = capsys.readouterr()
        assert why in captured.err and "Traceback" not in captured.err
        assert "admin key" not in captured.out
    assert len(await stores.registry.tenants()) == 1
