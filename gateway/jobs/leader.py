"""Background jobs on one replica at a time: the one holding the jobs' advisory lock.

Every replica (and every worker) runs a ``JobLeader``; the jobs (reconciler, retention,
partition upkeep) wait for ``leading()`` before each run. Leadership is a
transaction-level advisory lock in the registry, taken in a transaction that the leader
keeps open on a connection of its own (checked every ``check`` seconds): a lock of a
transaction rather than of a session, so it holds through PgBouncer in transaction pooling
mode, where a session lock would stay on a server connection other clients then share.
The transaction takes no snapshot and writes nothing, so it holds back no vacuum.

When the leader dies or loses its connection, PostgreSQL ends its transaction and frees
the lock; another replica takes it at its next attempt (every ``check`` seconds). A leader
whose connection breaks mid-run may finish that run beside the new leader: every job is
idempotent (they were safe on all replicas at once before), so the lock saves repeated
work and load, and correctness does not depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib

import asyncpg

from gateway.metrics import JOB_LEADER

log = logging.getLogger("gateway.jobs.leader")

# pg_try_advisory_xact_lock(int4, int4): a namespace of our own, then the lock's name.
_NAMESPACE = 0x1075
_LOCK = zlib.crc32(b"iotsphere background jobs") & 0x7FFF_FFFF


class JobLeader:
    def __init__(self, dsn: str, *, check: float = 5.0, timeout: float = 5.0,
                 statement_cache: int = 100) -> None:
        self._dsn = dsn
        self._check = check
        self._timeout = timeout
        self._statement_cache = statement_cache
        self._leading = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def leading(self) -> None:
        """Returns at once while this replica leads; else when it becomes the leader."""
        await self._leading.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name="job-leader")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._leading.clear()  # stopping: its connection closed, the lock is free
        JOB_LEADER.set(0)

    def _set(self, leading: bool) -> None:
        if leading and not self._leading.is_set():
            log.info("this replica now runs the background jobs")
            self._leading.set()
        elif not leading and self._leading.is_set():
            log.warning("this replica no longer runs the background jobs")
            self._leading.clear()
        JOB_LEADER.set(1 if leading else 0)

    async def _campaign(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._timeout,
                                             statement_cache_size=self._statement_cache)
                await self._hold(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    TimeoutError) as exc:
                log.debug("job leadership attempt failed: %s", exc)
            except asyncio.CancelledError:
                self._leading.clear()
                raise
            finally:
                if self._leading.is_set():
                    self._set(False)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), self._timeout)
            await asyncio.sleep(self._check)

    async def _hold(self, conn: asyncpg.Connection) -> None:
        """Tries for the lock each ``check`` seconds; once taken, keeps its transaction
        open, checking the connection, until the connection fails."""
        while True:
            tx = conn.transaction()
            await tx.start()
            taken = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)",
                                        _NAMESPACE, _LOCK, timeout=self._timeout)
            if not taken:
                await tx.rollback()
                await asyncio.sleep(self._check)
                continue
            self._set(True)
            while True:
                await asyncio.sleep(self._check)
                await conn.fetchval("SELECT 1", timeout=self._timeout)
