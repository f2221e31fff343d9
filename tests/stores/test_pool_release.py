"""A pooled connection goes back to its pool without a reset round trip: the gateway keeps
no session state on pooled connections (gateway/stores/base.py, ``_keep_session``)."""

from __future__ import annotations

from typing import Any

from gateway.settings import Settings
from gateway.stores.registry import RegistryStore


async def test_a_store_call_is_one_statement_and_a_transaction_is_rolled_back(
        settings: Settings) -> None:
    assert settings.registry_dsn is not None
    store = RegistryStore(settings.registry_dsn, min_size=1, max_size=1)
    await store.connect()
    try:
        sent: list[str] = []

        def log(record: Any) -> None:
            sent.append(record.query)

        async with store.acquire() as conn:
            conn.add_query_logger(log)
        await store.fetch("SELECT 1")
        await store.fetchrow("SELECT 2")
        # asyncpg's default reset would add "SELECT pg_advisory_unlock_all(); CLOSE ALL;
        # UNLISTEN *; RESET ALL;" after each of the three releases.
        assert sent == ["SELECT 1", "SELECT 2"]

        # A transaction left open on a released connection is still rolled back.
        async with store.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (n int)")
        assert sent[-1] == "ROLLBACK"
        async with store.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await store.aclose()
