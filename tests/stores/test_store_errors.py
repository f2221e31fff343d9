"""Driver errors that are the store's answer, not an outage: a transaction rolled back to
break a deadlock is a retryable STORE_UNAVAILABLE that leaves the circuit closed."""

from __future__ import annotations

import asyncio

from gateway.errors import StoreConflict
from gateway.stores import Stores
from tests.conftest import Tenant


async def test_a_deadlock_is_a_retryable_conflict_not_an_outage(
    stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    registry = stores.registry
    both_locked = asyncio.Barrier(2)

    async def lock(first: object, second: object) -> None:
        async with registry.transaction() as tx:
            await tx.execute("UPDATE tenants SET name = name WHERE id = $1", first)
            await both_locked.wait()
            await tx.execute("UPDATE tenants SET name = name WHERE id = $1", second)

    outcomes = await asyncio.gather(lock(tenant.id, other_tenant.id),
                                    lock(other_tenant.id, tenant.id), return_exceptions=True)
    [conflict] = [o for o in outcomes if isinstance(o, BaseException)]
    assert isinstance(conflict, StoreConflict), repr(conflict)
    assert conflict.extensions == {"code": "STORE_UNAVAILABLE", "store": "registry",
                                   "retryable": True}
    assert "nothing was written" in conflict.message
    # The breaker took it for an answer: no failure counted towards opening the circuit.
    assert registry.breaker.state == "closed" and registry.breaker._failures == 0
    # The survivor committed; the store still answers.
    assert await registry.fetchrow("SELECT 1") is not None

