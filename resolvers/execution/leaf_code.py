"""The Python source that completes one leaf, shared by the generated fills
(``resolvers.execution.fill_compiler``) and builds (``resolvers.execution.build_compiler``):
a plain field's read, the test under which the leaf's coercion returns the value itself
(``leaf_coercion.UNCHANGED_WHEN``), an enum member's name, a memoised DateTime text, and
what each falls back to; and the definition of the generated functions.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLString,
    Undefined,
)

from resolvers.execution.leaf_coercion import NAMESPACE, UNCHANGED_WHEN, unchanged_when
from resolvers.execution.plan import LEAF, FieldPlan

# The leaves whose test (UNCHANGED_WHEN) a list of them is built with: graphql-core's own
# types, not another scalar of the same name.
_BUILT_IN = {leaf.name: leaf for leaf in
             (GraphQLString, GraphQLID, GraphQLInt, GraphQLFloat, GraphQLBoolean)}

_ITEM = re.compile(r"\bv\b")


class Slow(Exception):
    """Raised by a build for what it does not take as it is: the general path redoes it."""


def coerced(coerce: Callable[[Any], Any], value: Any) -> Any:
    """A leaf's coercion where a build's own test did not settle it; Slow for what the
    general path treats as an error (a null, Undefined, an exception, a null answer)."""
    if value is None or value is Undefined or isinstance(value, Exception):
        raise Slow
    coerced = coerce(value)
    if coerced is None or coerced is Undefined:
        raise Slow
    return coerced


def enum_names(leaf: GraphQLEnumType) -> tuple[type, dict[str, str]] | None:
    """A Strawberry enum's class and, by each member's Python name, the name its coercion
    gives the member (computed by that coercion, so the two agree); None for an enum
    without a Python class. Keyed by the member's name, not the member: an Enum's
    ``__hash__`` is a Python function, a call per value where a str's hash is cached."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if wrapped is None:
        return None
    names: dict[str, str] = {}
    for member in wrapped:
        try:
            names[member._name_] = leaf.coerce_output_value(member)
        except Exception:  # noqa: BLE001, S112 - left to the general path, which raises it
            continue
    return wrapped, names


def define(lines: list[str], env: dict[str, Any], filename: str, name: str) -> Any:
    env.update(NAMESPACE)
    env.update(_datetime=datetime, _UTC=UTC, _Undefined=Undefined, _Slow=Slow,
               _coerced=coerced)
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), filename, "exec"), env, namespace)  # noqa: S102
    return namespace[name]


def read_lines(index: int, plan: FieldPlan, env: dict[str, Any]) -> list[str]:
    """``v = source.<attribute>`` (a build lets what it raises go: the redo reports it)."""
    attribute = plan.attribute
    if attribute.isidentifier() and not keyword.iskeyword(attribute):
        return [f"v = source.{attribute}"]
    env[f"A{index}"] = attribute
    return [f"v = getattr(source, A{index})"]


def leaf_list_lines(index: int, plan: FieldPlan, key: str, env: dict[str, Any]) -> list[str]:
    """Statements storing ``obj[key]`` from ``v``, a list of a built-in leaf (labels),
    each item kept when the leaf's test takes it; or raising Slow. None for other leaves
    (an Int list, a list of lists, a custom scalar): the general path does them."""
    shape = plan.shape
    assert shape is not None
    item = shape.item
    assert item is not None and item.kind == LEAF
    leaf = item.leaf
    if leaf is None or leaf is not _BUILT_IN.get(leaf.name):
        return []
    env[f"C{index}"] = item.coerce
    test = _ITEM.sub("x", UNCHANGED_WHEN[leaf.name])  # the test over ``x``, the item
    each = f"x if {test} else _coerced(C{index}, x)"
    if shape.item_nullable:
        each = f"None if x is None else ({each})"
    lines = []
    if plan.nullable:
        lines += ["if v is None:", f"    obj[{key}] = None", "else:"]
    indent = "    " if plan.nullable else ""
    return lines + [indent + "if v.__class__ is not list:", indent + "    raise _Slow",
                    indent + f"obj[{key}] = [{each} for x in v]"]


def _fast_case(index: int, plan: FieldPlan, env: dict[str, Any]) -> tuple[str, str | None] | None:
    """How a leaf is completed without its coercion's call: ``("v", test)``, the value is
    sent as it is where ``test`` (over ``v``) holds; or ``(lookup, None)``, the output is
    what ``lookup`` (an expression over ``v``) finds, where it is not None. None: only the
    coercion will do."""
    shape = plan.shape
    leaf = shape.leaf if shape is not None and shape.kind == LEAF else None
    exact = unchanged_when(leaf) if leaf is not None else None
    if exact is not None:
        return "v", exact
    if isinstance(leaf, GraphQLEnumType) and (members := enum_names(leaf)) is not None:
        env[f"W{index}"], env[f"E{index}"] = members
        return f"(E{index}.get(v._name_) if v.__class__ is W{index} else None)", None
    texts = getattr(shape.coerce, "texts", None) if shape is not None else None
    if texts is not None:
        # A DateTime in UTC whose text the leaf's coercion already made (bucket times repeat
        # across every device of a dashboard): the memo is the coercion's own.
        env[f"T{index}"] = texts
        return f"(T{index}.get(v) if v.__class__ is _datetime and v.tzinfo is _UTC else None)", \
            None
    return None


def leaf_lines(index: int, plan: FieldPlan, key: str, general: str, env: dict[str, Any]
          ) -> list[str]:
    """Statements storing ``obj[key]`` from ``v``, the leaf's value, or running
    ``general`` (a statement) where the fast case does not hold."""
    case = _fast_case(index, plan, env)
    if case is None:
        return [general]
    lookup, test = case
    if test is not None:
        return [f"if {test}:", f"    obj[{key}] = v", "else:", f"    {general}"]
    return [f"found = {lookup}", "if found is not None:", f"    obj[{key}] = found", "else:",
            f"    {general}"]


def leaf_expression(index: int, plan: FieldPlan, env: dict[str, Any]) -> str:
    """An expression over ``v`` for the leaf's output value, raising Slow for what the
    general path must do (the item of a comprehension over a column)."""
    env[f"C{index}"] = plan.shape.coerce if plan.shape is not None else None
    general = f"_coerced(C{index}, v)"
    case = _fast_case(index, plan, env)
    if case is None:
        each = general
    elif case[1] is not None:
        each = f"v if {case[1]} else {general}"
    else:
        each = f"found if (found := {case[0]}) is not None else {general}"
    return f"None if v is None else ({each})" if plan.nullable else each
