"""load_settled (resolvers/execution/batch_fields.py) answers what one ``load`` per key
answers, through the same cache and batches: pure logic over a real DataLoader."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiodataloader import DataLoader

from resolvers.execution.batch_fields import load_settled, settled


def _loader(batches: list[list[Any]]) -> DataLoader:
    async def load(keys: list[Any]) -> list[Any]:
        batches.append(list(keys))
        return [ValueError(f"no {k}") if k == "bad" else k.upper() for k in keys]
    return DataLoader(load)


async def test_the_same_values_batches_and_cache_as_one_load_per_key() -> None:
    keys = ["a", "b", "a", "bad", "c"]
    by_load: list[list[Any]] = []
    by_level: list[list[Any]] = []
    plain, level = _loader(by_load), _loader(by_level)
    expected = await settled([plain.load(k) for k in keys])
    got = await load_settled(level, keys)
    assert [repr(v) for v in got] == [repr(v) for v in expected]
    assert got[:3] == ["A", "B", "A"] and isinstance(got[3], ValueError)
    assert by_level == by_load == [["a", "b", "bad", "c"]]  # one batch, each key once
    # Cached keys cost no batch; new keys asked together with load() share one batch.
    one = level.load("d")
    many = asyncio.ensure_future(load_settled(level, ["a", "d", "e"]))
    assert await one == "D"
    assert await many == ["A", "D", "E"]
    assert by_level[1:] == [["d", "e"]]


async def test_a_missing_key_fails_as_load_does() -> None:
    loader = _loader([])
    with pytest.raises(TypeError, match="must be called with a value"):
        await load_settled(loader, ["a", None])
