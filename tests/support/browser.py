"""Debian's headless Chromium for the browser tests, installed with apt-get when missing.

Where it cannot be installed (not root, no apt-get, no Debian mirror) the tests are skipped
with the reason, except under ``CI=true``, where they fail (tests/support/js.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.js import unavailable

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
