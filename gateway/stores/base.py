"""What every store adapter shares: round-trip counting, driver-error translation and
the choice between a store's primary and its read replica.

Round trips are counted per request through a context variable, so adapters stay shared
by all requests while ``extensions.storeCalls`` still reports one request's own calls. A
read served by a read replica is one round trip to the same store, counted once even when
the replica fails and the read is answered by the primary instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from gateway import tracing
from gateway.errors import BadUserInput, StoreConflict, StoreUnavailable
from gateway.metrics import LAGGING_READS, STORE_CALLS, STORE_SECONDS
from gateway.stores.breaker import CircuitBreaker
from gateway.stores.read_routing import lagging_reads_allowed, pin_to_primary
from gateway.stores.sqlfiles import queries

if TYPE_CHECKING:
    from gateway.stores.read_replica import ReadReplica

log = logging.getLogger("gateway.stores")


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


@cache
def store_metrics(store: str) -> tuple[Any, Any]:
    """The store's round-trip counter and latency histogram children, looked up once (a
    label lookup takes a lock and hashes the labels: twice per store call before)."""
    return STORE_CALLS.labels(store), STORE_SECONDS.labels(store)


def record_round_trip(store: str) -> None:
    store_metrics(store)[0].inc()
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


def translated(store: str, exc: BaseException) -> BaseException | None:
    """The public error a driver error raised by ``store`` stands for: ``StoreUnavailable``
    naming the store for an outage, ``StoreConflict`` for a retryable conflict,
    ``BadUserInput`` for a value the store cannot take; None to let ``exc`` through."""
    if isinstance(exc, StoreUnavailable):
        return None
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(store, type(exc).__name__)
    if isinstance(exc, (asyncpg.exceptions.DeadlockDetectedError,
                        asyncpg.exceptions.SerializationError)):
        # E.g. two bulk ingests locking the same rollup rows in opposite orders.
        return StoreConflict(store)
    if isinstance(exc, asyncpg.exceptions.DataError):
        # SQLSTATE class 22 (and asyncpg's argument encoding): queries take client values
        # only as parameters, so this is a value such as a NUL character in text or JSON, or
        # an integer beyond 64 bits. The driver's message names internals; ours does not.
        return BadUserInput(
            f"A value in this request cannot be stored or searched by the {store} store "
            "(a NUL character, or a number out of range)"
        )
    return None


@contextmanager
def translate_errors(store: str) -> Iterator[None]:
    """Raises driver errors as ``translated`` says; times the call for /metrics and traces
    it."""
    started = time.perf_counter()
    span = tracing.store_span(store)  # None unless tracing is on (gateway/tracing.py)
    try:
        yield
    except BaseException as exc:
        error = translated(store, exc)
        if error is None:
            raise
        raise error from exc
    finally:
        store_metrics(store)[1].observe(time.perf_counter() - started)
        if span is not None:
            tracing.end_store_span(span)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as text; orjson parses it several times faster than json.
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="text",
        encoder=lambda value: orjson.dumps(value).decode(), decoder=orjson.loads,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to its pool as it is. The gateway leaves no session state on
    pooled connections (no SET, LISTEN, session advisory lock, cursor or temporary table
    outliving its transaction; the jobs' leader holds its lock on a connection of its own),
    so asyncpg's default reset (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL)
    had nothing to undo and cost one more round trip after every store call: ~0.1 ms of
    gateway CPU and PostgreSQL work each. asyncpg still rolls back a transaction left open
    before calling this."""


class PgStore:
    """An asyncpg pool over one database, with the store's named queries.

    The pool is created on first use when the database cannot be reached at start (and
    again after a failed attempt), so the gateway starts and serves the other stores while
    this one is down. Every call passes the store's circuit breaker."""

    name = "postgres"

    def __init__(
        self, dsn: str, *, timeout: float = 5.0, min_size: int = 1, max_size: int = 10,
        breaker: CircuitBreaker | None = None, statement_cache: int = 100,
        name: str | None = None,
    ):
        if name is not None:  # a read replica's pool is named as its store
            self.name = name
        self._dsn = dsn
        # 0 behind a transaction-pooling PgBouncer: a named statement prepared on one
        # server connection is unknown on the next one the pooler hands out.
        self.statement_cache = statement_cache
        self._timeout = timeout
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._creating: asyncio.Future[asyncpg.Pool] | None = None
        self.breaker = breaker or CircuitBreaker(self.name)
        self._seconds = store_metrics(self.name)[1]
        # Set while the store's migrations have not run: calls fail as unavailable rather
        # than reach tables that may not exist yet.
        self.held: str | None = None
        self.sql = queries(self.name)
        # The class of the pool's connections: tests inject faults by subclassing it
        # (asyncpg's own habit); takes effect for the next pool (``aclose``, then ``connect``).
        self.connection_class: type[asyncpg.Connection] = asyncpg.Connection
        # Serves ``fetch_may_lag`` while usable (gateway/stores/read_replica.py); opened and
        # closed by ``gateway.stores.open_stores``.
        self.read_replica: ReadReplica | None = None

    async def connect(self) -> None:
        """Creates the pool if the database answers; if not, the first call retries."""
        try:
            async with self._guarded():
                await self._ensure_pool()
        except StoreUnavailable as exc:
            log.warning("%s; continuing without it until it answers", exc.message)

    async def migrated(self, conn: asyncpg.Connection) -> None:
        """Called on the migrating connection once this store's migrations have run
        (adapters that depend on what the migrations chose learn it here)."""

    async def aclose(self) -> None:
        if self._creating is not None:
            self._creating.cancel()
            await asyncio.gather(self._creating, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:  # a hung server would hold a graceful close forever
                await asyncio.wait_for(pool.close(), self._timeout)
            except TimeoutError:
                pool.terminate()

    async def _ensure_pool(self) -> asyncpg.Pool:
        """The pool, created by one attempt that every concurrent caller shares: while the
        database does not answer, callers fail together after one connect timeout instead
        of queueing for one attempt each."""
        if self._pool is not None:
            return self._pool
        if self._creating is None:
            self._creating = asyncio.ensure_future(self._create_pool())
            # Retrieved here too, in case every caller was cancelled meanwhile.
            self._creating.add_done_callback(lambda t: t.cancelled() or t.exception())
        # Shielded: a cancelled caller must not cancel the attempt the others wait on.
        return await asyncio.shield(self._creating)

    async def _create_pool(self) -> asyncpg.Pool:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min_size, max_size=self._max_size,
                init=_init_connection, reset=_keep_session, timeout=self._timeout,
                connection_class=self.connection_class,
                statement_cache_size=self.statement_cache,
            )
            return self._pool
        finally:
            self._creating = None

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool for direct use (tests, benchmarks); adapter methods go through the
        breaker instead."""
        if self._pool is None:
            raise StoreUnavailable(self.name, "not connected")
        return self._pool

    @asynccontextmanager
    async def _guarded(self) -> AsyncIterator[None]:
        """The store boundary: held stores refuse, the breaker decides, driver errors are
        translated (and feed the breaker)."""
        if self.held is not None:
            raise StoreUnavailable(self.name, self.held)
        with self.breaker.guard(), translate_errors(self.name):
            yield

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """One pooled connection through the breaker. Getting it and giving it back are
        each bounded by the store timeout: on a server that hangs, asyncpg's release would
        otherwise wait for the timed-out query's cancellation forever (measured: requests
        then hung until the request timeout). So a call to a hung store fails within about
        twice the timeout: the query's, then the cancellation's."""
        async with self._guarded():
            pool = await self._ensure_pool()
            # asyncio.timeout, not acquire(timeout=): asyncpg bounds the acquire with
            # wait_for, which on Python 3.11 runs it in a task of its own (a task and a
            # loop iteration per store call). The release gets the same bound explicitly.
            async with asyncio.timeout(self._timeout):
                conn = await pool.acquire()
            try:
                yield conn
            finally:
                await pool.release(conn, timeout=self._timeout)

    async def ping(self) -> None:
        """One ``SELECT 1`` through the breaker (readiness; not a request's round trip)."""
        async with self.acquire() as conn:
            await conn.fetchval("SELECT 1", timeout=self._timeout)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction on one pooled connection; BEGIN and COMMIT count as round trips.
        The request's later reads go to the primary (it may have written)."""
        pin_to_primary()
        async with self.acquire() as conn, conn.transaction():
            record_round_trip(self.name)
            yield Tx(conn, self.name, self._timeout)
            record_round_trip(self.name)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        record_round_trip(self.name)
        return await self._statement("fetch", query, args)  # type: ignore[no-any-return]

    async def fetch_uncounted(self, query: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        return await self._statement("fetch", query, args)  # type: ignore[no-any-return]

    async def fetch_may_lag(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """``fetch`` for a read that may be a little behind the latest writes: served by the
        read replica when the request allows it (``gateway.stores.read_routing``) and the
        replica is within its lag bound. A replica that turns out unavailable is left out
        and the read is answered by the primary; so is one conflicting with its recovery
        (a hot standby cancels a query that holds back the replay of a vacuum)."""
        replica = self.read_replica
        if replica is None:
            return await self.fetch(query, *args)
        if not (lagging_reads_allowed() and replica.usable()):
            LAGGING_READS.labels(self.name, "primary").inc()
            return await self.fetch(query, *args)
        record_round_trip(self.name)
        try:
            rows = await replica.store.fetch_uncounted(query, args)
        except StoreUnavailable as exc:
            replica.failed(exc)
        except StoreConflict:
            pass
        else:
            LAGGING_READS.labels(self.name, "replica").inc()
            return rows
        LAGGING_READS.labels(self.name, "primary").inc()
        return await self.fetch_uncounted(query, args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        record_round_trip(self.name)
        return await self._statement("fetchrow", query, args)

    async def execute(self, query: str, *args: Any) -> str:
        record_round_trip(self.name)
        pin_to_primary()  # the request's later reads must see what this may have written
        return await self._statement("execute", query, args)  # type: ignore[no-any-return]

    async def _statement(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        """``conn.<method>(query, *args)`` on a pooled connection with everything
        ``acquire`` and ``_guarded`` put around it (held stores refuse, the breaker decides
        and hears the outcome, driver errors are translated, the call is timed and traced;
        getting, using and giving back the connection each bounded by the store timeout),
        written out as one coroutine: those three nested generator-based context managers
        cost a fifth of a round trip's CPU in the gateway (callgrind, ``fetch("SELECT 1")``:
        298 k instructions through them, 239 k like this). Keep the two in step."""
        name = self.name
        if self.held is not None:
            raise StoreUnavailable(name, self.held)
        breaker = self.breaker
        breaker.before()
        try:
            started = time.perf_counter()
            span = tracing.store_span(name)  # None unless tracing is on
            try:
                pool = self._pool
                if pool is None:
                    pool = await self._ensure_pool()
                async with asyncio.timeout(self._timeout):
                    conn = await pool.acquire()
                try:
                    result = await getattr(conn, method)(query, *args, timeout=self._timeout)
                finally:
                    await pool.release(conn, timeout=self._timeout)
            except BaseException as exc:
                error = translated(name, exc)
                if error is None:
                    raise
                raise error from exc
            finally:
                self._seconds.observe(time.perf_counter() - started)
                if span is not None:
                    tracing.end_store_span(span)
        except BaseException as exc:
            breaker.failed_with(exc)
            raise
        breaker.success()
        return result


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
