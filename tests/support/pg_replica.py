"""A PostgreSQL primary with a streaming standby (hot standby), for the read replica tests.

The suite's shared server allows no replication connection (the embedded stack's
pg_hba.conf has no ``replication`` line), so the pair is its own, made with the embedded
stack's binaries: a primary whose pg_hba.conf lets local replication connections in (the
defaults ``wal_level = replica`` and ``max_wal_senders = 10`` already stream), and a
standby cloned from it by ``pg_basebackup -R`` (which writes ``primary_conninfo`` and
``standby.signal``). Both live in a temp dir outside pytest's tmp root: as root, the
servers run as the embedded stack's system user, which must reach their data dirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from gateway.runtime.devstack import free_port, pg_account, postgres_bin

HOST = "127.0.0.1"

_CONF = f"""
listen_addresses = '{HOST}'
unix_socket_directories = ''
shared_buffers = 32MB
max_connections = 60
fsync = off                     # a test pair: nothing needs to survive a crash
timezone = 'UTC'
hot_standby_feedback = on       # the standby's queries are not cancelled by vacuum
"""
_HBA = f"""host all all {HOST}/32 trust
host replication all {HOST}/32 trust
"""


class PgPair:
    """``start()`` the pair; ``dsn("primary"|"standby", database)``; ``stop_standby()`` and
    ``start_standby()`` for an outage; ``close()`` stops both and removes their files."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="iotsphere-replica-"))
        self.root.chmod(0o711)
        self._account = pg_account()  # the embedded stack's system user, made if missing
        self.ports = {"primary": free_port(), "standby": free_port()}

    def dsn(self, server: str, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.ports[server]}/{database}"

    def _run(self, *args: str | Path, timeout: float = 120.0) -> None:
        uid, gid = self._account if self._account else (None, None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run(
            [str(a) for a in args], cwd="/", capture_output=True, text=True, check=False,
            timeout=timeout, user=uid, group=gid, extra_groups=[] if uid is not None else None,
            env=env, start_new_session=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(str(args[0])).name} failed: {done.stdout}{done.stderr}")

    def _owned(self, path: Path, *, directory: bool) -> Path:
        if directory:
            path.mkdir(mode=0o700)
        else:
            path.touch()
        if self._account:
            os.chown(path, *self._account)
        return path

    def _data(self, server: str) -> Path:
        return self.root / server

    def _pg_ctl(self, server: str, action: str) -> None:
        data = self._data(server)
        if action == "start":
            self._run(postgres_bin("pg_ctl"), "start", "-D", data, "-w", "-t", "60",
                      "-l", self.root / f"{server}.log", "-o", f"-p {self.ports[server]}")
        else:
            self._run(postgres_bin("pg_ctl"), "stop", "-D", data, "-m", "fast", "-w", "-t", "30")

    def start(self) -> None:
        primary = self._owned(self._data("primary"), directory=True)
        for server in ("primary", "standby"):
            self._owned(self.root / f"{server}.log", directory=False)
        self._run(postgres_bin("initdb"), "-D", primary, "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C")
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(_CONF)
        (primary / "pg_hba.conf").write_text(_HBA)
        self._pg_ctl("primary", "start")
        standby = self._owned(self._data("standby"), directory=True)
        self._run(postgres_bin("pg_basebackup"), "-h", HOST, "-p", str(self.ports["primary"]),
                  "-U", "postgres", "-D", standby, "-R", "-X", "stream", "-c", "fast")
        self._pg_ctl("standby", "start")

    def stop_standby(self) -> None:
        self._pg_ctl("standby", "stop")

    def start_standby(self) -> None:
        self._pg_ctl("standby", "start")

    def close(self) -> None:
        for server in ("standby", "primary"):
            if (self._data(server) / "postmaster.pid").exists():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._pg_ctl(server, "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    async def caught_up(self, within: float = 30.0) -> None:
        """Waits until the standby has replayed everything the primary has written now."""
        primary = await asyncpg.connect(self.dsn("primary", "postgres"))
        standby = await asyncpg.connect(self.dsn("standby", "postgres"))
        query = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
        try:
            target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
            async with asyncio.timeout(within):
                while True:
                    if await standby.fetchval(query, target):
                        return
                    await asyncio.sleep(0.05)
        finally:
            await primary.close()
            await standby.close()

    async def pause_replay(self, paused: bool) -> None:
        """Pauses (or resumes) the standby's replay of the WAL it keeps receiving."""
        standby = await asyncpg.connect(self.dsn("standby", "postgres"))
        try:
            await standby.execute(
                "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")
        finally:
            await standby.close()
