"""The npm tools in tests/js (reference clients, puppeteer-core), installed on first use.

A tool that cannot be had skips its test with the reason, except under ``CI=true``, where
it fails (``tests.support.tools.unavailable``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.tools import unavailable

__all__ = ["JS", "npm_ready", "unavailable"]

JS = Path(__file__).resolve().parents[1] / "js"
NPM_INSTALL_TIMEOUT = 300.0


def npm_ready(*packages: str) -> None:
    """``npm install`` in tests/js (from its package-lock) when one of ``packages`` is
    missing from node_modules; bounded in time."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed for the npm test tools in tests/js")
    if all((JS / "node_modules" / package / "package.json").is_file() for package in packages):
        return
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS,
                          capture_output=True, text=True, timeout=NPM_INSTALL_TIMEOUT,
                          check=False)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
