"""The installed wheel is the product: built from the repository, it carries every SQL
file of ``sql/`` as ``gateway/sql/...``, and installed into a fresh virtualenv its
``iotsphere migrate`` migrates empty databases from a directory outside the repository.

The fresh virtualenv gets the wheel only; its dependencies come from this test's own
environment through a ``.pth`` line, so nothing is downloaded. The build runs without
isolation on this environment's setuptools (a dev dependency) for the same reason, from a
copy of the files the build reads, so the checkout gains no ``build/`` directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.stores.migrations import STORES
from tests.conftest import Servers

ROOT = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "gateway", "resolvers", "sql")
pytestmark = pytest.mark.wheel


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--quiet", "--wheel-dir", str(out), str(source)])
    [built] = out.glob("iotsphere_gateway-*.whl")
    return built


def test_the_wheel_carries_every_sql_file(wheel: Path) -> None:
    expected = {f"gateway/sql/{p.relative_to(ROOT / 'sql').as_posix()}"
                for p in (ROOT / "sql").rglob("*.sql")}
    assert expected, "sql/ holds no .sql file"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert "gateway/runtime/cli.py" in names and "resolvers/schema.py" in names


@pytest.fixture
async def empty_databases(servers: Servers) -> AsyncIterator[dict[str, str]]:
    names = {store: f"wheel_{os.getpid()}_{store}" for store in STORES}
    admin = await asyncpg.connect(servers.dsn("postgres"))
    try:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {store: servers.dsn(name) for store, name in names.items()}
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_installed_wheel_migrates_from_outside_the_repository(
    wheel: Path, empty_databases: dict[str, str], servers: Servers, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", "--no-index", str(wheel)])
    site = Path(_run([str(python), "-c",
                      "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    (site / "dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("IOTSPHERE_")}
    env.update({
        "IOTSPHERE_REGISTRY_DSN": empty_databases["registry"],
        "IOTSPHERE_ASSETS_DSN": empty_databases["assets"],
        "IOTSPHERE_TELEMETRY_DSN": empty_databases["telemetry"],
        "IOTSPHERE_REDIS_URL": servers.redis_url,
        "IOTSPHERE_DATA_DIR": str(tmp_path / "data"),
    })
    # The gateway that runs is the installed one, reading the SQL inside it.
    where = _run([str(python), "-c", "import gateway.stores.sqlfiles as s; print(s.SQL_DIR)"],
                 cwd=elsewhere, env=env).strip()
    assert Path(where) == site / "gateway" / "sql", where

    out = _run([str(venv / "bin" / "iotsphere"), "migrate"], cwd=elsewhere, env=env)
    for store in STORES:
        assert f"{store}: applied 001" in out, out

    expected = {"registry": {"devices", "tenants", "api_keys"}, "assets": {"assets"},
                "telemetry": {"readings"}}
    for store, tables in expected.items():
        conn = await asyncpg.connect(empty_databases[store])
        try:
            found = {r["tablename"] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        finally:
            await conn.close()
        assert tables <= found, f"{store}: {sorted(found)}"
    again = _run([str(venv / "bin" / "iotsphere"), "migrate"], cwd=elsewhere, env=env)
    for store in STORES:
        assert f"{store}: up to date" in again, again


def test_the_wheel_carries_the_console(wheel: Path) -> None:
    console = ROOT / "gateway" / "http" / "console"
    expected = {f"gateway/http/console/{p.name}" for p in console.iterdir() if p.is_file()}
    assert {"gateway/http/console/index.html", "gateway/http/console/console.js"} <= expected
    names = set(zipfile.ZipFile(wheel).namelist())
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
