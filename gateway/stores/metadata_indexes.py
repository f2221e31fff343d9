"""Declared metadata range paths: the JSON paths of Device.metadata whose number or time
ranges an expression index serves (``IOTSPHERE_METADATA_RANGE_PATHS``).

Why declared: a range at an arbitrary path has no index PostgreSQL can use (jsonb_path_ops
GIN answers containment and jsonpath equality, not ``<``/``>``), so an undeclared range
reads every profile of the tenant. For a declared path the asset DB holds a partial index
``(tenant_id, <value at the path>) INCLUDE (device_id)`` over the rows where that value
is of the declared kind, and the compiler writes the path into the statement as a
constant (from this declaration, never from a request), so the planner can match the
index expression. The value functions (``iotsphere_jsonb_number``,
``iotsphere_jsonb_instant``) are the same for declared and undeclared paths: declaring a
path changes the plan, never the answer.

Measured in bench/filtered_page.py (bench/RESULTS.md): a range matching 5% of 100,000
devices, declared vs undeclared, side by side in one run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from gateway.stores.predicates import VALUE_FUNCTIONS

Kind = Literal["number", "time"]
# Keys a declaration may name: they become SQL literals, so nothing that needs quoting.
_KEY = re.compile(r"[A-Za-z0-9_-]{1,63}")
_LOCK_KEY = 0x3E7A_D47A  # serialises index creation between replicas starting at once


@dataclass(frozen=True)
class RangePath:
    """One declared path and the kind of value its ranges compare."""

    path: tuple[str, ...]
    kind: Kind

    @property
    def index_name(self) -> str:
        digest = hashlib.sha256("\x1f".join((self.kind, *self.path)).encode()).hexdigest()
        return f"device_profiles_range_{self.kind}_{digest[:16]}"

    def create_index_sql(self) -> str:
        # The expression predicates._compile_json writes for a declared path.
        value = f"{VALUE_FUNCTIONS[self.kind]}(metadata #> {path_literal(self.path)})"
        return (f"CREATE INDEX {self.index_name} ON device_profiles "
                f"(tenant_id, {value}) INCLUDE (device_id) WHERE {value} IS NOT NULL")


def path_literal(path: tuple[str, ...]) -> str:
    """``'{a,b}'::text[]``: keys checked by ``parse`` (letters, digits, ``_``, ``-``)."""
    if not path or not all(_KEY.fullmatch(key) for key in path):
        raise ValueError(f"not a declarable metadata path: {path!r}")
    return "'{" + ",".join(path) + "}'::text[]"


def parse(raw: str) -> tuple[RangePath, ...]:
    """``rating:number,specs.installed:time`` -> RangePaths; ValueError saying what is
    wrong with an entry."""
    declared: list[RangePath] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        dotted, sep, kind = entry.rpartition(":")
        if not sep or kind not in VALUE_FUNCTIONS:
            raise ValueError(f"{entry!r} must be PATH:number or PATH:time")
        path = tuple(dotted.split("."))
        if len(path) > 16 or not all(_KEY.fullmatch(key) for key in path):
            raise ValueError(f"{entry!r}: a path is 1 to 16 dot-separated keys of letters, "
                             "digits, '_' and '-'")
        declared.append(RangePath(path, "number" if kind == "number" else "time"))
    return tuple(dict.fromkeys(declared))


async def ensure_indexes(conn: asyncpg.Connection, declared: Iterable[RangePath]) -> None:
    """Creates the missing indexes of ``declared`` (one replica at a time), then ANALYZEs
    the table: an expression index's statistics come only from ANALYZE, and without them
    the planner guesses a third of the rows for any range. An index of a path no longer
    declared stays until dropped by hand (docs/connections.md)."""
    declared = list(declared)
    if not declared:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        created = False
        for rp in declared:
            if await conn.fetchval("SELECT to_regclass($1) IS NULL", rp.index_name):
                await conn.execute(rp.create_index_sql())
                created = True
        if created:
            await conn.execute("ANALYZE device_profiles")


def compiled_paths(declared: Iterable[RangePath]) -> dict[tuple[tuple[str, ...], str], str]:
    """``Field.indexed`` for the metadata column: (path, kind) -> the path as a constant."""
    return {(rp.path, rp.kind): path_literal(rp.path) for rp in declared}
