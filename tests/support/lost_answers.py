"""A commit whose answer never reaches the gateway: the statement runs and commits for
real, then the connection is cut before its answer is read (what a network cut or a
server crash right after COMMIT looks like to the client). Injected by subclassing
asyncpg's connection class, as asyncpg's own tests inject faults; no store is mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from gateway.stores.base import PgStore


def _losing(statement: str, lost: list[str]) -> type[asyncpg.Connection]:
    class AnswerLostAfterCommit(asyncpg.Connection):  # type: ignore[misc]
        async def _answer_lost(self, query: str) -> None:
            if query.strip() == statement.strip() and not lost:
                lost.append(query)
                self.terminate()  # the server has the commit; the client never hears of it
                raise asyncpg.exceptions.ConnectionDoesNotExistError(
                    "connection was closed in the middle of operation")

        async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
            result = await super().execute(query, *args, **kwargs)
            await self._answer_lost(query)
            return result

        async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
            result = await super().fetch(query, *args, **kwargs)
            await self._answer_lost(query)
            return result

        async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
            result = await super().fetchrow(query, *args, **kwargs)
            await self._answer_lost(query)
            return result

        async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
            result = await super().fetchval(query, *args, **kwargs)
            await self._answer_lost(query)
            return result

    return AnswerLostAfterCommit


@asynccontextmanager
async def answer_lost(store: PgStore, statement: str) -> AsyncIterator[list[str]]:
    """While open, the first run of ``statement`` (a named query's text, or ``COMMIT;``)
    on ``store`` commits and then loses its answer; yields the statements it hid."""
    lost: list[str] = []
    await store.aclose()
    store.connection_class = _losing(statement, lost)
    await store.connect()
    try:
        yield lost
    finally:
        await store.aclose()
        store.connection_class = asyncpg.Connection
        await store.connect()
