"""Two gateway processes on the same stores: the background jobs run in one of them, and
in the other once the first is killed (SIGKILL, no shutdown)."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import httpx

from gateway.settings import Settings
from tests.support.serve_process import GatewayProcess, gateway_process

FAST = {"JOB_LEADER_CHECK": "0.2", "RECONCILE_INTERVAL": "0.2"}


async def _jobs(gateway: GatewayProcess) -> tuple[bool, int]:
    """(leads the jobs, reconciler runs so far), from the process's /metrics."""
    async with httpx.AsyncClient(base_url=f"http://{gateway.address}") as http:
        text = (await http.get("/metrics")).text
    leader = re.search(r"^iotsphere_job_leader (\S+)$", text, re.M)
    runs = re.search(r'^iotsphere_job_runs_total\{job="reconciler"\} (\S+)$', text, re.M)
    return (leader is not None and float(leader[1]) == 1.0,
            int(float(runs[1])) if runs else 0)


async def _settled(gateways: list[GatewayProcess]) -> list[tuple[bool, int]]:
    """The processes' job state once exactly one leads and has run the reconciler."""
    async with asyncio.timeout(60):
        while True:
            states = [await _jobs(g) for g in gateways]
            if sum(lead for lead, _ in states) == 1 and any(
                    runs for lead, runs in states if lead):
                return states
            await asyncio.sleep(0.2)


async def test_jobs_run_in_one_process_and_move_when_it_is_killed(settings: Settings) -> None:
    async with gateway_process(settings, **FAST) as a, gateway_process(settings, **FAST) as b:
        states = await _settled([a, b])
        await asyncio.sleep(1.0)  # five reconciler intervals
        again = [await _jobs(g) for g in (a, b)]
        leader, follower = (a, b) if states[0][0] else (b, a)
        follower_runs = again[1][1] if leader is a else again[0][1]
        assert follower_runs == 0  # the follower ran nothing meanwhile
        assert max(again[0][1], again[1][1]) > max(states[0][1], states[1][1])

        os.killpg(leader.proc.pid, signal.SIGKILL)
        await leader.wait()
        async with asyncio.timeout(60):
            while True:
                lead, runs = await _jobs(follower)
                if lead and runs:
                    break
                await asyncio.sleep(0.2)
