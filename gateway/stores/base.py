"""What every store adapter shares: round-trip counting and driver-error translation.

Round trips are counted per request through a context variable, so adapters stay shared
by all requests while ``extensions.storeCalls`` still reports one request's own calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import orjson

from gateway import tracing
from gateway.errors import BadUserInput, StoreUnavailable
from gateway.metrics import STORE_CALLS, STORE_SECONDS
from gateway.sqlfiles import queries


@dataclass
class StoreCalls:
    """Round trips one request made to each store."""

    registry: int = 0
    assets: int = 0
    telemetry: int = 0
    shadows: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_calls: ContextVar[StoreCalls | None] = ContextVar("store_calls", default=None)


def begin_counting() -> StoreCalls:
    """Starts counting the current request's round trips (tasks it spawns share the count)."""
    calls = StoreCalls()
    _calls.set(calls)
    return calls


def record_round_trip(store: str) -> None:
    STORE_CALLS.labels(store).inc()
    calls = _calls.get()
    if calls is not None:
        setattr(calls, store, getattr(calls, store) + 1)


# Errors that mean "the store is not there or not answering", as opposed to a bug in a query.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.QueryCanceledError,
)


@contextmanager
def translate_errors(store: str) -> Iterator[None]:
    """Maps driver errors that mean an outage to ``StoreUnavailable`` naming the store, and
    values the store cannot take to ``BadUserInput``; times the call for /metrics."""
    started = time.perf_counter()
    span = tracing.store_span(store)  # None unless tracing is on (gateway/tracing.py)
    try:
        yield
    except StoreUnavailable:
        raise
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(store, type(exc).__name__) from exc
    except asyncpg.exceptions.DataError as exc:
        # SQLSTATE class 22 (and asyncpg's argument encoding): queries take client values
        # only as parameters, so this is a value such as a NUL character in text or JSON, or
        # an integer beyond 64 bits. The driver's message names internals; ours does not.
        raise BadUserInput(
            f"A value in this request cannot be stored or searched by the {store} store "
            "(a NUL character, or a number out of range)"
        ) from exc
    finally:
        STORE_SECONDS.labels(store).observe(time.perf_counter() - started)
        if span is not None:
            tracing.end_store_span(span)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as text; orjson parses it several times faster than json.
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="text",
        encoder=lambda value: orjson.dumps(value).decode(), decoder=orjson.loads,
    )


class PgStore:
    """An asyncpg pool over one database, with the store's named queries."""

    name = "postgres"

    def __init__(self, dsn: str, *, timeout: float = 5.0, min_size: int = 1, max_size: int = 10):
        self._dsn = dsn
        self._timeout = timeout
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self.sql = queries(self.name)

    async def connect(self) -> None:
        with translate_errors(self.name):
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min_size, max_size=self._max_size,
                init=_init_connection, timeout=self._timeout,
            )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} store used before connect()")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction on one pooled connection; BEGIN and COMMIT count as round trips."""
        with translate_errors(self.name):
            async with self.pool.acquire() as conn, conn.transaction():
                record_round_trip(self.name)
                yield Tx(conn, self.name, self._timeout)
                record_round_trip(self.name)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        record_round_trip(self.name)
        with translate_errors(self.name):
            return await self.pool.fetch(query, *args, timeout=self._timeout)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        record_round_trip(self.name)
        with translate_errors(self.name):
            return await self.pool.fetchrow(query, *args, timeout=self._timeout)

    async def execute(self, query: str, *args: Any) -> str:
        record_round_trip(self.name)
        with translate_errors(self.name):
            return await self.pool.execute(query, *args, timeout=self._timeout)


class Tx:
    """One connection inside a transaction; every statement counts as a round trip."""

    def __init__(self, conn: asyncpg.Connection, store: str, timeout: float) -> None:
        self.conn = conn
        self._store = store
        self._timeout = timeout

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        record_round_trip(self._store)
        return await self.conn.fetch(query, *args, timeout=self._timeout)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        record_round_trip(self._store)
        return await self.conn.fetchrow(query, *args, timeout=self._timeout)

    async def execute(self, query: str, *args: Any) -> str:
        record_round_trip(self._store)
        return await self.conn.execute(query, *args, timeout=self._timeout)


def align(keys: list[Any], rows: list[asyncpg.Record], column: str) -> list[Any]:
    """Rows re-ordered to match ``keys``, ``None`` for a miss (``= any($1)`` keeps no order)."""
    by_key = {row[column]: row for row in rows}
    return [by_key.get(key) for key in keys]


def group(keys: list[Any], rows: list[asyncpg.Record], column: str) -> list[list[asyncpg.Record]]:
    """Rows grouped under each key in ``keys`` order, an empty list for a miss."""
    grouped: dict[Any, list[asyncpg.Record]] = {key: [] for key in keys}
    for row in rows:
        grouped.setdefault(row[column], []).append(row)
    return [grouped[key] for key in keys]
