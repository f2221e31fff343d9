"""The browser tests' shared set-up: Debian's headless Chromium (installed with apt-get
when missing) with puppeteer-core, the gateway served on a loopback port with its dev key,
and a page script of tests/js run by node, whose JSON report the test checks.

Where Chromium cannot be installed (not root, no apt-get, no Debian mirror) the tests are
skipped with the reason, except under ``CI=true``, where they fail (tests/support/js.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from tests.support.js import JS, npm_ready, unavailable
from tests.support.live_server import serve

CHROMIUM = "/usr/bin/chromium"
APT_TIMEOUT = 900.0


def ensure_chromium() -> str:
    """The path of a working Chromium, installing Debian's ``chromium`` package if needed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if shutil.which("apt-get") is None:
        unavailable(f"{CHROMIUM} is missing and there is no apt-get to install chromium")
    if os.geteuid() != 0:
        unavailable(f"{CHROMIUM} is missing; apt-get install chromium needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update"],
             ["apt-get", "install", "-y", "--no-install-recommends", "chromium"])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, check=False,
                              timeout=APT_TIMEOUT)
        if done.returncode != 0:
            unavailable(f"{' '.join(step)} failed: {done.stderr.strip()[-500:]}")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


def chromium_with_puppeteer() -> str:
    """Chromium's path, once puppeteer-core (which drives it) is installed too."""
    path = ensure_chromium()
    npm_ready("puppeteer-core")
    return path


@asynccontextmanager
async def dev_origin(settings: Settings, stores: Stores, dev_key: str) -> AsyncIterator[str]:
    """``http://127.0.0.1:<port>``: the gateway with ``dev_key`` as its development key,
    which its pages prefill for a loopback browser (as in embedded mode)."""
    async with serve(create_app(settings, stores=stores, dev_key=dev_key)) as address:
        yield f"http://{address}"


async def run_page_script(script: str, *args: str, limit: float) -> dict[str, Any]:
    """Runs ``node tests/js/<script> <args>`` for at most ``limit`` s; its stdout is one
    JSON report, returned (and printed, so a failing test shows it). A non-zero exit fails
    with its stderr."""
    node = await asyncio.create_subprocess_exec(
        "node", str(JS / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(node.communicate(), limit)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert node.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    print(json.dumps(report, indent=1))
    return report
