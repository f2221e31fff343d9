"""The filter grammar behind dynamic WHERE clauses, and its compiler to parameterised SQL.

A filter is a tree of these node types and nothing else::

    Pred = All(parts) | AnyOf(parts) | Not(part) | Cmp(field, op, value)
         | JsonCmp(column, path, op, value) | Subtree(asset_id) | InIds(ids)

Leaves name a field of a per-table whitelist (``Columns``) and an operator of the fixed
table ``_OPS``; the compiler emits only those fragments, ``$n`` placeholders and the
table alias chosen by the caller. Every value a client sent travels as a parameter, so no
text of a request ever becomes SQL. Nodes are frozen and hashable: a query object holding
a filter can key a dataloader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class All:
    parts: tuple[Pred, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Pred, ...]


@dataclass(frozen=True)
class Not:
    part: Pred


@dataclass(frozen=True)
class Cmp:
    """``field op value`` over a whitelisted column (``op`` from ``_OPS``)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class JsonCmp:
    """A comparison at a path inside a JSONB column: ``eq`` (containment, GIN-indexed; the
    value is JSON text, so the node stays hashable), ``lt``/``lte``/``gt``/``gte`` against
    a number or a time (values of another JSON type at that path never match), or
    ``exists`` (a bool)."""

    column: str
    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class Subtree:
    """Devices installed on the asset or below it: answered by the asset store."""

    asset_id: UUID


@dataclass(frozen=True)
class InIds:
    """Rows whose id is one of ``ids``: an asset-side condition resolved to device ids."""

    ids: tuple[UUID, ...]


Pred = All | AnyOf | Not | Cmp | JsonCmp | Subtree | InIds


@dataclass(frozen=True)
class Field:
    """A filterable column: its SQL (``{t}`` is the table alias) and parameter type."""

    sql: str
    pgtype: str
    # JSONB columns: (path, kind) -> the path as an SQL constant, for the ranges an
    # expression index serves (gateway/stores/metadata_indexes.py): the statement must
    # spell the index's expression, so the path cannot travel as a parameter.
    indexed: Mapping[tuple[tuple[str, ...], str], str] = field(default_factory=dict)


Columns = Mapping[str, Field]

# op -> (template, parameter type suffix). {f} is the field's SQL, {p} the placeholder.
_OPS: dict[str, tuple[str, str]] = {
    "eq": ("{f} = {p}", ""),
    "lt": ("{f} < {p}", ""),
    "lte": ("{f} <= {p}", ""),
    "gt": ("{f} > {p}", ""),
    "gte": ("{f} >= {p}", ""),
    "in": ("{f} = ANY({p})", "[]"),
    "not_in": ("NOT ({f} = ANY({p}))", "[]"),
    "contains_all": ("{f} @> {p}", "[]"),
    "contains": ("{f} @> {p}", ""),
    "ilike": ("{f} ILIKE {p}", ""),
    "like": ("{f} LIKE {p}", ""),
    "is_null": ("", ""),
}
JSON_RANGE_OPS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
# The SQL function reading a JSON value of each kind (NULL for another type).
VALUE_FUNCTIONS = {"number": "iotsphere_jsonb_number", "time": "iotsphere_jsonb_instant"}


class Params:
    """The statement's parameters: each value added becomes the next ``$n`` (cast)."""

    def __init__(self, first: list[Any] | None = None) -> None:
        self.values: list[Any] = list(first or [])

    def add(self, value: Any, pgtype: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{pgtype}"


def compile_pred(pred: Pred | None, columns: Columns, alias: str, params: Params) -> str:
    """SQL text for ``pred`` over the table aliased ``alias``; "true" for no filter."""
    if pred is None:
        return "true"
    if isinstance(pred, All):
        if not pred.parts:
            return "true"
        return "(" + " AND ".join(compile_pred(p, columns, alias, params)
                                  for p in pred.parts) + ")"
    if isinstance(pred, AnyOf):
        if not pred.parts:
            return "false"
        return "(" + " OR ".join(compile_pred(p, columns, alias, params)
                                 for p in pred.parts) + ")"
    if isinstance(pred, Not):
        # coalesce: NOT over a comparison with NULL (never seen) is still "does not match".
        return f"NOT coalesce({compile_pred(pred.part, columns, alias, params)}, false)"
    if isinstance(pred, InIds):
        return f"{alias}.id = ANY({params.add(list(pred.ids), 'uuid[]')})"
    if isinstance(pred, Subtree):
        # Only device_profiles (alias p) can answer this; the assets join is tenant-scoped.
        return (f"{alias}.asset_id IN (SELECT a.id FROM assets a WHERE a.tenant_id = "
                f"{alias}.tenant_id AND a.path @> ARRAY[{params.add(pred.asset_id, 'uuid')}])")
    if isinstance(pred, JsonCmp):
        return _compile_json(pred, columns, alias, params)
    field = columns[pred.field]  # KeyError: a programming error, never client text
    sql = field.sql.format(t=alias)
    if pred.op == "is_null":
        return f"({sql} IS {'' if pred.value else 'NOT '}NULL)"
    template, suffix = _OPS[pred.op]
    value = list(pred.value) if suffix == "[]" else pred.value
    return "(" + template.format(f=sql, p=params.add(value, field.pgtype + suffix)) + ")"


def _compile_json(pred: JsonCmp, columns: Columns, alias: str, params: Params) -> str:
    json_field = columns[pred.column]
    column = json_field.sql.format(t=alias)
    if pred.op == "eq":
        # Containment of {"a": {"b": value}}: served by the column's jsonb_path_ops index.
        doc: Any = json.loads(pred.value)
        for key in reversed(pred.path):
            doc = {key: doc}
        return f"({column} @> {params.add(doc, 'jsonb')})"
    if pred.op == "exists":
        path = params.add(list(pred.path), "text[]")
        return f"(({column} #> {path}) IS {'NOT ' if pred.value else ''}NULL)"
    operator = JSON_RANGE_OPS[pred.op]
    kind = "time" if isinstance(pred.value, datetime) else "number"
    # The value as a number or a time, NULL when it is not one (sql/assets/004, 005). A
    # declared path's expression, with its path as a constant, is its index's expression.
    path = json_field.indexed.get((pred.path, kind)) or params.add(list(pred.path), "text[]")
    value_sql = f"{VALUE_FUNCTIONS[kind]}({column} #> {path})"
    pgtype = "timestamptz" if kind == "time" else "numeric"
    return f"({value_sql} {operator} {params.add(pred.value, pgtype)})"


def replace_leaves(pred: Pred, found: dict[Pred, Pred]) -> Pred:
    """``pred`` with each leaf found in ``found`` replaced by its value there."""
    if isinstance(pred, All):
        return All(tuple(replace_leaves(p, found) for p in pred.parts))
    if isinstance(pred, AnyOf):
        return AnyOf(tuple(replace_leaves(p, found) for p in pred.parts))
    if isinstance(pred, Not):
        return Not(replace_leaves(pred.part, found))
    return found.get(pred, pred)


def walk(pred: Pred | None) -> list[Pred]:
    """Every node of ``pred``, parents before children."""
    if pred is None:
        return []
    if isinstance(pred, All | AnyOf):
        return [pred, *(n for p in pred.parts for n in walk(p))]
    if isinstance(pred, Not):
        return [pred, *walk(pred.part)]
    return [pred]


def asset_side_leaves(pred: Pred | None) -> list[Pred]:
    """The device conditions only the asset store can answer (subtrees, metadata), once
    each, in a stable order."""
    leaves = [p for p in walk(pred) if isinstance(p, Subtree)
              or (isinstance(p, JsonCmp) and p.column == "metadata")]
    return list(dict.fromkeys(leaves))


def with_matches(pred: Pred | None, leaves: list[Pred], matched: list[set[UUID]]) -> Pred | None:
    """``pred`` with each asset-side leaf replaced by the device ids it matched."""
    if pred is None or not leaves:
        return pred
    found: dict[Pred, Pred] = {
        leaf: InIds(tuple(sorted(ids))) for leaf, ids in zip(leaves, matched, strict=True)
    }
    return replace_leaves(pred, found)
