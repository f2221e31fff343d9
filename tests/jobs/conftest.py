"""A job leader for the tests that run the periodic jobs' loops."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.jobs.leader import JobLeader
from gateway.stores import Stores


@pytest.fixture
async def leader(stores: Stores) -> AsyncIterator[JobLeader]:
    """This test's replica, leading the jobs (nothing else uses the test's databases)."""
    elected = JobLeader(stores.registry.dsn, check=0.05)
    elected.start()
    try:
        await elected.leading()
        yield elected
    finally:
        await elected.aclose()
