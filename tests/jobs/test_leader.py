"""One replica at a time leads the background jobs; another takes over when it goes."""

from __future__ import annotations

import asyncio

from gateway.jobs.leader import JobLeader
from gateway.stores import Stores

CHECK = 0.05


async def _one_leads(leaders: list[JobLeader]) -> JobLeader:
    """The one leader, once exactly one leads and still does after many more attempts."""
    async with asyncio.timeout(30):
        while True:
            leading = [x for x in leaders if x.is_leader]
            if len(leading) == 1:
                await asyncio.sleep(CHECK * 10)
                if [x for x in leaders if x.is_leader] == leading:
                    return leading[0]
            await asyncio.sleep(CHECK)


async def test_one_of_three_leads_and_another_takes_over_when_it_goes(stores: Stores) -> None:
    leaders = [JobLeader(stores.registry.dsn, check=CHECK) for _ in range(3)]
    for leader in leaders:
        leader.start()
    try:
        first = await _one_leads(leaders)
        await first.aclose()  # its connection closes: the lock is free
        second = await _one_leads([x for x in leaders if x is not first])
        assert second is not first
    finally:
        for leader in leaders:
            await leader.aclose()


async def test_a_leader_whose_connection_is_cut_stops_leading(stores: Stores) -> None:
    """The server ends the leader's session (as when its host dies): the lock is freed and
    exactly one replica leads again, on another session."""
    holder = """SELECT l.pid FROM pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 4213"""
    leaders = [JobLeader(stores.registry.dsn, check=CHECK) for _ in range(2)]
    for leader in leaders:
        leader.start()
    try:
        await _one_leads(leaders)
        cut = await stores.registry.pool.fetchval(holder)
        assert cut is not None
        await stores.registry.pool.execute("SELECT pg_terminate_backend($1)", cut)
        await _one_leads(leaders)  # waits while nobody leads, then for the others' attempts
        pid = await stores.registry.pool.fetchval(holder)
        assert pid is not None and pid != cut
    finally:
        for leader in leaders:
            await leader.aclose()
