"""gateway.loaders.batch_loader: the request's loader answers, batches and caches as aiodataloader's
DataLoader does, through ``load`` and the level-at-once ``load_settled`` alike (pure logic:
the batch functions are in-memory)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiodataloader import DataLoader

from gateway.loaders.batch_loader import BatchLoader
from resolvers.execution.batch_fields import settled


def _batch(batches: list[list[Any]]) -> Any:
    async def load(keys: list[Any]) -> list[Any]:
        batches.append(list(keys))
        await asyncio.sleep(0)  # a store round trip's loop iteration
        return [ValueError(f"no {k}") if k == "bad" else k.upper() for k in keys]
    return load


def _shown(values: list[Any]) -> list[str]:
    return [repr(v) for v in values]


async def test_answers_and_batches_as_aiodataloader() -> None:
    keys = ["a", "b", "a", "bad", "c"]
    theirs: list[list[Any]] = []
    ours_by_load: list[list[Any]] = []
    ours_by_level: list[list[Any]] = []
    reference, loader, level = (DataLoader(_batch(theirs)), BatchLoader(_batch(ours_by_load)),
                                BatchLoader(_batch(ours_by_level)))
    expected = await settled([reference.load(k) for k in keys])
    by_load = await settled([loader.load(k) for k in keys])
    by_level = await level.load_settled(keys)
    assert _shown(by_load) == _shown(by_level) == _shown(expected)
    assert by_level[:3] == ["A", "B", "A"] and isinstance(by_level[3], ValueError)
    assert ours_by_load == ours_by_level == theirs == [["a", "b", "bad", "c"]]


async def test_one_iteration_shares_one_batch_and_cached_keys_cost_none() -> None:
    batches: list[list[Any]] = []
    loader = BatchLoader(_batch(batches))
    assert await loader.load_settled(["a", "b"]) == ["A", "B"]
    one = loader.load("d")
    level = asyncio.ensure_future(loader.load_settled(["a", "d", "e"]))
    other = asyncio.ensure_future(loader.load_settled(["e", "f"]))
    assert await one == "D"
    assert await level == ["A", "D", "E"]
    assert await other == ["E", "F"]
    assert batches == [["a", "b"], ["d", "e", "f"]]
    assert await loader.load("b") == "B"
    assert await loader.load_many(["a", "f"]) == ["A", "F"]
    assert len(batches) == 2


async def test_a_key_in_flight_joins_its_batch_instead_of_a_new_one() -> None:
    batches: list[list[Any]] = []
    loader = BatchLoader(_batch(batches))
    first = asyncio.ensure_future(loader.load_settled(["a", "b"]))
    for _ in range(5):  # until the batch of a and b is running
        await asyncio.sleep(0)
    assert batches == [["a", "b"]]
    assert await loader.load_settled(["b", "c", "a"]) == ["B", "C", "A"]
    assert await first == ["A", "B"]
    assert batches == [["a", "b"], ["c"]]


@pytest.mark.parametrize("keys", [["a", "b", "a"], ["b", "a", "b"]])
async def test_a_level_over_two_batches_waits_for_both(keys: list[str]) -> None:
    gates: list[tuple[list[Any], asyncio.Event]] = []

    async def gated(batch: list[Any]) -> list[Any]:
        gate = asyncio.Event()
        gates.append((list(batch), gate))
        await gate.wait()
        return [k.upper() for k in batch]

    loader = BatchLoader(gated)
    first = asyncio.ensure_future(loader.load_settled(["a"]))
    for _ in range(5):  # until the batch of a is running
        await asyncio.sleep(0)
    level = asyncio.ensure_future(loader.load_settled(keys))  # a in flight, b gathering
    for _ in range(5):  # until the batch of b is running too
        await asyncio.sleep(0)
    assert [batch for batch, _ in gates] == [["a"], ["b"]]
    gates[0][1].set()
    assert await first == ["A"]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not level.done()  # b's batch is still out
    gates[1][1].set()
    assert await level == [k.upper() for k in keys]


async def test_a_cached_none_is_served_from_the_cache() -> None:
    batches: list[list[Any]] = []

    async def misses(keys: list[Any]) -> list[Any]:
        batches.append(list(keys))
        return [None for _ in keys]

    loader = BatchLoader(misses)
    assert await loader.load_settled(["x", "y"]) == [None, None]
    assert await loader.load_settled(["y", "x"]) == [None, None]
    assert await loader.load("x") is None
    assert batches == [["x", "y"]]


async def test_a_failed_batch_fails_every_key_and_caches_none() -> None:
    calls: list[list[Any]] = []
    fail = True

    async def flaky(keys: list[Any]) -> list[Any]:
        calls.append(list(keys))
        if fail:
            raise ConnectionError("store down")
        return [k.upper() for k in keys]

    loader = BatchLoader(flaky)
    one = loader.load("a")
    level = await loader.load_settled(["a", "b"])
    assert all(isinstance(v, ConnectionError) for v in level)
    with pytest.raises(ConnectionError):
        await one
    fail = False
    assert await loader.load_settled(["a", "b"]) == ["A", "B"]
    assert calls == [["a", "b"], ["a", "b"]]


async def test_a_batch_answering_too_few_values_fails_its_keys() -> None:
    async def short(keys: list[Any]) -> list[Any]:
        return keys[1:]

    values = await BatchLoader(short).load_settled(["a", "b"])
    assert all(isinstance(v, TypeError) and "1 values for 2 keys" in str(v) for v in values)


async def test_prime_never_replaces_a_cached_or_coming_value() -> None:
    batches: list[list[Any]] = []
    loader = BatchLoader(_batch(batches))
    loader.prime("p", "primed")
    assert await loader.load_settled(["p"]) == ["primed"]
    assert batches == []
    coming = asyncio.ensure_future(loader.load_settled(["q"]))
    await asyncio.sleep(0)
    loader.prime("q", "too late")
    loader.prime("p", "again")
    assert await coming == ["Q"]
    assert await loader.load_settled(["p", "q"]) == ["primed", "Q"]


async def test_a_key_cleared_in_flight_answers_its_callers_but_is_asked_again() -> None:
    batches: list[list[Any]] = []
    loader = BatchLoader(_batch(batches))
    coming = asyncio.ensure_future(loader.load_settled(["a", "b"]))
    await asyncio.sleep(0)
    loader.clear("a")
    assert await coming == ["A", "B"]
    assert await loader.load_settled(["a", "b"]) == ["A", "B"]
    assert batches == [["a", "b"], ["a"]]
    loader.clear_all()
    assert await loader.load("b") == "B"
    assert batches[-1] == ["b"]


async def test_a_cancelled_caller_does_not_fail_another_waiting_on_the_same_batch() -> None:
    loader = BatchLoader(_batch([]))
    doomed = asyncio.ensure_future(loader.load_settled(["a"]))
    kept = asyncio.ensure_future(loader.load_settled(["a", "b"]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == ["A", "B"]
    assert doomed.cancelled()


async def test_a_missing_key_fails_as_load_does() -> None:
    loader = BatchLoader(_batch([]))
    with pytest.raises(TypeError, match="must be called with a value"):
        await loader.load_settled(["a", None])
    with pytest.raises(TypeError, match="must be called with a value"):
        loader.load(None)
