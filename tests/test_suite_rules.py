"""The suite's own rules: a missing tool fails under CI=true, every run has a printed
hypothesis seed, and a hung test is cut off by a per-test timeout."""

from __future__ import annotations

import hypothesis.core
import pytest

from tests.support.tools import unavailable


def test_a_missing_tool_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("no such tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("no such tool")


def test_hypothesis_runs_from_the_seed_in_the_header(pytestconfig: pytest.Config) -> None:
    seed = pytestconfig.getoption("hypothesis_seed")
    assert seed is not None
    assert hypothesis.core.global_force_seed == int(seed)


def test_every_test_has_a_timeout(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) == 300
