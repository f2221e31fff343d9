"""The embedded dev stack against real PostgreSQL and Valkey servers under ``tmp_path``."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from gateway.runtime.devstack import (
    DevStack,
    DevStackBusy,
    DevStackError,
    Endpoints,
    postgres_bin,
    valkey_bin,
)

DATABASES = ("registry", "assets", "telemetry")
ROOT = Path(__file__).resolve().parents[2]


def _server_pids(data_dir: Path) -> list[int]:
    """Live postgres/valkey processes working inside data_dir (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
            exe = Path(os.readlink(f"/proc/{entry}/exe")).name
        except OSError:
            continue
        if cwd.is_relative_to(data_dir) and exe.startswith(("postgres", "valkey")):
            found.append(int(entry))
    return found


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still running")


def _psql(ep: Endpoints, database: str, sql: str) -> str:
    done = subprocess.run(
        [str(postgres_bin("psql")), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
         ep.dsn(database)],
        capture_output=True, text=True, check=True, timeout=30,
    )
    return done.stdout.strip()


def _redis(ep: Endpoints) -> redis.Redis:
    return redis.Redis.from_url(ep.redis_url, decode_responses=True, socket_timeout=5)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's temp root: as root, PostgreSQL runs as an unprivileged user that
    # must walk down to its PGDATA, and pytest resets its root to 0700 whenever another
    # pytest starts (as root, any other run on the machine), which broke running stacks.
    top = Path(tempfile.mkdtemp(prefix="iotsphere-devstack-"))
    top.chmod(0o711)  # search only, no listing
    try:
        yield top / "stack"
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def make_stack(data_dir: Path) -> Iterator[Callable[[], DevStack]]:
    stacks: list[DevStack] = []

    def make() -> DevStack:
        stacks.append(DevStack(data_dir))
        return stacks[-1]

    try:
        yield make
    finally:
        for stack in reversed(stacks):
            stack.stop()
        assert _server_pids(data_dir) == [], "servers leaked"


@pytest.fixture
def endpoints(make_stack: Callable[[], DevStack]) -> Endpoints:
    return make_stack().start()


def test_binaries_exist() -> None:
    for name in ("initdb", "pg_ctl", "postgres", "psql"):
        assert os.access(postgres_bin(name), os.X_OK), name
    assert os.access(valkey_bin(), os.X_OK)


async def test_start_serves_databases_and_configured_valkey(endpoints: Endpoints) -> None:
    assert (endpoints.pg_host, endpoints.pg_user) == ("127.0.0.1", "postgres")
    assert endpoints.dsn("assets") == f"postgresql://postgres@127.0.0.1:{endpoints.pg_port}/assets"
    for database in DATABASES:
        conn = await asyncpg.connect(endpoints.dsn(database))
        try:
            assert await conn.fetchval("SELECT current_database()") == database
            assert await conn.fetchval("SHOW timezone") == "UTC"
            assert await conn.fetchval("SHOW fsync") == "on"
            assert await conn.fetchval("SHOW max_connections") == "200"
        finally:
            await conn.close()

    client = _redis(endpoints)
    try:
        assert client.ping()
        flags = str(client.config_get("notify-keyspace-events")["notify-keyspace-events"])
        assert "K" in flags and ("A" in flags or set("g$lshzxet") <= set(flags)), flags
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("save")["save"] == ""
    finally:
        client.close()


def test_data_survives_restart(make_stack: Callable[[], DevStack], data_dir: Path) -> None:
    stack = make_stack()
    ep = stack.start()
    _psql(ep, "registry", "CREATE TABLE device (id text); INSERT INTO device VALUES ('d1')")
    client = _redis(ep)
    client.set("shadow:d1", "on")
    client.close()
    stack.stop()
    assert _server_pids(data_dir) == []

    ep = stack.start()
    assert _psql(ep, "registry", "SELECT id FROM device") == "d1"
    client = _redis(ep)
    try:
        assert client.get("shadow:d1") == "on"
    finally:
        client.close()


def _crash_an_owner(data_dir: Path) -> Endpoints:
    """A process starts the stack and is SIGKILLed: its servers run on, owned by nobody."""
    script = ("import sys, time\n"
              "from gateway.runtime.devstack import DevStack\n"
              "ep = DevStack(sys.argv[1]).start()\n"
              "print(ep.pg_port, ep.redis_url, flush=True)\n"
              "time.sleep(600)\n")
    with subprocess.Popen([sys.executable, "-c", script, str(data_dir)],
                          stdout=subprocess.PIPE, text=True, cwd=ROOT) as owner:
        try:
            assert owner.stdout is not None
            pg_port, redis_url = owner.stdout.readline().split()
        finally:
            owner.kill()
    return Endpoints("127.0.0.1", int(pg_port), "postgres", redis_url)


def test_servers_of_a_dead_owner_are_leftovers_and_stopped(
    make_stack: Callable[[], DevStack], data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = _crash_an_owner(data_dir)
    _psql(crashed, "assets", "CREATE TABLE asset (id int); INSERT INTO asset VALUES (7)")
    old_pids = _server_pids(data_dir)
    assert old_pids

    caplog.set_level(logging.INFO, logger="gateway.runtime.devstack")
    successor = make_stack()  # same dir, the dead owner's servers still running
    ep2 = successor.start()
    assert "leftover PostgreSQL" in caplog.text and "leftover valkey" in caplog.text
    assert not set(old_pids) & set(_server_pids(data_dir))
    assert _psql(ep2, "assets", "SELECT id FROM asset") == "7"


def test_a_stack_beside_a_live_owner_uses_its_servers_and_never_stops_them(
    make_stack: Callable[[], DevStack], data_dir: Path
) -> None:
    owner = make_stack()
    ep = owner.start()
    servers = set(_server_pids(data_dir))
    guest = DevStack(data_dir)  # a CLI command beside a running gateway
    assert guest.start() == ep
    assert guest.guest and guest.owner_pid == os.getpid()
    _psql(ep, "registry", "CREATE TABLE seen (n int)")
    guest.stop()
    assert set(_server_pids(data_dir)) == servers
    assert _psql(ep, "registry", "SELECT count(*) FROM seen") == "0"
    client = _redis(ep)
    try:
        assert client.ping()
    finally:
        client.close()


def test_a_stack_that_may_not_share_is_refused_naming_the_owner(
    make_stack: Callable[[], DevStack], data_dir: Path
) -> None:
    owner = make_stack()
    ep = owner.start()
    servers = set(_server_pids(data_dir))
    with pytest.raises(DevStackBusy) as busy:
        DevStack(data_dir, share=False).start()  # a second `iotsphere serve`
    message = str(busy.value)
    assert f"pid {os.getpid()}" in message and str(data_dir) in message
    assert "IOTSPHERE_DATA_DIR" in message and f"kill {os.getpid()}" in message
    assert busy.value.pid == os.getpid()
    assert set(_server_pids(data_dir)) == servers
    assert _psql(ep, "registry", "SELECT 1") == "1"
    owner.stop()
    # Once the owner has stopped, the directory is free again.
    successor = make_stack()
    successor.start()
    assert not successor.guest


def test_stale_pidfiles_after_kill9(
    make_stack: Callable[[], DevStack], data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _crash_an_owner(data_dir)  # and then its servers too:
    pg_pidfile = data_dir / "postgres" / "postmaster.pid"
    valkey_pidfile = data_dir / "redis" / "valkey.pid"
    pids = [int(path.read_text().split()[0]) for path in (pg_pidfile, valkey_pidfile)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        _wait_dead(pid)
    assert pg_pidfile.exists() and valkey_pidfile.exists()

    caplog.set_level(logging.INFO, logger="gateway.runtime.devstack")
    ep = make_stack().start()
    assert "stale" in caplog.text
    assert str(pg_pidfile) in caplog.text and str(valkey_pidfile) in caplog.text
    for database in DATABASES:
        assert _psql(ep, database, "SELECT current_database()") == database
    client = _redis(ep)
    try:
        assert client.set("k", "v") and client.get("k") == "v"
    finally:
        client.close()


def test_stop_twice_and_context_manager(
    make_stack: Callable[[], DevStack], data_dir: Path
) -> None:
    stack = make_stack()
    stack.stop()  # never started
    with stack as ep:
        assert stack.start() == ep  # idempotent while running
        assert _psql(ep, "registry", "SELECT 1") == "1"
    assert _server_pids(data_dir) == []
    stack.stop()
    stack.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_unreachable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    # pytest's own 0700 temp dir, not opened up by the data_dir fixture
    with pytest.raises(DevStackError, match="cannot reach"):
        DevStack(tmp_path / "stack").start()
    assert _server_pids(tmp_path) == []
