"""Tests that need a tool from outside the project (npm packages, the shared contract
check) skip with the reason when it is missing, except under ``CI=true``, where they fail:
CI must run every test, and a skip there would read as a pass."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skips the test with ``reason``; under CI=true fails it instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing tool fails instead of skipping)")
    pytest.skip(reason)
